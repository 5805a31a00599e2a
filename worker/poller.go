package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Poller asks, once per Interval across the whole fleet, for the records of
// Types changed since their watermark: it publishes one delta job per type,
// which any worker then runs (see Bulk). It covers the resources BC sends
// no webhooks for (locations) and, as a safety net, notifications that
// were lost. Every worker runs a Poller; a lease in the progress bucket,
// a key that lives for one Interval, lets only one of them poll each time.
type Poller struct {
	JS           messages.Publisher
	KV           jetstream.KeyValue
	Subscription string
	Types        []messages.Type
	Interval     time.Duration
	WorkerID     string
	Log          zerolog.Logger
	// Polls counts the polls this worker made.
	Polls atomic.Int64
}

// PollLeaseKey is the progress bucket's key of a subscription's poll lease.
func PollLeaseKey(subscription string) string { return "poll." + subscription }

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	if len(p.Types) == 0 || p.Interval <= 0 {
		return
	}
	// The lease is a key with a TTL of whole seconds.
	ttl := max(p.Interval.Round(time.Second), time.Second)
	check := min(p.Interval/4, 30*time.Second)
	for {
		if err := p.poll(ctx, ttl); err != nil && ctx.Err() == nil {
			p.Log.Warn().Err(err).Msg("poll failed; trying again")
		}
		select {
		case <-time.After(check/2 + time.Duration(rand.Int64N(int64(check)+1))):
		case <-ctx.Done():
			return
		}
	}
}

// queued reports whether a bulk job (delta or initialize) of type t is in
// the job stream, queued or running: a work queue keeps a job until it is
// settled. Unknown (no stream access, or the read failed) is false: a
// delta too many costs reads, a delta too few misses changes.
func (p *Poller) queued(ctx context.Context, t messages.Type) bool {
	js, ok := p.JS.(jetstream.JetStream)
	if !ok {
		return false
	}
	s, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return false
	}
	_, err = s.GetLastMsgForSubject(ctx, messages.JobSubject(p.Subscription, t, ""))
	return err == nil
}

// poll takes the lease and, if it got it, publishes the delta jobs.
func (p *Poller) poll(ctx context.Context, ttl time.Duration) error {
	key := PollLeaseKey(p.Subscription)
	rev, err := p.KV.Create(ctx, key, []byte(p.WorkerID), jetstream.KeyTTL(ttl))
	if broker.IsConflict(err) {
		return nil // another worker polled in this interval
	}
	if err != nil {
		return fmt.Errorf("worker: poll lease: %w", err)
	}
	// Ids name the interval, so that a poll published twice (a lease
	// lost and taken again within it, or a poll retried after a failed
	// publish) is deduplicated.
	slot := strconv.FormatInt(time.Now().UnixNano()/int64(ttl), 10)
	for _, t := range p.Types {
		if p.queued(ctx, t) {
			// The last poll's delta (or an initialization) of the type is
			// still queued or running, e.g. held through an outage: another
			// would only read the same changes again once it ends.
			p.Log.Debug().Str("type", string(t)).Msg("a bulk job of the type is still queued: no new delta")
			continue
		}
		job := messages.Job{ID: "poll-" + string(t) + "-" + slot, Subscription: p.Subscription, Type: t, Op: messages.OpDelta, Source: "poller"}
		if _, _, err := messages.Publish(ctx, p.JS, job); err != nil {
			err = fmt.Errorf("worker: poll %s: %w", t, err)
			// Give the lease back, so that the next check (here or on
			// another worker) polls again, not one interval later.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if derr := p.KV.Delete(dctx, key, jetstream.LastRevision(rev)); derr != nil && !broker.IsConflict(derr) {
				err = fmt.Errorf("%w; the poll lease stays until it expires: %w", err, derr)
			}
			return err
		}
	}
	p.Polls.Add(1)
	p.Log.Debug().Int("types", len(p.Types)).Msg("polled BC for changes")
	return nil
}
