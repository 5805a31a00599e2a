package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// BreakerConfig configures the breaker of one subscription.
type BreakerConfig struct {
	// Subscription names the subscription in logs (required).
	Subscription string
	// JS and Consumer are the JetStream context and the subscription's
	// durable consumer, which the breaker pauses and resumes for the whole
	// fleet (required).
	JS       jetstream.JetStream
	Consumer string
	// Threshold is how many transient failures in a row, with no success
	// between them and of at least two different jobs, mean the dependency
	// is down (one job failing alone is the job's problem). Default 5.
	Threshold int
	// MinPause and MaxPause bound the pause after an outage is detected: the
	// first is MinPause, each further trip without a success in between
	// doubles it, up to MaxPause. When a pause ends, the jobs delivered next
	// are the probe. Defaults 5s and 2m.
	MinPause, MaxPause time.Duration
	// Probe checks, with the configuration as it is now (re-read), that the
	// credentials are accepted again. While refused credentials keep the
	// subscription paused, it runs every ProbeMin, growing to ProbeMax;
	// the first success resumes the consumer. Nil: the breaker never
	// resumes an auth pause itself (an operator resumes the consumer).
	Probe              func(ctx context.Context) error
	ProbeMin, ProbeMax time.Duration
	// AuthPause is how long one auth pause lasts on the server; the
	// probing worker extends it. It ends by itself if every worker is gone,
	// so that a fleet started later probes anew. Default 10m.
	AuthPause time.Duration
	// Log receives one line per trip, auth pause and resume.
	Log zerolog.Logger
	// Stats, when set, counts trips and holds the state.
	Stats *BreakerStats
}

// BreakerStats shows a breaker's work. Safe for concurrent use.
type BreakerStats struct {
	// Trips counts pauses for a dependency outage; AuthPauses pauses for
	// refused credentials; Resumes the auth pauses a probe ended.
	Trips, AuthPauses, Resumes atomic.Int64
	// State is the breaker's state now: 0 closed, 1 paused for an outage,
	// 2 paused until the credentials are fixed.
	State atomic.Int32
}

// Breaker states.
const (
	StateClosed = 0
	StateDown   = 1
	StateAuth   = 2
)

// Breaker watches a subscription's outcomes and pauses its consumer, for
// every worker of the fleet (JetStream consumer pause), when a dependency
// is down or refuses the credentials, so that jobs wait in the stream
// instead of burning their attempts (DESIGN.md invariant 4).
type Breaker struct {
	cfg  BreakerConfig
	wake chan struct{}

	mu    sync.Mutex
	fails int             // transient failures in a row
	jobs  map[string]bool // the jobs that failed in this row (up to 2)
	level int             // trips since the last success
	down  bool            // a dependency is held down until a success
	until time.Time       // the end of this breaker's last outage pause
	auth  bool            // paused until the credentials work
}

// NewBreaker applies defaults.
func NewBreaker(cfg BreakerConfig) (*Breaker, error) {
	if cfg.Subscription == "" || cfg.JS == nil || cfg.Consumer == "" {
		return nil, errors.New("worker: breaker: Subscription, JS and Consumer are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = 5
	}
	def(&cfg.MinPause, 5*time.Second)
	def(&cfg.MaxPause, 2*time.Minute)
	def(&cfg.ProbeMin, 5*time.Second)
	def(&cfg.ProbeMax, time.Minute)
	def(&cfg.AuthPause, 10*time.Minute)
	if cfg.Stats == nil {
		cfg.Stats = &BreakerStats{}
	}
	cfg.Log = cfg.Log.With().Str("subscription", cfg.Subscription).Logger()
	return &Breaker{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Stats returns the breaker's counters.
func (b *Breaker) Stats() *BreakerStats { return b.cfg.Stats }

// Record feeds one job's outcome (its failure class, "" for success) and
// reports whether a dependency is down, which makes a transient failure not
// the job's fault (see Decide). job identifies the job (its subject) and
// reason is the redacted failure text.
func (b *Breaker) Record(ctx context.Context, class Class, job, reason string) (down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch class {
	case ClassPermanent, ClassNotFound:
		// One dependency answered about this job (BC: no such record; a
		// malformed job touched none), which says nothing of the others:
		// iPaaS.com may still be down. Only a success closes the breaker.
	case "":
		// The job's writes went through: the dependencies answer.
		if b.down {
			b.cfg.Log.Info().Msg("subscription healthy again: jobs succeed")
		}
		b.fails, b.level, b.down, b.jobs = 0, 0, false, nil
		if b.auth && b.cfg.Probe != nil {
			// A job that started before the credentials were refused may
			// still succeed: only the probe, which resumes the consumer,
			// ends an auth pause. Without a probe an operator resumed it.
			return true
		}
		if b.auth {
			b.cfg.Log.Info().Msg("subscription healthy again: jobs succeed")
		}
		b.auth = false
		b.cfg.Stats.State.Store(StateClosed)
	case ClassTransient:
		b.fails++
		if len(b.jobs) < 2 {
			if b.jobs == nil {
				b.jobs = map[string]bool{}
			}
			b.jobs[job] = true
		}
		if b.down || b.fails >= b.cfg.Threshold && len(b.jobs) >= 2 {
			b.trip(ctx, reason)
		}
	case ClassAuth:
		if !b.auth {
			b.auth = true
			b.cfg.Stats.AuthPauses.Add(1)
			b.cfg.Stats.State.Store(StateAuth)
			err := b.pause(ctx, time.Now().Add(b.cfg.AuthPause))
			ev := b.cfg.Log.Error()
			if err != nil {
				ev = ev.AnErr("pause_error", err)
			}
			ev.Str("error_class", string(class)).Str("reason", reason).
				Msg("subscription paused: the credentials or permissions were refused; fix the configuration (bcsync check tells how); it resumes by itself once they work")
			select {
			case b.wake <- struct{}{}:
			default:
			}
		}
	}
	return b.down || b.auth
}

// trip pauses the consumer for the next interval. b.mu is held.
func (b *Breaker) trip(ctx context.Context, reason string) {
	now := time.Now()
	if b.down && b.until.After(now) {
		// Held down already: only a failure after the pause ended (a
		// probe) trips again.
		return
	}
	b.down = true
	b.level++
	d := min(b.cfg.MinPause<<min(b.level-1, 20), b.cfg.MaxPause)
	b.until = now.Add(d)
	b.cfg.Stats.Trips.Add(1)
	if !b.auth {
		b.cfg.Stats.State.Store(StateDown)
	}
	err := b.pause(ctx, b.until)
	ev := b.cfg.Log.Warn()
	if err != nil {
		ev = ev.AnErr("pause_error", err)
	}
	ev.Int("failures_in_a_row", b.fails).Dur("paused_for", d).Str("reason", reason).
		Msg("a dependency looks down: subscription paused for the fleet; jobs wait in the stream")
}

// pause pauses the consumer until until, unless it is paused longer already.
func (b *Breaker) pause(ctx context.Context, until time.Time) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if cur, err := b.pausedUntil(ctx); err == nil && cur.After(until) {
		return nil
	}
	if _, err := b.cfg.JS.PauseConsumer(ctx, messages.StreamJobs, b.cfg.Consumer, until); err != nil {
		return fmt.Errorf("pause consumer %s: %w", b.cfg.Consumer, err)
	}
	return nil
}

// pausedUntil is the end of the consumer's pause (zero when not paused).
func (b *Breaker) pausedUntil(ctx context.Context) (time.Time, error) {
	c, err := b.cfg.JS.Consumer(ctx, messages.StreamJobs, b.cfg.Consumer)
	if err != nil {
		return time.Time{}, err
	}
	info := c.CachedInfo()
	if !info.Paused || info.Config.PauseUntil == nil {
		return time.Time{}, nil
	}
	return *info.Config.PauseUntil, nil
}

// Run probes the credentials while the subscription is paused for them,
// until ctx ends. A consumer found paused for longer than MaxPause at start
// was paused for credentials by an earlier worker: it is probed too.
func (b *Breaker) Run(ctx context.Context) {
	if until, err := b.pausedUntil(ctx); err == nil && time.Until(until) > b.cfg.MaxPause {
		b.mu.Lock()
		b.auth = true
		b.cfg.Stats.State.Store(StateAuth)
		b.mu.Unlock()
		b.cfg.Log.Warn().Time("paused_until", until).Msg("subscription found paused for refused credentials: probing them")
	} else {
		select {
		case <-b.wake:
		case <-ctx.Done():
			return
		}
	}
	for {
		b.probeUntilResumed(ctx)
		select {
		case <-b.wake:
		case <-ctx.Done():
			return
		}
	}
}

func (b *Breaker) probeUntilResumed(ctx context.Context) {
	if b.cfg.Probe == nil {
		return
	}
	interval := b.cfg.ProbeMin
	extended := time.Now()
	for {
		b.mu.Lock()
		auth := b.auth
		b.mu.Unlock()
		if !auth {
			return
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return
		}
		interval = min(2*interval, b.cfg.ProbeMax)
		err := b.cfg.Probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			b.cfg.Log.Debug().Err(err).Dur("next_probe_in", interval).Msg("credentials still refused")
			if time.Since(extended) > b.cfg.AuthPause/2 {
				if perr := b.pause(ctx, time.Now().Add(b.cfg.AuthPause)); perr == nil {
					extended = time.Now()
				}
			}
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, rerr := b.cfg.JS.ResumeConsumer(rctx, messages.StreamJobs, b.cfg.Consumer)
		cancel()
		if rerr != nil {
			b.cfg.Log.Warn().Err(rerr).Msg("credentials work again, but the consumer could not be resumed; retrying")
			continue
		}
		b.mu.Lock()
		b.auth, b.down, b.level, b.fails, b.jobs = false, false, 0, 0, nil
		b.mu.Unlock()
		b.cfg.Stats.Resumes.Add(1)
		b.cfg.Stats.State.Store(StateClosed)
		b.cfg.Log.Info().Msg("credentials accepted again: subscription resumed")
		return
	}
}
