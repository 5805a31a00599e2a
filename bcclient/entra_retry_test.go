package bcclient_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
)

// TestEntraRetryAfterIsHonoured: Entra throttles the token request (429
// with Retry-After: 20). RetryPolicy says a Retry-After header makes the
// delay at least that long whatever its status, and business-central.md
// says to honour it on any status when present; the client once asked
// Entra again after its usual half second, since TokenError dropped the
// header.
func TestEntraRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS50196: too many requests","error_codes":[50196]}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"test-token"}`)
	}))
	t.Cleanup(entra.Close)
	c, _, clock := newStub(t, okJSON(locationJSON), func(cfg *bcclient.Config) {
		cfg.TokenSource = bcclient.NewTokenSource(t.Context(), bcclient.Credentials{AuthorityURL: entra.URL, TenantID: "t", ClientID: "c", ClientSecret: "s"})
		cfg.Retry.MaxElapsed = time.Minute
	})
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, d := range clock.slept() {
		total += d
	}
	if total < 20*time.Second || total > 25*time.Second {
		t.Errorf("Entra answered 429 with Retry-After: 20, but the client asked again after %v (sleeps %v, %d token calls)",
			total, clock.slept(), calls.Load())
	}
}
