package throttle

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// Local limits requests from one process: at most Requests per Window
// (smoothly, with a burst of MaxConcurrency) and at most MaxConcurrency at once.
type Local struct {
	rate *rate.Limiter
	sem  chan struct{}
}

// NewLocal returns a limiter of requests per window and maxConcurrency
// requests at once. requests <= 0 means no rate limit; maxConcurrency <= 0
// means no concurrency limit.
func NewLocal(requests int, window time.Duration, maxConcurrency int) *Local {
	l := &Local{}
	if requests > 0 && window > 0 {
		burst := maxConcurrency
		if burst <= 0 || burst > requests {
			burst = min(requests, 10)
		}
		l.rate = rate.NewLimiter(rate.Limit(float64(requests)/window.Seconds()), burst)
	}
	if maxConcurrency > 0 {
		l.sem = make(chan struct{}, maxConcurrency)
	}
	return l
}

// Acquire waits for a concurrency slot and a rate token, or for ctx to end.
// The caller must call release once the request is done.
func (l *Local) Acquire(ctx context.Context) (release func(), err error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("throttle: waiting for a concurrency slot: %w", ctx.Err())
		}
	}
	release = func() {
		if l.sem != nil {
			<-l.sem
		}
	}
	if l.rate != nil {
		if err := l.rate.Wait(ctx); err != nil {
			release()
			return nil, fmt.Errorf("throttle: waiting for the request budget: %w", err)
		}
	}
	return release, nil
}
