package throttle_test

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/throttle"
)

// A fleet-wide pause longer than LeaseTTL (BC's Retry-After is up to the
// 5-minute window, the TTL 15 s) must not let more than MaxConcurrency
// requests run at once when it ends: goroutines waiting out the pause while
// holding leases would see their keys expire meanwhile, and other workers
// create them again.
func TestPauseLongerThanLeaseTTLKeepsConcurrency(t *testing.T) {
	t.Parallel()
	fs := fleets(t, 3, throttle.FleetConfig{Name: "bc-app", Requests: 100000, Window: time.Second,
		MaxConcurrency: 1, LeaseTTL: time.Second})
	for _, f := range fs { // start every worker's pause watch
		r, err := f.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	fs[0].Throttled(4 * time.Second) // a 429 with Retry-After: 4
	time.Sleep(100 * time.Millisecond)
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	for i := range 6 {
		wg.Go(func() {
			for ctx.Err() == nil {
				release, err := fs[i%3].Acquire(ctx)
				if err != nil {
					return
				}
				c := cur.Add(1)
				for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
				}
				time.Sleep(200 * time.Millisecond) // the request
				cur.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 1 {
		t.Errorf("peak concurrency %d across the fleet after a 4s pause, MaxConcurrency 1", p)
	}
}

// A pause written by an older bcsync (its end, 8 bytes of big-endian unix
// nanoseconds of its clock) is still honoured during a rolling upgrade.
func TestPauseFromAnOlderWorker(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketThrottle)
	f, err := throttle.NewFleet(throttle.FleetConfig{KV: kv, Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	r, err := f.Acquire(context.Background()) // starts the pause watch
	if err != nil {
		t.Fatal(err)
	}
	r()
	until := time.Now().Add(2 * time.Second).UnixNano()
	if _, err := kv.Put(context.Background(), "pause.bc-app", binary.BigEndian.AppendUint64(nil, uint64(until))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	r, err = f.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r()
	if took := time.Since(start); took < time.Second || took > 5*time.Second {
		t.Errorf("an older worker's 2s pause held this worker %v", took.Round(time.Millisecond))
	}
}
