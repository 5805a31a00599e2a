package worker

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Backoff computes the redelivery delay of a failed job.
type Backoff struct {
	// Initial is the delay after the first failure. Default 1s.
	Initial time.Duration
	// Max caps the delay. Default 5m.
	Max time.Duration
	// Jitter is the randomization factor (0.5 = ±50%). Default 0.5.
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
	if b.Jitter <= 0 {
		b.Jitter = 0.5
	}
	return b
}

// Delay is the delay before delivery attempt+1, after attempt deliveries
// failed: jittered exponential backoff (backoff/v4), or the service's
// Retry-After when it gave one (plus up to 10% jitter so that a fleet told
// the same time does not return at the same instant), capped at Max.
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	b = b.withDefaults()
	if retryAfter > 0 {
		d := retryAfter + time.Duration(rand.Int64N(int64(retryAfter/10)+1))
		return min(d, max(b.Max, retryAfter))
	}
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(b.Initial),
		backoff.WithMaxInterval(b.Max),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(b.Jitter),
		backoff.WithMaxElapsedTime(0),
	)
	d := eb.NextBackOff()
	for i := 1; i < attempt && d < b.Max; i++ {
		d = eb.NextBackOff()
	}
	return min(d, b.Max)
}
