package throttle_test

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

type acquirer interface {
	Acquire(ctx context.Context) (release func(), err error)
}

// hammer acquires and releases at once from goroutines goroutines spread
// over ls, for run, and returns the grant times in order.
func hammer[A acquirer](run time.Duration, goroutines int, ls ...A) []time.Time {
	return hammerUntil(0, run, goroutines, ls...)
}

// hammerUntil is hammer that also stops once want grants were made (0: no
// such limit), so that a test needing some number of grants does not
// depend on how fast a loaded machine makes them.
func hammerUntil[A acquirer](want int, limit time.Duration, goroutines int, ls ...A) []time.Time {
	var mu sync.Mutex
	var grants []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for {
				release, err := ls[i%len(ls)].Acquire(ctx)
				if err != nil {
					return
				}
				at := time.Now()
				mu.Lock()
				grants = append(grants, at)
				if len(grants) == want {
					cancel()
				}
				mu.Unlock()
				release()
			}
		})
	}
	wg.Wait()
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	return grants
}

// checkWindow fails when budget+1 grants fall within less than minGap, and
// logs the shortest time budget+1 grants took.
func checkWindow(t *testing.T, grants []time.Time, budget int, minGap time.Duration) {
	t.Helper()
	shortest := time.Duration(-1)
	for i := range grants {
		if i+budget >= len(grants) {
			break
		}
		gap := grants[i+budget].Sub(grants[i])
		if gap < minGap {
			t.Fatalf("%d grants within %v (grants %d..%d): the budget is exceeded", budget+1, gap, i, i+budget)
		}
		if shortest < 0 || gap < shortest {
			shortest = gap
		}
	}
	if shortest >= 0 {
		t.Logf("%d grants took at least %v", budget+1, shortest)
	}
}

// countingKV counts the KV round trips a limiter makes: all of them, and
// the creates and deletes of concurrency leases.
type countingKV struct {
	jetstream.KeyValue
	calls, leaseCreates, leaseDeletes atomic.Int64
}

func (c *countingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	c.calls.Add(1)
	if strings.HasPrefix(key, "lease.") {
		c.leaseCreates.Add(1)
	}
	return c.KeyValue.Create(ctx, key, value, opts...)
}

func (c *countingKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	c.calls.Add(1)
	if strings.HasPrefix(key, "lease.") {
		c.leaseDeletes.Add(1)
	}
	return c.KeyValue.Delete(ctx, key, opts...)
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.calls.Add(1)
	return c.KeyValue.Get(ctx, key)
}

func (c *countingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	c.calls.Add(1)
	return c.KeyValue.Update(ctx, key, value, rev)
}

// waitFor polls cond until it holds, or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
