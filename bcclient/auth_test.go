package bcclient_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
)

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(s *bctest.Server, c *bcclient.Credentials)
		status int
		code   int
		fix    string
	}{
		{"wrong secret", func(_ *bctest.Server, c *bcclient.Credentials) { c.ClientSecret = "2f1e7c9a-secret-id" },
			401, 7000215, "Value, not its Secret ID"},
		{"no secret", func(_ *bctest.Server, c *bcclient.Credentials) { c.ClientSecret = "" },
			400, 7000218, "set the client secret"},
		{"expired secret", func(s *bctest.Server, _ *bcclient.Credentials) { s.SetSecretExpired(true) },
			401, 7000222, "create a new secret"},
		{"unknown client", func(_ *bctest.Server, c *bcclient.Credentials) { c.ClientID = "99999999-9999-4999-8999-999999999999" },
			400, 700016, "check the Client ID and the Tenant ID"},
		{"unknown tenant", func(_ *bctest.Server, c *bcclient.Credentials) { c.TenantID = "contoso.onmicrosoft.com" },
			400, 90002, "check the Tenant ID"},
		{"bad scope", func(_ *bctest.Server, c *bcclient.Credentials) { c.Scope = "https://graph.microsoft.com/.default" },
			400, 70011, bcclient.DefaultScope},
		{"app disabled", func(s *bctest.Server, _ *bcclient.Credentials) { s.SetAppDisabled(true) },
			400, 7000112, "enable the app registration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fake(t, bctest.Options{})
			creds := credentials(s)
			tt.setup(s, &creds)
			cfg := config(t, s)
			cfg.TokenSource = bcclient.NewTokenSource(t.Context(), creds)
			c := newClient(t, cfg)
			_, err := c.GetLocation(t.Context(), "L0001")
			var te *bcclient.TokenError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v, want *TokenError", err)
			}
			if te.Status != tt.status || !te.Has(tt.code) || !slices.Contains(te.Codes, tt.code) ||
				te.TraceID == "" || te.CorrelationID == "" || te.Temporary() {
				t.Errorf("TokenError %+v", te)
			}
			if !strings.Contains(te.Fix(), tt.fix) {
				t.Errorf("Fix() = %q, want it to mention %q", te.Fix(), tt.fix)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("AADSTS%d", tt.code)) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error text %q", err)
			}
			for _, secret := range []string{s.ClientSecret(), creds.ClientSecret} {
				if secret != "" && (strings.Contains(err.Error(), secret) || strings.Contains(te.Description, secret)) {
					t.Errorf("error holds the secret: %v", err)
				}
			}
			if n := s.Stats().APIRequests; n != 0 {
				t.Errorf("%d API requests sent without a token", n)
			}
		})
	}
}

// TestRetrieveErrorFromAnotherSource: a token source not made by
// NewTokenSource still yields a *TokenError.
func TestRetrieveErrorFromAnotherSource(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	secret := "wrong-secret-0123456789"
	cfg.TokenSource = (&clientcredentials.Config{
		ClientID: s.ClientID(), ClientSecret: secret, TokenURL: s.TokenURL(),
		Scopes: []string{bctest.Scope}, AuthStyle: oauth2.AuthStyleInParams,
	}).TokenSource(t.Context())
	_, err := newClient(t, cfg).GetCustomer(t.Context(), "C000001")
	var te *bcclient.TokenError
	if !errors.As(err, &te) || !te.Has(7000215) || strings.Contains(err.Error(), secret) {
		t.Errorf("err = %v", err)
	}
}

func TestTokenSourceConcurrentAndValidated(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	ts := bcclient.NewTokenSource(t.Context(), credentials(s))
	done := make(chan string)
	for range 8 {
		go func() {
			tok, err := ts.Token()
			if err != nil {
				done <- err.Error()
				return
			}
			done <- tok.AccessToken
		}()
	}
	first := <-done
	for range 7 {
		if got := <-done; got != first {
			t.Errorf("tokens differ: %q, %q", first, got)
		}
	}
	if n := s.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}

	_, err := bcclient.NewTokenSource(t.Context(), bcclient.Credentials{ClientSecret: "s3cret-value"}).Token()
	if err == nil || !strings.Contains(err.Error(), "TenantID") || !strings.Contains(err.Error(), "ClientID") ||
		strings.Contains(err.Error(), "s3cret-value") {
		t.Errorf("err = %v", err)
	}
}

func TestCredentialsNeverPrintSecret(t *testing.T) {
	t.Parallel()
	c := bcclient.Credentials{TenantID: "t", ClientID: "id", ClientSecret: "s3cret-value", HTTPClient: http.DefaultClient}
	out := fmt.Sprintf("%v %+v %#v %s %q %x", c, c, c, c, c, c)
	if strings.Contains(out, "s3cret-value") || !strings.Contains(out, "[redacted]") {
		t.Errorf("printed %q", out)
	}
	if got, want := c.TokenURL(), "https://login.microsoftonline.com/t/oauth2/v2.0/token"; got != want {
		t.Errorf("TokenURL() = %q, want %q", got, want)
	}
}

func TestTokenErrorFix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  bcclient.TokenError
		want string
	}{
		{bcclient.TokenError{Status: 401, Codes: []int{7000215}}, "Secret ID"},
		{bcclient.TokenError{Status: 503}, "retried"},
		{bcclient.TokenError{Status: 400, Codes: []int{12345}}, "Tenant ID, Client ID and client secret"},
	}
	for _, tt := range tests {
		if got := tt.err.Fix(); !strings.Contains(got, tt.want) {
			t.Errorf("%+v: Fix() = %q", tt.err, got)
		}
	}
}

// An Entra (or a proxy before it) that echoes the client secret in its
// error, anywhere in a long answer, leaves no part of it in the error: the
// secret was once replaced after the answer was shortened, so one echoed
// across the cut left its beginning.
func TestTokenErrorNeverKeepsPartOfTheSecret(t *testing.T) {
	t.Parallel()
	const secret = "Ab3~x.Q8+z/9_SECRET-VALUE_0123456789"
	for _, tc := range []struct {
		name        string
		contentType string
		body        func(r *http.Request) string
	}{
		{"JSON, across the cut", "application/json", func(*http.Request) string {
			b, _ := json.Marshal(map[string]any{"error": "invalid_client",
				"error_description": "AADSTS7000215: Invalid client secret provided. " + strings.Repeat("x", 965) + secret})
			return string(b)
		}},
		{"text, across the cut", "text/plain", func(*http.Request) string {
			return strings.Repeat("y", 1010) + " " + secret + " AADSTS7000215"
		}},
		{"the request echoed", "text/plain", func(r *http.Request) string {
			b, _ := io.ReadAll(r.Body)
			return "bad request: " + string(b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, tc.body(r))
			}))
			t.Cleanup(srv.Close)
			_, err := bcclient.NewTokenSource(t.Context(), bcclient.Credentials{AuthorityURL: srv.URL, TenantID: "t", ClientID: "c", ClientSecret: secret}).Token()
			if err == nil {
				t.Fatal("no error")
			}
			var te *bcclient.TokenError
			errors.As(err, &te)
			out := err.Error() + fmt.Sprintf(" %+v", te)
			for _, part := range []string{secret[:8], url.QueryEscape(secret)[:12], "SECRET-VALUE"} {
				if strings.Contains(out, part) {
					t.Errorf("the error keeps %q of the secret: %s", part, out)
				}
			}
		})
	}
}
