package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckWrongAuthorityURL: an authority_url that is not Entra's
// (here a host that answers 404 for the token path, as BC's API host or a
// mistyped sovereign-cloud host does) makes the token check say "Entra
// refused the token request (HTTP 404)" and prints the generic fix "Check
// the Tenant ID, Client ID and client secret", which sends the user to
// settings that are right. The request never reached Entra's token
// endpoint: the fix must point at authority_url.
func TestCheckWrongAuthorityURL(t *testing.T) {
	t.Parallel()
	f := newCheckFakes(t)
	notEntra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html><body><h1>404 Not Found</h1></body></html>"))
	}))
	t.Cleanup(notEntra.Close)

	path := f.config(t, "", checkSub{name: "a"})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// f.config points authority_url at the BC fake; point it elsewhere.
	text := strings.Replace(string(data), "authority_url: "+f.bcURL, "authority_url: "+notEntra.URL, 1)
	if text == string(data) {
		t.Fatal("authority_url not found in the test configuration")
	}
	path = filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := writeFile(path, text); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, checkCtx(t), "", "check", "--config", path)
	if code == 0 {
		t.Errorf("check exited 0 with a wrong authority_url")
	}
	var token string
	for _, l := range checkLines(out, "✘") {
		if strings.HasPrefix(l, "✘ token for a: ") {
			token = l
		}
	}
	if token == "" {
		t.Fatalf("no failed token item:\n%s", out)
	}
	_, fix, _ := strings.Cut(token, " — fix: ")
	if !strings.Contains(fix, "authority_url") {
		t.Errorf("the token check's fix does not name authority_url, the setting that is wrong:\n%s", token)
	}
}
