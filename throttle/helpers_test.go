package throttle_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"
)

type acquirer interface {
	Acquire(ctx context.Context) (release func(), err error)
}

// hammer acquires and releases at once from goroutines goroutines spread
// over ls, for run, and returns the grant times in order.
func hammer(run time.Duration, goroutines int, ls ...acquirer) []time.Time {
	var mu sync.Mutex
	var grants []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for {
				release, err := ls[i%len(ls)].Acquire(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				grants = append(grants, time.Now())
				mu.Unlock()
				release()
			}
		})
	}
	wg.Wait()
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	return grants
}

// checkWindow fails when budget+1 grants fall within less than minGap.
func checkWindow(t *testing.T, grants []time.Time, budget int, minGap time.Duration) {
	t.Helper()
	for i := range grants {
		if i+budget < len(grants) && grants[i+budget].Sub(grants[i]) < minGap {
			t.Fatalf("%d grants within %v (grants %d..%d): the budget is exceeded", budget+1, grants[i+budget].Sub(grants[i]), i, i+budget)
		}
	}
}
