package bcclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
)

func TestRetry503ThenSuccess(t *testing.T) {
	t.Parallel()
	lim := &observingLimiter{}
	c, s, clock := newStub(t, sequence(
		fail(503, "Internal_ServiceUnavailable"),
		fail(502, ""),
		okJSON(locationJSON),
	), func(cfg *bcclient.Config) { cfg.Limiter = lim })
	loc, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
	if err != nil || loc.Code != "L1" {
		t.Fatalf("GetLocation = %+v, %v", loc, err)
	}
	if n := len(s.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	sleeps := clock.slept()
	if len(sleeps) != 2 {
		t.Fatalf("sleeps %v, want 2", sleeps)
	}
	// Initial 500ms with ±50% jitter, then x1.5.
	if sleeps[0] < 250*time.Millisecond || sleeps[0] > 750*time.Millisecond ||
		sleeps[1] < 375*time.Millisecond || sleeps[1] > 1125*time.Millisecond {
		t.Errorf("sleeps %v outside the backoff bounds", sleeps)
	}
	// Every attempt acquires the limiter (the company lookup is one more).
	if got := lim.acquired.Load(); got != 4 {
		t.Errorf("limiter acquired %d times, want 4", got)
	}
	if got := lim.throttled(); len(got) != 0 {
		t.Errorf("Throttled called %v without a 429 or Retry-After", got)
	}
}

// observingLimiter counts acquisitions and records Throttled calls.
type observingLimiter struct {
	acquired atomic.Int64
	mu       sync.Mutex
	calls    []time.Duration
}

func (l *observingLimiter) Acquire(context.Context) (func(), error) {
	l.acquired.Add(1)
	return func() {}, nil
}

func (l *observingLimiter) Throttled(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, d)
}

func (l *observingLimiter) throttled() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.calls...)
}

var _ bcclient.ThrottleObserver = (*observingLimiter)(nil)

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	lim := &observingLimiter{}
	c, s, clock := newStub(t, sequence(
		fail(429, "Application_TooManyRequests", "Retry-After", "7"),
		fail(429, "Application_TooManyRequests"), // no Retry-After: backoff
		fail(500, "Internal_ServerError", "Retry-After", "3"),
		okJSON(locationJSON),
	), func(cfg *bcclient.Config) { cfg.Limiter = lim })
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
	sleeps := clock.slept()
	if len(sleeps) != 3 || sleeps[0] < 7*time.Second || sleeps[2] < 3*time.Second || sleeps[1] > 1125*time.Millisecond {
		t.Errorf("sleeps %v, want >= 7s, a short backoff, >= 3s", sleeps)
	}
	want := []time.Duration{7 * time.Second, 0, 3 * time.Second}
	if got := lim.throttled(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Throttled calls %v, want %v", got, want)
	}
}

func TestRetryGivesUpAfterMaxElapsed(t *testing.T) {
	t.Parallel()
	c, s, clock := newStub(t, fail(503, "Internal_ServiceUnavailable"), func(cfg *bcclient.Config) {
		cfg.Retry = bcclient.RetryPolicy{Initial: time.Second, Max: 4 * time.Second, MaxElapsed: 20 * time.Second}
	})
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	_, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
	var e *bcclient.APIError
	if !errors.As(err, &e) || e.Status != 503 || e.Code != "Internal_ServiceUnavailable" {
		t.Fatalf("err = %v, want the last 503", err)
	}
	elapsed := clock.Now().Sub(start)
	sleeps := clock.slept()
	if elapsed > 20*time.Second || elapsed < 20*time.Second-6*time.Second {
		t.Errorf("gave up after %v of sleeps %v, want close to 20s", elapsed, sleeps)
	}
	for _, d := range sleeps {
		if d > 4*time.Second {
			t.Errorf("sleep %v exceeds Max", d)
		}
	}
	if got := len(s.requests()); got != len(sleeps)+1 || got < 5 {
		t.Errorf("%d requests for %d sleeps", got, len(sleeps))
	}
	if bcclient.Classify(err) != bcclient.ClassTransient {
		t.Errorf("class %v", bcclient.Classify(err))
	}
}

// TestRetryAfterBeyondMaxElapsed: a Retry-After longer than the budget is
// not waited for: the error (with RetryAfter) goes back at once, for the
// caller's queue to delay the job.
func TestRetryAfterBeyondMaxElapsed(t *testing.T) {
	t.Parallel()
	c, s, clock := newStub(t, fail(429, "Application_TooManyRequests", "Retry-After", "120"))
	_, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
	var e *bcclient.APIError
	if !errors.As(err, &e) || e.RetryAfter != 120*time.Second || bcclient.Classify(err) != bcclient.ClassThrottled {
		t.Fatalf("err = %v", err)
	}
	if n, sl := len(s.requests()), clock.slept(); n != 1 || len(sl) != 0 {
		t.Errorf("%d requests, sleeps %v", n, sl)
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	t.Parallel()
	c, s, _ := newStub(t, fail(503, "Internal_ServiceUnavailable"), func(cfg *bcclient.Config) {
		cfg.Retry = bcclient.RetryPolicy{Initial: 10 * time.Second, Max: 10 * time.Second, MaxElapsed: time.Minute}
	})
	bcclient.SetClock(c, time.Now, bcclient.Sleep) // the real sleep
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.GetLocation(ctx, "aaaaaaaa-0000-4000-8000-000000000001")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after the cancel", d)
	}
	var e *bcclient.APIError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &e) || e.Status != 503 {
		t.Errorf("err = %v, want the 503 and context.Canceled", err)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d requests", n)
	}

	// A context that ends during the backoff wait of the fake clock stops
	// the loop too.
	c2, s2, _ := newStub(t, fail(503, "Internal_ServiceUnavailable"))
	ctx2, cancel2 := context.WithCancel(t.Context())
	bcclient.SetClock(c2, time.Now, func(context.Context, time.Duration) error {
		cancel2()
		return context.Canceled
	})
	_, err = c2.GetLocation(ctx2, "aaaaaaaa-0000-4000-8000-000000000001")
	if !errors.Is(err, context.Canceled) || len(s2.requests()) != 1 {
		t.Errorf("err = %v after %d requests", err, len(s2.requests()))
	}
}

func TestNotRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		code   string
	}{
		{400, "BadRequest_InvalidToken"},
		{401, "Authentication_InvalidCredentials"}, // a static token source cannot refresh
		{403, "Authorization_InsufficientPermissions"},
		{404, "Internal_RecordNotFound"},
		{409, "Request_EntityChanged"},
		{412, ""},
		{501, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			c, s, clock := newStub(t, fail(tt.status, tt.code, "Retry-After", "1"))
			_, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
			var e *bcclient.APIError
			if !errors.As(err, &e) || e.Status != tt.status {
				t.Fatalf("err = %v", err)
			}
			if n, sl := len(s.requests()), clock.slept(); n != 1 || len(sl) != 0 {
				t.Errorf("%d requests, sleeps %v", n, sl)
			}
		})
	}
}

func TestRetryDisabled(t *testing.T) {
	t.Parallel()
	c, s, _ := newStub(t, fail(503, "Internal_ServiceUnavailable"), func(cfg *bcclient.Config) {
		cfg.Retry.Disabled = true
	})
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err == nil || len(s.requests()) != 1 {
		t.Errorf("err %v after %d requests", err, len(s.requests()))
	}
}

// TestPostRetryRule: a POST is sent again only when BC certainly did not
// process it.
func TestPostRetryRule(t *testing.T) {
	t.Parallel()
	created := status(201, `{"subscriptionId":"abc","@odata.etag":"W/\"1\""}`)
	tests := []struct {
		name     string
		first    http.HandlerFunc
		requests int
	}{
		{"500", fail(500, "Internal_ServerError"), 1},
		{"503 without Retry-After", fail(503, "Internal_ServiceUnavailable"), 1},
		{"504", fail(504, ""), 1},
		{"hang-up", hangUp, 1},
		{"429", fail(429, "Application_TooManyRequests"), 2},
		{"503 with Retry-After", fail(503, "Internal_ServiceUnavailable", "Retry-After", "2"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, s, _ := newStub(t, sequence(tt.first, created))
			_, err := c.CreateSubscription(t.Context(), bcclient.SubscriptionRequest{
				NotificationURL: "https://hooks.example.com/bc", Resource: "/api/v2.0/companies(" + stubCompanyID + ")/customers",
			})
			if n := len(s.requests()); n != tt.requests {
				t.Errorf("%d requests, want %d (err %v)", n, tt.requests, err)
			}
			if (err == nil) != (tt.requests == 2) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// TestGetRetriedAfterHangUp: a GET whose connection drops is sent again.
// (net/http itself resends a GET once when a reused connection drops, so
// the stub hangs up twice.)
func TestGetRetriedAfterHangUp(t *testing.T) {
	t.Parallel()
	c, s, clock := newStub(t, sequence(hangUp, hangUp, okJSON(locationJSON)))
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.requests()); n != 3 || len(clock.slept()) < 1 {
		t.Errorf("%d requests, sleeps %v", n, clock.slept())
	}
}

// entra is a fake token endpoint that issues tok-1, tok-2, ...
type entra struct {
	*httptest.Server
	issued atomic.Int64
}

func newEntra(t *testing.T) *entra {
	e := &entra{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/t/oauth2/v2.0/token" ||
			r.PostFormValue("grant_type") != "client_credentials" || r.PostFormValue("client_secret") != "s" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		n := e.issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"token_type": "Bearer", "expires_in": 3599, "access_token": fmt.Sprintf("tok-%d", n),
		})
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *entra) source(t *testing.T) func(*bcclient.Config) {
	return func(cfg *bcclient.Config) {
		cfg.TokenSource = bcclient.NewTokenSource(t.Context(), bcclient.Credentials{
			AuthorityURL: e.URL, TenantID: "t", ClientID: "c", ClientSecret: "s",
		})
	}
}

// acceptToken answers 200 to the token want and 401 to any other.
func acceptToken(want func() string, ok http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+want() {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			bcError(w, 401, "Authentication_InvalidCredentials")
			return
		}
		ok(w, r)
	}
}

func Test401RefreshesTokenOnce(t *testing.T) {
	t.Parallel()
	e := newEntra(t)
	var valid atomic.Value
	valid.Store("tok-1")
	c, s, clock := newStub(t, acceptToken(func() string { return valid.Load().(string) }, okJSON(locationJSON)), e.source(t))
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	valid.Store("tok-2") // BC revokes tok-1 before it expires
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	if n := e.issued.Load(); n != 2 {
		t.Errorf("%d tokens issued, want 2", n)
	}
	reqs := s.requests()
	if len(reqs) != 3 || reqs[1].Header.Get("Authorization") != "Bearer tok-1" ||
		reqs[2].Header.Get("Authorization") != "Bearer tok-2" || len(clock.slept()) != 0 {
		t.Errorf("requests %d, sleeps %v", len(reqs), clock.slept())
	}

	// A second 401 in a row is returned as is, without a third token.
	valid.Store("never")
	_, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001")
	var apiErr *bcclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || bcclient.Classify(err) != bcclient.ClassAuth {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "tok-") {
		t.Errorf("error holds the token: %v", err)
	}
	if n, r := e.issued.Load(), len(s.requests()); n != 3 || r != 5 {
		t.Errorf("%d tokens issued and %d requests, want 3 and 5", n, r)
	}
}

// TestConcurrent401sRefreshOnce: requests that fail with the same token at
// the same time cause one new token, not one each.
func TestConcurrent401sRefreshOnce(t *testing.T) {
	t.Parallel()
	const n = 8
	e := newEntra(t)
	var arrived sync.WaitGroup
	arrived.Add(n)
	var first atomic.Int64
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			if first.Add(1) <= n {
				arrived.Done()
				arrived.Wait() // every request holds tok-1 before any is answered
			}
			bcError(w, 401, "Authentication_InvalidCredentials")
			return
		}
		okJSON(locationJSON)(w, r)
	}
	c, s, _ := newStub(t, handler, e.source(t))
	if _, err := c.CompanyID(t.Context()); err != nil { // fetches tok-1
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := e.issued.Load(); got != 2 {
		t.Errorf("%d tokens issued, want 2", got)
	}
	if got := len(s.requests()); got != 2*n {
		t.Errorf("%d requests, want %d", got, 2*n)
	}
}

// TestTokenInvalidatorKeepsNewerToken: invalidating a token that is no
// longer cached does nothing.
func TestTokenInvalidatorKeepsNewerToken(t *testing.T) {
	t.Parallel()
	e := newEntra(t)
	ts := bcclient.NewTokenSource(t.Context(), bcclient.Credentials{AuthorityURL: e.URL, TenantID: "t", ClientID: "c", ClientSecret: "s"})
	inv, ok := ts.(bcclient.TokenInvalidator)
	if !ok {
		t.Fatal("NewTokenSource does not implement TokenInvalidator")
	}
	t1, _ := ts.Token()
	inv.Invalidate(t1)
	t2, _ := ts.Token()
	inv.Invalidate(t1) // stale: keeps t2
	inv.Invalidate(nil)
	t3, _ := ts.Token()
	if t1.AccessToken != "tok-1" || t2.AccessToken != "tok-2" || t3.AccessToken != "tok-2" || e.issued.Load() != 2 {
		t.Errorf("tokens %s %s %s, %d issued", t1.AccessToken, t2.AccessToken, t3.AccessToken, e.issued.Load())
	}
}

func TestTokenErrorRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred."}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"test-token"}`)
	}))
	t.Cleanup(entra.Close)
	c, s, clock := newStub(t, okJSON(locationJSON), func(cfg *bcclient.Config) {
		cfg.TokenSource = bcclient.NewTokenSource(t.Context(), bcclient.Credentials{AuthorityURL: entra.URL, TenantID: "t", ClientID: "c", ClientSecret: "s"})
	})
	if _, err := c.GetLocation(t.Context(), "aaaaaaaa-0000-4000-8000-000000000001"); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || len(clock.slept()) != 1 || len(s.requests()) != 1 {
		t.Errorf("%d token calls, sleeps %v, %d requests", calls.Load(), clock.slept(), len(s.requests()))
	}
}

func TestRetryPolicyConfig(t *testing.T) {
	t.Parallel()
	cfg := bcclient.Config{APIURL: "https://example.com", TenantID: "t", Environment: "e", CompanyName: "C",
		TokenSource: nil, Retry: bcclient.RetryPolicy{Initial: time.Minute, Max: time.Second, MaxElapsed: -1}}
	_, err := bcclient.New(cfg)
	for _, want := range []string{"Retry.Initial", "Retry.MaxElapsed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// TestRetryNotBeyondDeadline: a wait that would outlast the context is not
// started: the last error comes back at once.
func TestRetryNotBeyondDeadline(t *testing.T) {
	t.Parallel()
	c, s, clock := newStub(t, fail(503, "Internal_ServiceUnavailable", "Retry-After", "5"))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := c.GetLocation(ctx, "aaaaaaaa-0000-4000-8000-000000000001")
	var e *bcclient.APIError
	if !errors.As(err, &e) || e.Status != 503 || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if n := len(s.requests()); n != 1 || len(clock.slept()) != 0 {
		t.Errorf("%d requests, sleeps %v", n, clock.slept())
	}
}
