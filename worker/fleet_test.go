package worker_test

import (
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
)

// Issue 4's acceptance: three workers, each with its own NATS connection,
// against a BC that allows 120 requests per 10 s and 5 at once, with
// 5-second tokens, for 30 s with a backlog. The fleet uses at least 95% of
// the budget, gets at most 0.5% 429s, never runs more than 5 requests at
// once at BC, and asks Entra for one token per lifetime, not three.
func TestFleetSharesBCBudgetAndToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 30 s")
	}
	t.Parallel()
	const (
		budget   = 120
		window   = 10 * time.Second
		run      = 30 * time.Second
		lifetime = 5 * time.Second
	)
	e := newE2E(t, e2eOptions{
		bc:     bctest.Options{Locations: 600, Budget: budget, BudgetWindow: window, MaxConcurrent: 5, TokenLifetime: lifetime},
		budget: budget, window: "10s",
	})
	e.bc.SetLatency(10 * time.Millisecond)
	e.publish(messages.TypeLocation, recordIDs(t, e.bc, bctest.SetLocations, e.bc.LocationCodes())...)
	var shared []*worker.SharedStats
	e.tune = func(o *worker.Options) {
		o.SharedStats = &worker.SharedStats{}
		shared = append(shared, o.SharedStats)
	}
	var stops []func()
	for _, id := range []string{"w1", "w2", "w3"} {
		stops = append(stops, e.startWorker(id, zerolog.Nop(), nil))
	}
	// The 30 s start with the fleet's first request to BC (workers take a
	// moment to start, more so under the race detector).
	waitFor(t, 20*time.Second, "the first BC request", func() bool { return e.bc.Stats().APIRequests > 0 })
	e.bc.ResetStats()
	start := time.Now()
	var trace []int64
	for time.Since(start) < run {
		time.Sleep(time.Second)
		trace = append(trace, e.bc.Stats().APIRequests)
	}
	st := e.bc.Stats()
	t.Logf("BC requests served, cumulative, each second: %v", trace)
	for _, stop := range stops {
		stop()
	}
	var moved, stale int64
	for _, sh := range shared {
		moved, stale = moved+sh.Restamped, stale+sh.Stale
	}
	t.Logf("permits the KV store answered late for: %d moved, %d left unused", moved, stale)
	// Requests BC served (429s aside) against what 30 s of a 120-per-10 s
	// sliding window allow.
	served := st.APIRequests - st.Throttled - st.Unauthorized
	allowed := int64(budget * (run / window))
	t.Logf("served %d of %d allowed (%.1f%%), 429s %d, peak concurrency %d, token requests %d, jobs done %d",
		served, allowed, 100*float64(served)/float64(allowed), st.Throttled, st.PeakConcurrent, st.TokenRequests, e.stats.Acked.Load())
	if float64(served) < 0.95*float64(allowed) {
		t.Errorf("the fleet used %d of %d requests the budget allowed, want at least 95%%", served, allowed)
	}
	if float64(st.Throttled) > 0.005*float64(st.APIRequests) {
		t.Errorf("%d of %d requests answered 429, want at most 0.5%%", st.Throttled, st.APIRequests)
	}
	if st.PeakConcurrent > 5 {
		t.Errorf("BC served %d requests at once, its limit is 5", st.PeakConcurrent)
	}
	// The budget makes the load bursty (busy about 6 s of every 10), so
	// tokens are fetched only while busy: never more than one per lifetime
	// for the whole fleet. TestFleetSharesOneTokenPerLifetime has a steady load.
	if lifetimes := int64(run / lifetime); st.TokenRequests > lifetimes+1 {
		t.Errorf("%d token requests in %v with %v tokens and 3 workers, want at most %d", st.TokenRequests, run, lifetime, lifetimes+1)
	}
}

// Issue 4's acceptance: with 5-second tokens and a steady load, three
// workers ask Entra for one token per lifetime (+1), not three times that.
func TestFleetSharesOneTokenPerLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 30 s")
	}
	t.Parallel()
	const run, lifetime = 30 * time.Second, 5 * time.Second
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3000, Budget: -1, TokenLifetime: lifetime}})
	e.bc.SetLatency(100 * time.Millisecond) // 5 at once: about 50 requests/s, all the run long
	e.publish(messages.TypeLocation, recordIDs(t, e.bc, bctest.SetLocations, e.bc.LocationCodes())...)
	for _, id := range []string{"w1", "w2", "w3"} {
		e.startWorker(id, zerolog.Nop(), nil)
	}
	waitFor(t, 20*time.Second, "the first BC request", func() bool { return e.bc.Stats().APIRequests > 0 })
	start := e.bc.Stats()
	time.Sleep(run)
	st := e.bc.Stats()
	if e.stats.Acked.Load() >= 3000 {
		t.Fatal("the backlog ran out before the end of the run; the test proves nothing")
	}
	tokens := st.TokenRequests - start.TokenRequests + 1 // the first one, before the run
	lifetimes := int64(run / lifetime)
	t.Logf("%d token requests in %v with %v tokens, %d BC requests, %d 401s", tokens, run, lifetime, st.APIRequests-start.APIRequests, st.Unauthorized)
	if tokens < lifetimes || tokens > lifetimes+2 {
		t.Errorf("%d token requests in %v with %v tokens and 3 workers, want %d (+1)", tokens, run, lifetime, lifetimes)
	}
	if st.Unauthorized > 3 {
		t.Errorf("%d requests were sent with an expired token", st.Unauthorized)
	}
}

// recordIDs are the BC ids (GUIDs) of the fake's records of set with the
// given codes. Jobs keyed by id read BC one request each, which tests of
// the request budget need; jobs keyed by code read BC together, many in one
// request.
func recordIDs(t *testing.T, bc *bctest.Server, set string, codes []string) []string {
	t.Helper()
	var ids []string
	for _, code := range codes {
		r, ok := bc.Record(set, code)
		id, _ := r["id"].(string)
		if !ok || id == "" {
			t.Fatalf("%s %s has no id", set, code)
		}
		ids = append(ids, id)
	}
	return ids
}
