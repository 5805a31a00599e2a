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

// throttledEntra is an Entra token endpoint whose n-th answer is a 429 with
// Retry-After retryAfter[n] when there is one, else a token; it returns a
// BC client (on the stub's clock, one minute of retries) that gets its
// tokens there, and the count of token requests.
func throttledEntra(t *testing.T, retryAfter map[int64]string) (*bcclient.Client, *fakeClock, *atomic.Int64) {
	t.Helper()
	calls := new(atomic.Int64)
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ra, ok := retryAfter[calls.Add(1)]; ok {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
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
	return c, clock, calls
}

// TestEntraRetryAfterIsHonoured: Entra throttles the token request (429
// with Retry-After: 20). RetryPolicy says a Retry-After header makes the
// delay at least that long whatever its status, and business-central.md
// says to honour it on any status when present; the client once asked
// Entra again after its usual half second, since TokenError dropped the
// header.
func TestEntraRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	c, clock, calls := throttledEntra(t, map[int64]string{1: "20"})
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

// Entra answers a token request 429 with an absurd Retry-After. retryafter
// caps it at ~292 years; the retry loop added it to the elapsed time, which
// overflowed once a second had passed, so the MaxElapsed check let it
// through and the client slept for it (only a context deadline would stop
// it). The check now subtracts instead of adding.
func TestHugeEntraRetryAfterRespectsMaxElapsed(t *testing.T) {
	t.Parallel()
	// Four throttled answers without Retry-After first: more than a second
	// of backoff, past where the sum overflowed.
	c, clock, calls := throttledEntra(t, map[int64]string{1: "", 2: "", 3: "", 4: "", 5: "99999999999999"})
	_, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
	for _, d := range clock.slept() {
		if d > time.Minute {
			t.Errorf("MaxElapsed is 1m, but the client slept %v at once (sleeps %v, %d token calls, err %v)", d, clock.slept(), calls.Load(), err)
		}
	}
}
