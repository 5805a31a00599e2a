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

// Entra answers a token request 429 with an absurd Retry-After. retryafter
// caps it at ~292 years; the retry loop adds it to the elapsed time, which
// overflowed once a second had passed, so the MaxElapsed check let it
// through and the client slept for it (only a context deadline would stop
// it). The check now subtracts instead of adding.
func TestHugeEntraRetryAfterRespectsMaxElapsed(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch n := calls.Add(1); {
		case n <= 4:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS50196: busy"}`)
		case n == 5:
			w.Header().Set("Retry-After", "99999999999999")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS50196: too many requests","error_codes":[50196]}`)
		default:
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"test-token"}`)
		}
	}))
	t.Cleanup(entra.Close)
	c, _, clock := newStub(t, okJSON(locationJSON), func(cfg *bcclient.Config) {
		cfg.TokenSource = bcclient.NewTokenSource(t.Context(), bcclient.Credentials{AuthorityURL: entra.URL, TenantID: "t", ClientID: "c", ClientSecret: "s"})
		cfg.Retry.MaxElapsed = time.Minute
	})
	_, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
	for _, d := range clock.slept() {
		if d > time.Minute {
			t.Errorf("MaxElapsed is 1m, but the client slept %v at once (sleeps %v, %d token calls, err %v)", d, clock.slept(), calls.Load(), err)
		}
	}
}
