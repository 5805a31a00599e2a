package bcclient

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults for RetryPolicy.
const (
	DefaultRetryInitial    = 500 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultRetryMaxElapsed = 30 * time.Second
)

// RetryPolicy says how the client retries a request that failed in a way
// that may pass (Classify: ClassTransient or ClassThrottled) before it
// returns the error. The zero value means the defaults.
//
// Delays grow exponentially from Initial (x1.5 per retry, with ±50% jitter,
// capped at Max); a Retry-After header makes the delay at least that long,
// whatever its status. The client gives up and returns the last error as
// soon as the next delay would end more than MaxElapsed after the first
// attempt began or after the context's deadline, or when the context ends.
//
// Only requests that are safe to repeat are retried: GETs, and PATCH and
// DELETE with If-Match (a repeat that arrives after an unseen success fails
// with ErrChanged or a 404 instead of writing twice). A POST is sent again
// only when BC certainly did not process it: a 429, a 503 with Retry-After,
// a failed token request (nothing was sent), or the 401 rule (see Client).
// A Limiter error, a non-2xx status other than 408, 429, 500, 502, 503 and
// 504, and a response that does not decode are never retried.
type RetryPolicy struct {
	// Initial is the first delay. Default DefaultRetryInitial (500ms).
	Initial time.Duration
	// Max caps one delay (Retry-After may ask for more). Default
	// DefaultRetryMax (30s).
	Max time.Duration
	// MaxElapsed bounds the time from the first attempt to the start of the
	// last one. Default DefaultRetryMaxElapsed (30s). Keep it below the
	// worker's AckWait: a request can last MaxElapsed + Config.Timeout.
	MaxElapsed time.Duration
	// Disabled turns retries off (the 401 rule still applies): every
	// failure is returned at once.
	Disabled bool
}

func (p *RetryPolicy) setDefaults() {
	if p.Initial == 0 {
		p.Initial = DefaultRetryInitial
	}
	if p.Max == 0 {
		p.Max = DefaultRetryMax
	}
	if p.MaxElapsed == 0 {
		p.MaxElapsed = DefaultRetryMaxElapsed
	}
}

func (p *RetryPolicy) validate() []error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Initial", p.Initial}, {"Max", p.Max}, {"MaxElapsed", p.MaxElapsed}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("bcclient: config: Retry.%s %s must not be negative", f.name, f.d))
		}
	}
	if p.Initial > p.Max {
		errs = append(errs, fmt.Errorf("bcclient: config: Retry.Initial %s must not exceed Retry.Max %s", p.Initial, p.Max))
	}
	return errs
}

// backOff returns the delays of one request's retries. The retry loop
// checks MaxElapsed itself, because a Retry-After may lengthen a delay.
func (p *RetryPolicy) backOff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.Initial,
		RandomizationFactor: backoff.DefaultRandomizationFactor,
		Multiplier:          backoff.DefaultMultiplier,
		MaxInterval:         p.Max,
		MaxElapsedTime:      0, // never Stop
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}

// sleep waits d, or until ctx ends and returns its error.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
