package bctest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

// count tallies results by status; transport errors count under 0.
func count(rs []result) map[int]int {
	m := map[int]int{}
	for _, r := range rs {
		if r.err != nil && r.status == 0 {
			m[0]++
			continue
		}
		m[r.status]++
	}
	return m
}

func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: 5})
	tok := token(t, s)
	s.SetLatency(100 * time.Millisecond)
	rs := parallel(t.Context(), s, tok, companyPath(s)+"/shipmentMethods", 30)
	if n := count(rs); n[200] != 30 {
		t.Fatalf("statuses %v, want 30 × 200", n)
	}
	st := s.Stats()
	if st.PeakConcurrent != 5 {
		t.Errorf("PeakConcurrent = %d, want 5", st.PeakConcurrent)
	}
	if st.Queued == 0 || st.Throttled != 0 || st.QueueTimeouts != 0 {
		t.Errorf("Queued %d, Throttled %d, QueueTimeouts %d: want some queued, none refused", st.Queued, st.Throttled, st.QueueTimeouts)
	}
	s.ResetStats()
	if st := s.Stats(); st.PeakConcurrent != 0 || st.Queued != 0 {
		t.Errorf("after ResetStats: %+v", st)
	}
}

func TestQueueOverflow(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: 5, MaxQueued: 10})
	tok := token(t, s)
	s.SetLatency(400 * time.Millisecond)
	rs := parallel(t.Context(), s, tok, companyPath(s)+"/locations", 30)
	n := count(rs)
	if n[200]+n[429] != 30 || n[429] == 0 || n[200] < 15 {
		t.Fatalf("statuses %v: want 15 served or queued, the rest 429", n)
	}
	for _, r := range rs {
		if r.status != 429 {
			continue
		}
		if errorCode(r.body) != "Application_TooManyRequests" || errorMessage(r.body) != "Too many requests reached. Actual (16). Maximum (15)." {
			t.Errorf("429 body %v", r.body)
		}
		if r.header.Get("Retry-After") != "" {
			t.Errorf("a full queue answered Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	if st := s.Stats(); st.Throttled != int64(n[429]) || st.PeakConcurrent != 5 || st.Failures != 0 {
		t.Errorf("stats %+v, want Throttled %d", st, n[429])
	}
}

// With the defaults, the 101st request at once is refused with the very
// message seen in the field.
func TestQueueOverflowDefaults(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	s.SetLatency(10 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	rs := parallel(ctx, s, tok, apiRoot(s)+"/companies", 101)
	waitFor(t, "the server to let go", func() bool { st := s.Stats(); return st.Serving == 0 && st.Waiting == 0 })
	n := count(rs)
	if n[429] != 1 || n[0] != 100 {
		t.Fatalf("statuses %v: want one 429, 100 cut short by the client", n)
	}
	for _, r := range rs {
		if r.status == 429 && errorMessage(r.body) != "Too many requests reached. Actual (101). Maximum (100)." {
			t.Errorf("429 body %v", r.body)
		}
	}
	if st := s.Stats(); st.Queued != 95 || st.PeakConcurrent != 5 || st.Throttled != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueIsFIFO(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: 1})
	tok := token(t, s)
	s.SetLatency(80 * time.Millisecond)
	done := make(chan string, 4)
	start := func(name string) {
		go func() {
			r := fetch(t.Context(), http.MethodGet, s.URL()+apiRoot(s)+"/companies", tok, "")
			if r.status != 200 {
				name += " failed"
			}
			done <- name
		}()
	}
	start("A")
	waitFor(t, "A served", func() bool { return s.Stats().Serving == 1 })
	for i, name := range []string{"B", "C", "D"} {
		start(name)
		waitFor(t, name+" queued", func() bool { return s.Stats().Waiting == int64(i+1) })
	}
	var order string
	for range 4 {
		order += <-done
	}
	if order != "ABCD" {
		t.Errorf("served in order %s, want ABCD", order)
	}
}

func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: 1, MaxQueueWait: 100 * time.Millisecond})
	tok := token(t, s)
	s.SetLatency(3 * time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go fetch(ctx, http.MethodGet, s.URL()+apiRoot(s)+"/companies", tok, "")
	waitFor(t, "the first request served", func() bool { return s.Stats().Serving == 1 })
	start := time.Now()
	r := send(t, s, tok, http.MethodGet, apiRoot(s)+"/companies", "")
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("answered after %v, want about 100ms", d)
	}
	if r.status != 503 || errorCode(r.body) != "Internal_ServiceUnavailable" {
		t.Errorf("%d %v, want 503", r.status, r.body)
	}
	if st := s.Stats(); st.QueueTimeouts != 1 || st.Queued != 1 || st.Throttled != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A request whose client gives up leaves the queue: its place is free.
func TestQueueLeftWhenClientGoes(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: 1, MaxQueued: 1})
	tok := token(t, s)
	s.SetLatency(3 * time.Second)
	u := s.URL() + apiRoot(s) + "/companies"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go fetch(ctx, http.MethodGet, u, tok, "")
	waitFor(t, "A served", func() bool { return s.Stats().Serving == 1 })

	bctx, bcancel := context.WithCancel(t.Context())
	bdone := make(chan result, 1)
	go func() { bdone <- fetch(bctx, http.MethodGet, u, tok, "") }()
	waitFor(t, "B queued", func() bool { return s.Stats().Waiting == 1 })
	bcancel()
	<-bdone
	waitFor(t, "B to leave the queue", func() bool { return s.Stats().Waiting == 0 })

	cdone := make(chan result, 1)
	go func() { cdone <- fetch(ctx, http.MethodGet, u, tok, "") }()
	waitFor(t, "C queued in B's place", func() bool { return s.Stats().Waiting == 1 })
	if r := send(t, s, tok, http.MethodGet, apiRoot(s)+"/companies", ""); r.status != 429 {
		t.Errorf("D with the queue full: %d, want 429", r.status)
	}
	if st := s.Stats(); st.Throttled != 1 || st.Queued != 2 || st.PeakConcurrent != 1 {
		t.Errorf("stats %+v: B left the queue, only D is refused", st)
	}
	cancel()
	<-cdone
}

// The budget is a sliding window: a request is refused while the last
// Budget requests are all younger than the window, and Retry-After says
// when the oldest of them leaves it. Fixed buckets would let the second
// batch at t=10s through in full.
func TestBudgetSlidingWindow(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := newServer(t, bctest.Options{Budget: 20, BudgetWindow: 10 * time.Second, Now: clk.Now})
	tok := token(t, s)
	path := apiRoot(s) + "/companies"
	pass := func(n int, when string) {
		t.Helper()
		for i := range n {
			if r := send(t, s, tok, http.MethodGet, path, ""); r.status != 200 {
				t.Fatalf("%s: request %d: %d %v", when, i+1, r.status, r.body)
			}
		}
	}
	refused := func(retryAfter, when string) {
		t.Helper()
		r := send(t, s, tok, http.MethodGet, path, "")
		if r.status != 429 || errorCode(r.body) != "Application_TooManyRequests" ||
			errorMessage(r.body) != "Too many requests reached. Actual (21). Maximum (20)." {
			t.Fatalf("%s: %d %v, want 429", when, r.status, r.body)
		}
		if got := r.header.Get("Retry-After"); got != retryAfter {
			t.Errorf("%s: Retry-After %q, want %q", when, got, retryAfter)
		}
	}
	pass(10, "t=0")
	clk.Advance(4 * time.Second)
	pass(10, "t=4s")
	clk.Advance(2 * time.Second)
	refused("4", "t=6s") // the t=0 batch leaves at t=10s
	clk.Advance(3500 * time.Millisecond)
	refused("1", "t=9.5s") // 0.5s rounded up
	token(t, s)            // the token endpoint is not limited
	clk.Advance(500 * time.Millisecond)
	pass(10, "t=10s")     // the t=0 batch has left the window...
	refused("4", "t=10s") // ...the t=4s batch has not: it leaves at t=14s
	clk.Advance(4 * time.Second)
	pass(10, "t=14s")
	if st := s.Stats(); st.Throttled != 3 || st.APIRequests != 43 {
		t.Errorf("stats %+v", st)
	}
}

// The budget in real time, as a client with a real clock meets it.
func TestBudgetRealTime(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{Budget: 20, BudgetWindow: time.Second})
	tok := token(t, s)
	path := apiRoot(s) + "/companies"
	start := time.Now()
	for i := range 20 {
		if r := send(t, s, tok, http.MethodGet, path, ""); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	r := send(t, s, tok, http.MethodGet, path, "")
	if time.Since(start) < 900*time.Millisecond { // else the window moved on under a slow machine
		if r.status != 429 || r.header.Get("Retry-After") != "1" {
			t.Fatalf("21st: %d Retry-After %q, want 429 and 1", r.status, r.header.Get("Retry-After"))
		}
	}
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	if r := send(t, s, tok, http.MethodGet, path, ""); r.status != 200 {
		t.Errorf("after the window: %d %v", r.status, r.body)
	}
}

// Requests rejected before the limits (401, FailNext) spend no budget and
// take no slot.
func TestLimitsCountAuthenticatedRequestsOnly(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{Budget: 3, BudgetWindow: time.Hour})
	tok := token(t, s)
	path := apiRoot(s) + "/companies"
	for range 5 {
		if r := send(t, s, "", http.MethodGet, path, ""); r.status != 401 {
			t.Fatalf("no token: %d", r.status)
		}
	}
	s.FailNext(2, http.StatusBadGateway, 0)
	for range 2 {
		_ = fetch(t.Context(), http.MethodGet, s.URL()+path, tok, "")
	}
	for i := range 3 {
		if r := send(t, s, tok, http.MethodGet, path, ""); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	if r := send(t, s, tok, http.MethodGet, path, ""); r.status != 429 || r.header.Get("Retry-After") != "3600" {
		t.Errorf("4th: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if st := s.Stats(); st.Throttled != 1 || st.Failures != 2 || st.Unauthorized != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestLimitsDisabled(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: -1, Budget: 5, BudgetWindow: -1})
	tok := token(t, s)
	s.SetLatency(150 * time.Millisecond)
	rs := parallel(t.Context(), s, tok, apiRoot(s)+"/companies", 20)
	if n := count(rs); n[200] != 20 {
		t.Fatalf("statuses %v", n)
	}
	if st := s.Stats(); st.PeakConcurrent <= 5 || st.Queued != 0 {
		t.Errorf("stats %+v: no cap, no queue", st)
	}

	// An unbounded queue refuses no one.
	q := newServer(t, bctest.Options{MaxConcurrent: 1, MaxQueued: -1, Budget: -1})
	qtok := token(t, q)
	q.SetLatency(10 * time.Millisecond)
	if n := count(parallel(t.Context(), q, qtok, apiRoot(q)+"/companies", 30)); n[200] != 30 {
		t.Errorf("unbounded queue: %v", n)
	}
	if st := q.Stats(); st.PeakConcurrent != 1 || st.Queued == 0 {
		t.Errorf("stats %+v", st)
	}
}
