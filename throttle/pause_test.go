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
	"github.com/nats-io/nats.go/jetstream"
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

// slowWatchKV sets its watches up in 50ms, as a consumer's creation takes
// on a loaded or clustered NATS (it goes through the meta leader), while a
// KV read or write takes a millisecond.
type slowWatchKV struct{ jetstream.KeyValue }

func (k slowWatchKV) WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	time.Sleep(50 * time.Millisecond)
	return k.KeyValue.WatchFiltered(ctx, keys, opts...)
}

// A worker that starts (or makes its first BC request) while the fleet is
// paused must wait out the pause: its first Acquire starts the watch in the
// background and goes on without waiting for the pause the bucket holds.
func TestFirstAcquireHonoursAStoredPause(t *testing.T) {
	t.Parallel()
	fs := fleetsWith(t, 2, throttle.FleetConfig{Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5},
		func(kv jetstream.KeyValue) jetstream.KeyValue { return slowWatchKV{kv} })
	fs[0].Throttled(3 * time.Second) // a 429, Retry-After: 3, at a running worker
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	rel, err := fs[1].Acquire(context.Background()) // a worker just started
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("a new worker's first request went out after %v, during the fleet's 3s pause", took.Round(time.Millisecond))
	}
}

// A pause that begins while a request waits for the budget (up to a
// window) is waited out before the request goes: the permit was once
// handed out in the middle of the fleet's pause.
// A request that waits for the budget when another worker's 429 pauses the
// fleet must wait out that pause too: Acquire checks the pause before the
// lease and after it, but not after the budget's wait, and so hands out a
// permit in the middle of the fleet's pause.
func TestPauseThatBeginsDuringTheBudgetWait(t *testing.T) {
	t.Parallel()
	fs := fleets(t, 2, throttle.FleetConfig{Name: "bc-app", Requests: 3, Window: 2 * time.Second, MaxConcurrency: 5})
	ctx := context.Background()
	for _, f := range []*throttle.Fleet{fs[1], fs[0], fs[0]} { // the budget's 3 requests; starts both watches
		rel, err := f.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	done := make(chan time.Time, 1)
	go func() { // waits about 2s for the budget
		rel, err := fs[0].Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		rel()
		done <- time.Now()
	}()
	time.Sleep(500 * time.Millisecond)
	fs[1].Throttled(5 * time.Second) // another worker's 429, Retry-After: 5
	pauseEnd := time.Now().Add(5 * time.Second)
	got := <-done
	if early := pauseEnd.Sub(got); early > 500*time.Millisecond {
		t.Errorf("a permit was handed out %v before the end of the fleet's 5s pause", early.Round(time.Millisecond))
	}
}
