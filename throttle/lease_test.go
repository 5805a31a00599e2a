package throttle_test

import (
	"cmp"
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/throttle"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// countingFleets makes n limiters sharing one bucket, as fleets does, each
// counting its KV calls.
func countingFleets(t *testing.T, n int, cfg throttle.FleetConfig) ([]*throttle.Fleet, []*countingKV) {
	t.Helper()
	b := brokertest.New(t)
	var fs []*throttle.Fleet
	var kvs []*countingKV
	for range n {
		c := cfg
		kv := &countingKV{KeyValue: brokertest.KV(t, b, broker.BucketThrottle)}
		c.KV, c.Stats = kv, &throttle.Stats{}
		f, err := throttle.NewFleet(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		fs, kvs = append(fs, f), append(kvs, kv)
	}
	return fs, kvs
}

// leaseKeys lists the concurrency leases in the bucket.
func leaseKeys(t *testing.T, kv jetstream.KeyValue) []string {
	t.Helper()
	return brokertest.Keys(t, kv, "lease.>")
}

func TestFleetKeepsItsLeaseForItsNextRequests(t *testing.T) {
	t.Parallel()
	const n = 200
	for _, tc := range []struct {
		name       string
		hold, idle time.Duration
	}{
		// Far beyond the loop's gaps: one lease, even on a loaded machine.
		{"long hold", 5 * time.Second, 2 * time.Second},
		// The defaults: a create per 250ms held, or after 20ms unused.
		{"defaults", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs, kvs := countingFleets(t, 1, throttle.FleetConfig{Name: "bc-app", Requests: 1e6, Window: time.Hour,
				MaxConcurrency: 4, LeaseHold: tc.hold, LeaseIdle: tc.idle})
			hold, idle := cmp.Or(tc.hold, 250*time.Millisecond), cmp.Or(tc.idle, 20*time.Millisecond)
			// A lease is created again only after a hold, or after a gap
			// between two requests (a goroutine descheduled on a loaded
			// machine) long enough for the lease to go back.
			start := time.Now()
			gaps := 0
			released := start
			for range n {
				release, err := fs[0].Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if time.Since(released) >= idle {
					gaps++
				}
				released = time.Now()
				release()
			}
			elapsed := time.Since(start)
			st := fs[0].Stats()
			creates := kvs[0].leaseCreates.Load()
			t.Logf("%d requests in %v (%d long gaps): %d lease creates, %d deletes; %d reused", n, elapsed.Round(time.Millisecond),
				gaps, creates, kvs[0].leaseDeletes.Load(), st.LeasesReused.Load())
			if max := 1 + int64(elapsed/hold) + int64(gaps); creates < 1 || creates > max {
				t.Errorf("%d lease creates for %d sequential requests, want 1 to %d", creates, n, max)
			}
			if c, r := st.LeasesCreated.Load(), st.LeasesReused.Load(); c != creates || c+r != n {
				t.Errorf("Stats: %d leases created and %d reused, want %d created and %d in all", c, r, creates, n)
			}
		})
	}
}

func TestStickyLeasesKeepTheLimitAndTakeTurns(t *testing.T) {
	t.Parallel()
	const limit, want = 2, 20
	fs, kvs := countingFleets(t, 2, throttle.FleetConfig{Name: "bc-app", Requests: 1e6, Window: time.Hour, MaxConcurrency: limit})
	var cur, peak atomic.Int32
	var done [2]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Three goroutines per process, each sending requests back to back.
	for g := range 6 {
		wg.Go(func() {
			f := g % 2
			for {
				select {
				case <-stop:
					return
				default:
				}
				release, err := fs[f].Acquire(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				c := cur.Add(1)
				for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
				}
				time.Sleep(time.Millisecond) // a request
				cur.Add(-1)
				release()
				done[f].Add(1)
			}
		})
	}
	// Each process keeps its leases for up to LeaseHold (250ms), then the
	// other one gets its turn: both keep serving requests. Over at least
	// a second: a few turns.
	start := time.Now()
	waitFor(t, 30*time.Second, "both processes to serve requests", func() bool {
		return time.Since(start) > time.Second && done[0].Load() >= want && done[1].Load() >= want
	})
	a, b := done[0].Load(), done[1].Load()
	created := fs[0].Stats().LeasesCreated.Load() + fs[1].Stats().LeasesCreated.Load()
	reused := fs[0].Stats().LeasesReused.Load() + fs[1].Stats().LeasesReused.Load()
	t.Logf("in %v: requests per process %d and %d, peak in flight %d; %d leases created, %d reused; %d KV creates (with the polls of waiting processes)",
		time.Since(start).Round(time.Millisecond), a, b, peak.Load(), created, reused, kvs[0].leaseCreates.Load()+kvs[1].leaseCreates.Load())
	if p := peak.Load(); p > limit {
		t.Errorf("%d requests in flight across the fleet, the limit is %d", p, limit)
	}
	if reused == 0 {
		t.Error("no lease reused")
	}
}

func TestCloseDeletesIdleLeases(t *testing.T) {
	t.Parallel()
	fs, kvs := countingFleets(t, 1, throttle.FleetConfig{Name: "bc-app", Requests: 1e6, Window: time.Second,
		MaxConcurrency: 3, LeaseHold: 5 * time.Second, LeaseIdle: time.Minute})
	f := fs[0]
	var releases []func()
	for range 3 {
		r, err := f.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	for _, r := range releases {
		r()
	}
	if keys := leaseKeys(t, kvs[0]); len(keys) != 3 {
		t.Fatalf("leases in the bucket after their release %v, want the 3 kept idle", keys)
	}
	f.Close()
	if keys := leaseKeys(t, kvs[0]); len(keys) != 0 {
		t.Errorf("leases left in the bucket after Close: %v", keys)
	}
	if st := f.Stats(); st.LeasesDeleted.Load() != 3 {
		t.Errorf("%d leases deleted, want 3", st.LeasesDeleted.Load())
	}
	// Still usable, without keeping leases.
	r, err := f.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r()
	if keys := leaseKeys(t, kvs[0]); len(keys) != 0 {
		t.Errorf("a lease kept after Close: %v", keys)
	}
}

func TestIdleLeasesGoBackToTheFleet(t *testing.T) {
	t.Parallel()
	// A hold and a TTL far longer than the test: only LeaseIdle (default
	// 20ms) can give the leases back.
	fs, _ := countingFleets(t, 2, throttle.FleetConfig{Name: "bc-app", Requests: 1e6, Window: time.Second,
		MaxConcurrency: 3, LeaseTTL: time.Minute, LeaseHold: 30 * time.Second})
	var releases []func()
	for range 3 {
		r, err := fs[0].Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	for _, r := range releases {
		r()
	}
	// The other process takes every slot at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var acquired atomic.Int32
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			r, err := fs[1].Acquire(ctx)
			if err != nil {
				t.Errorf("the other process never got a slot: %v", err)
				return
			}
			defer r()
			acquired.Add(1)
			<-hold // until all three are taken
		})
	}
	waitFor(t, 10*time.Second, "the other process to take every slot", func() bool { return acquired.Load() == 3 })
	close(hold)
	wg.Wait()
	waitFor(t, 5*time.Second, "the idle process to count 3 leases deleted", func() bool {
		return fs[0].Stats().LeasesDeleted.Load() == 3
	})
}

func TestReleaseTwiceFreesOneSlot(t *testing.T) {
	t.Parallel()
	fs := fleets(t, 1, throttle.FleetConfig{Name: "bc-app", Requests: 1e6, Window: time.Second, MaxConcurrency: 1})
	r, err := fs[0].Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r()
	r() // must not put the lease back twice
	r, err = fs[0].Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if r2, err := fs[0].Acquire(ctx); err == nil {
		r2()
		t.Fatal("two requests at once with MaxConcurrency 1")
	}
}

func TestNewFleetChecksLeaseTimes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		ttl, hold time.Duration
		wantErr   string
	}{
		{"defaults", 0, 0, ""},
		{"short TTL", 500 * time.Millisecond, 0, "LeaseTTL"},
		{"hold past half the TTL", 15 * time.Second, 8 * time.Second, "LeaseHold"},
		{"half the TTL as the store counts it", 2500 * time.Millisecond, 1100 * time.Millisecond, "LeaseHold"},
		{"no reuse", time.Second, -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := throttle.NewFleet(throttle.FleetConfig{KV: nopKV{}, Name: "bc-app", Requests: 1, Window: time.Second,
				MaxConcurrency: 1, LeaseTTL: tc.ttl, LeaseHold: tc.hold})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("NewFleet: %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

// nopKV stands for a bucket that is never called.
type nopKV struct{ jetstream.KeyValue }

func TestNoReuseDeletesAtEveryRelease(t *testing.T) {
	t.Parallel()
	fs, kvs := countingFleets(t, 1, throttle.FleetConfig{Name: "bc-app", Requests: 1e6, Window: time.Second, MaxConcurrency: 2, LeaseHold: -1})
	for range 5 {
		r, err := fs[0].Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	if c, d := kvs[0].leaseCreates.Load(), kvs[0].leaseDeletes.Load(); c != 5 || d != 5 {
		t.Errorf("%d lease creates and %d deletes for 5 requests without reuse, want 5 and 5", c, d)
	}
}

// Not parallel: it counts the goroutines of every Fleet of the package.
func TestClosedFleetsLeaveNoGoroutines(t *testing.T) {
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketThrottle)
	for i := range 20 {
		f, err := throttle.NewFleet(throttle.FleetConfig{KV: kv, Name: "bc-app", Requests: 1e6, Window: time.Second, MaxConcurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			f.Close() // closed before use: using it starts nothing
		}
		r, err := f.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r() // kept idle: the janitor runs
		f.Close()
		f.Close()
	}
	// Close waits for them to be done; they may take a moment to exit.
	deadline := time.Now().Add(5 * time.Second)
	for gs := fleetGoroutines(); len(gs) != 0; gs = fleetGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of closed Fleets left:\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if keys := leaseKeys(t, kv); len(keys) != 0 {
		t.Errorf("leases left in the bucket after Close: %v", keys)
	}
}

func fleetGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "throttle.(*Fleet)") {
			out = append(out, g)
		}
	}
	return out
}

// A worker stopping while NATS is unreachable gives its idle leases back
// at once: they were given back one by one, each waiting out its 5 s
// timeout, so a worker holding 64 took over 5 minutes to exit after
// SIGTERM, far past its shutdown grace.
func TestCloseWithTheBucketUnreachableIsQuick(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	b, err := broker.Connect(ctx, broker.Options{URL: srv.ClientURL(), Name: "lease-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	f, err := throttle.NewFleet(throttle.FleetConfig{KV: kvs[broker.BucketThrottle], Name: "bc-app",
		Requests: 1e6, Window: time.Second, MaxConcurrency: n, LeaseHold: 5 * time.Second, LeaseIdle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var releases []func()
	for range n {
		r, err := f.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	for _, r := range releases {
		r()
	}
	srv.Shutdown() // the client reconnects for ever: each KV call waits out its timeout
	start := time.Now()
	f.Close()
	// One timeout (5 s) and scheduling, against n of them (40 s) before.
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Close took %v with %d idle leases and NATS down", took.Round(time.Millisecond), n)
	}
}
