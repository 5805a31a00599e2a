package throttle

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Local limits requests from one process: at most Requests in any sliding
// Window, and at most MaxConcurrency at once.
//
// It keeps, for each of the last Requests requests, the time it was
// released (a sliding log), and grants a request only once the one Requests
// grants before it was released a whole Window ago (plus 2%). The service
// counts arrivals, which come after the grant and before the release: so
// however long a request takes to arrive (a loaded machine, a slow
// network), no window of the service ever holds more than the budget. A token bucket (such as
// golang.org/x/time/rate) would not do: its burst lets one window hold the
// burst plus the window's rate, and BC answers that with 429s.
type Local struct {
	sem    chan struct{}
	window time.Duration

	mu    sync.Mutex
	log   []time.Time // ring of the last len(log) requests' release times
	busy  []bool      // requests of the ring not released yet
	next  int         // oldest entry, overwritten by the next grant
	stats *Stats
}

// NewLocal returns a limiter of requests per window and maxConcurrency
// requests at once. requests <= 0 means no rate limit; maxConcurrency <= 0
// means no concurrency limit.
func NewLocal(requests int, window time.Duration, maxConcurrency int) *Local {
	l := &Local{window: window + window/50, stats: &Stats{}}
	if requests > 0 && window > 0 {
		l.log, l.busy = make([]time.Time, requests), make([]bool, requests)
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
	freeSlot := func() {
		if l.sem != nil {
			<-l.sem
		}
	}
	i, err := l.grant(ctx)
	if err != nil {
		freeSlot()
		return nil, err
	}
	l.stats.Granted.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			if i >= 0 {
				l.mu.Lock()
				l.log[i], l.busy[i] = time.Now(), false
				l.mu.Unlock()
			}
			freeSlot()
		})
	}, nil
}

// grant waits until the request Requests grants ago was released a window
// ago, and returns the ring entry of this one (-1 without a rate limit).
func (l *Local) grant(ctx context.Context) (int, error) {
	if l.log == nil {
		return -1, nil
	}
	waited := false
	for {
		l.mu.Lock()
		now := time.Now()
		wait := time.Millisecond // still running: look again shortly
		if !l.busy[l.next] {
			wait = l.log[l.next].Add(l.window).Sub(now)
		}
		if wait <= 0 {
			i := l.next
			l.log[i], l.busy[i] = now, true
			l.next = (l.next + 1) % len(l.log)
			l.mu.Unlock()
			return i, nil
		}
		l.mu.Unlock()
		if !waited {
			waited = true
			l.stats.RateWaits.Add(1)
		}
		if err := sleep(ctx, wait); err != nil {
			return -1, fmt.Errorf("throttle: waiting for the request budget: %w", ctx.Err())
		}
	}
}
