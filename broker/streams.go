package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions tunes the streams.
type StreamOptions struct {
	// Replicas of each stream: 1 (default) on one server, 3 on a cluster.
	Replicas int
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id to
	// deduplicate a retried publish. Default 2 minutes.
	DuplicateWindow time.Duration
	// DLQMaxAge is how long dead letters are kept. Default 30 days.
	DLQMaxAge time.Duration
}

// JobsStreamConfig is the BCSYNC_JOBS stream: a work queue, so a job is
// removed once acknowledged (or Termed after it was dead-lettered).
func JobsStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        messages.StreamJobs,
		Description: "bcsync sync jobs: bcsync.jobs.<subscription>.<type>.<key>",
		Subjects:    []string{messages.JobsPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		MaxMsgSize:  messages.MaxJobBytes,
		Discard:     jetstream.DiscardNew,
	}
}

// DLQStreamConfig is the BCSYNC_DLQ stream: kept by limits (30 days by
// default), so listing dead letters does not consume them.
func DLQStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        messages.StreamDLQ,
		Description: "bcsync dead letters: bcsync.dlq.<subscription>.<type>",
		Subjects:    []string{messages.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.DLQMaxAge,
		Duplicates:  o.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.DLQMaxAge <= 0 {
		o.DLQMaxAge = 30 * 24 * time.Hour
	}
	return o
}

// EnsureStreams creates BCSYNC_JOBS and BCSYNC_DLQ, or updates them to the
// configuration bcsync expects. Safe to call from every worker at start-up.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{JobsStreamConfig(o), DLQStreamConfig(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("broker: create or update stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ConsumerOptions are one subscription's consumer settings.
type ConsumerOptions struct {
	// Subscription is the bcsync subscription name.
	Subscription string
	// MaxDeliver is the number of delivery attempts before JetStream
	// stops redelivering; the worker dead-letters on the last one. Must be >= 2.
	MaxDeliver int
	// AckWait is how long a delivered job may stay unacknowledged before
	// it is redelivered (a dead worker's jobs come back after it).
	AckWait time.Duration
	// MaxAckPending caps the jobs delivered but not yet acknowledged,
	// across every worker of the fleet.
	MaxAckPending int
}

// ConsumerName is the durable consumer of one subscription.
func ConsumerName(subscription string) string { return "bcsync-" + subscription }

// ConsumerConfig is the durable pull consumer of one subscription.
func ConsumerConfig(o ConsumerOptions) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(o.Subscription),
		Description:   "bcsync worker pool of subscription " + o.Subscription,
		FilterSubject: messages.SubscriptionFilter(o.Subscription),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    o.MaxDeliver,
		AckWait:       o.AckWait,
		MaxAckPending: o.MaxAckPending,
		// Pull requests from workers of the whole fleet.
		MaxWaiting: 512,
	}
}

// EnsureConsumer creates or updates the durable pull consumer of one
// subscription.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, o ConsumerOptions) (jetstream.Consumer, error) {
	if !messages.ValidSubscription(o.Subscription) {
		return nil, fmt.Errorf("broker: consumer for subscription %q: bad name", o.Subscription)
	}
	if o.MaxDeliver < 2 {
		return nil, errors.New("broker: MaxDeliver must be at least 2 (it must be finite so a failing job ends in the dead-letter stream)")
	}
	if o.AckWait <= 0 || o.MaxAckPending <= 0 {
		return nil, errors.New("broker: AckWait and MaxAckPending must be positive")
	}
	c, err := js.CreateOrUpdateConsumer(ctx, messages.StreamJobs, ConsumerConfig(o))
	if err != nil {
		return nil, fmt.Errorf("broker: create or update consumer %s: %w", ConsumerName(o.Subscription), err)
	}
	return c, nil
}
