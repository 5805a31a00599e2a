package throttle

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Local limits requests from one process: at most Requests in any sliding
// Window, and at most MaxConcurrency at once. Like Fleet, it counts over the
// window plus 2%, because the service counts arrivals, which follow the
// grants by a varying delay.
//
// It keeps the time of each of the last Requests grants (a sliding log), so
// that no window ever holds more than the budget. A token bucket (such as
// golang.org/x/time/rate) would not do: its burst lets one window hold the
// burst plus the window's rate, and BC answers that with 429s.
type Local struct {
	sem    chan struct{}
	window time.Duration

	mu    sync.Mutex
	log   []time.Time // ring of the last len(log) grant times
	next  int         // oldest entry, overwritten by the next grant
	stats *Stats
}

// NewLocal returns a limiter of requests per window and maxConcurrency
// requests at once. requests <= 0 means no rate limit; maxConcurrency <= 0
// means no concurrency limit.
func NewLocal(requests int, window time.Duration, maxConcurrency int) *Local {
	l := &Local{window: window + window/50, stats: &Stats{}}
	if requests > 0 && window > 0 {
		l.log = make([]time.Time, requests)
	}
	if maxConcurrency > 0 {
		l.sem = make(chan struct{}, maxConcurrency)
	}
	return l
}

// Stats returns the limiter's counters.
func (l *Local) Stats() *Stats { return l.stats }

// Acquire waits for a concurrency slot and for the budget, or for ctx to
// end. The caller must call release once the request is done.
func (l *Local) Acquire(ctx context.Context) (release func(), err error) {
	start := time.Now()
	defer func() { l.stats.Waited.Add(int64(time.Since(start))) }()
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		default:
			l.stats.LeaseWaits.Add(1)
			select {
			case l.sem <- struct{}{}:
			case <-ctx.Done():
				return nil, fmt.Errorf("throttle: waiting for a concurrency slot: %w", ctx.Err())
			}
		}
	}
	release = func() {
		if l.sem != nil {
			<-l.sem
		}
	}
	if err := l.grant(ctx); err != nil {
		release()
		return nil, err
	}
	l.stats.Granted.Add(1)
	return release, nil
}

// grant waits until the oldest of the last Requests grants left the window.
func (l *Local) grant(ctx context.Context) error {
	if l.log == nil {
		return nil
	}
	waited := false
	for {
		l.mu.Lock()
		now := time.Now()
		free := l.log[l.next].Add(l.window)
		if !now.Before(free) {
			l.log[l.next] = now
			l.next = (l.next + 1) % len(l.log)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		if !waited {
			waited = true
			l.stats.RateWaits.Add(1)
		}
		if err := sleep(ctx, free.Sub(now)); err != nil {
			return fmt.Errorf("throttle: waiting for the request budget: %w", ctx.Err())
		}
	}
}
