package ipaasclient_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
)

// specialKey is the key of TestEchoedKeyIsRedacted: characters that URL,
// JSON and HTML encodings escape.
const specialKey = "Key/With+Special&Chars=0123456789"

// dotNetJSON escapes s as System.Text.Json's default encoder
// (JavaScriptEncoder.Default, ASP.NET Core's default) writes it: '+', '&',
// '<', '>', '\” and '`' become \uXXXX (upper-case hex).
func dotNetJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '+', '&', '<', '>', '\'', '`':
			fmt.Fprintf(&b, `\u%04X`, r)
		case '"', '\\':
			b.WriteString(`\` + string(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// A server echoing the request's key in its error answer, escaped as the
// server's own encoder writes it:
//   - ASP.NET Core (iPaaS.com answers ASP.NET problem details) echoing the
//     Authorization header in its JSON body escapes '+' and '&' as \u002B
//     and \u0026; the redactor once knew only Go's JSON escaping, so the key
//     reached APIError.Body;
//   - an HTML error page (a gateway, ASP.NET's developer page)
//     HTML-encodes them (&#x2B; &amp;); that text becomes APIError.Message,
//     hence Error(), which the worker logs and puts in dead letters; it once
//     held the key's end.
func TestEchoedKeyIsRedactedAsTheServerEscapesIt(t *testing.T) {
	t.Parallel()
	html := strings.NewReplacer("&", "&amp;", "+", "&#x2B;", "<", "&lt;", ">", "&gt;")
	for _, tc := range []struct {
		name        string
		contentType string
		body        func(auth string) string
		parts       []string // what no field may hold
	}{
		{"ASP.NET JSON", "application/json; charset=utf-8", func(auth string) string {
			return fmt.Sprintf(`{"errors":[{"code":"AUTH-1001","message":"Invalid API key"}],"request":{"apiKey":"%s","headers":{"Authorization":"%s"}}}`,
				dotNetJSON(specialKey), dotNetJSON(auth))
		}, []string{dotNetJSON(specialKey), "0123456789", "Special"}},
		{"HTML page", "text/html", func(auth string) string {
			return fmt.Sprintf("<html><body><h1>401 Unauthorized</h1><p>Authorization: %s</p></body></html>", html.Replace(auth))
		}, []string{"0123456789", "Special"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, tc.body(r.Header.Get("Authorization")))
				return true
			}
			_, _, c := setup(t, ipaastest.Options{}, h, func(cfg *ipaasclient.Config) { cfg.APIKey = specialKey })
			_, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST")
			var ae *ipaasclient.APIError
			if !errors.As(err, &ae) || !errors.Is(err, ipaasclient.ErrUnauthorized) {
				t.Fatalf("err = %v", err)
			}
			for name, s := range map[string]string{"Error": err.Error(), "Body": ae.Body, "Message": ae.Message} {
				for _, part := range tc.parts {
					if strings.Contains(strings.ToLower(s), strings.ToLower(part)) {
						t.Errorf("%s holds the key (%q): %s", name, part, s)
					}
				}
			}
		})
	}
}

// Every way a server may echo the key is redacted, whichever characters
// it escapes and in which letter case.
func TestKeyRedactedInEveryEncoding(t *testing.T) {
	t.Parallel()
	const key = `K/é+ &"<x>'\\z 9`
	html := strings.NewReplacer("&", "&amp;", "+", "&#43;", "<", "&#x3c;", ">", "&gt;", `"`, "&quot;", "'", "&#39;", "é", "&#xE9;", " ", "&#32;")
	forms := map[string]string{
		"as sent":    key,
		"query":      url.QueryEscape(key),
		"path":       url.PathEscape(key),
		"lower hex":  strings.ToLower(url.QueryEscape(key)),
		".NET JSON":  dotNetJSON(key),
		"all \\u":    allU(key),
		"HTML":       html.Replace(key),
		"upper case": strings.ToUpper(key),
	}
	js, _ := json.Marshal(key)
	forms["Go JSON"] = string(js[1 : len(js)-1])
	for name, form := range forms {
		e := ipaasclient.DecodeAPIError(401, http.Header{}, []byte(`<p>key: `+form+` end</p>`), time.Now(), key)
		for _, s := range []string{e.Body, e.Message, e.Error()} {
			if !strings.Contains(s, "[redacted]") || strings.Contains(s, "9 end") || strings.Contains(s, "z") {
				t.Errorf("%s (%q): %q", name, form, s)
			}
		}
	}
}

// allU escapes every character of s as \uXXXX.
func allU(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

// A server that logs the request as a JSON string inside its JSON answer
// (a "request" field holding serialized JSON) escapes the key twice; the
// key must not survive in any field of the APIError.
func TestKeyEscapedTwiceIsRedacted(t *testing.T) {
	t.Parallel()
	const key = "Key/With+Special&Chars=0123456789"
	inner, _ := json.Marshal(map[string]string{"Authorization": "Bearer " + key})
	outer, _ := json.Marshal(map[string]any{
		"errors":  []any{map[string]any{"code": "AUTH-1001", "message": "Invalid API key"}},
		"request": string(inner),
	})
	e := ipaasclient.DecodeAPIError(401, http.Header{}, outer, time.Now(), key)
	for name, s := range map[string]string{"Body": e.Body, "Message": e.Message, "Error": e.Error()} {
		if strings.Contains(s, "0123456789") {
			t.Errorf("%s holds the key: %s", name, s)
		}
	}
}
