package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	// CreateOnly creates the streams that are missing and leaves existing
	// ones as they are: for the commands that do not know the fleet's
	// settings (enqueue, init, webhook, dlq), which must not turn R3
	// streams back into R1.
	CreateOnly bool
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

// StreamAdvisories keeps JetStream's max-deliveries advisories of
// BCSYNC_JOBS, so that the workers' safety net handles those announced
// while no worker was running.
const StreamAdvisories = "BCSYNC_ADVISORIES"

// AdvisorySubject is where JetStream announces BCSYNC_JOBS messages that
// reached MaxDeliver, for every consumer.
const AdvisorySubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + messages.StreamJobs + ".*"

// AdvisoriesStreamConfig is the configuration of StreamAdvisories.
func AdvisoriesStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        StreamAdvisories,
		Description: "bcsync: BCSYNC_JOBS messages that reached MaxDeliver, for the safety net",
		Subjects:    []string{AdvisorySubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.DLQMaxAge,
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
// configuration bcsync expects. Safe to call from every worker at start-up:
// a stream that already has the expected configuration is left alone, so
// workers starting together do not update it under each other (nats-server
// 2.15 races a stream update against a consumer being created).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, want := range []jetstream.StreamConfig{JobsStreamConfig(o), DLQStreamConfig(o), AdvisoriesStreamConfig(o)} {
		if err := ensureStream(ctx, js, want, o.CreateOnly); err != nil {
			return fmt.Errorf("broker: create or update stream %s: %w", want.Name, err)
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, createOnly bool) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, want)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		// Another worker created it first, maybe with other settings.
		s, err = js.Stream(ctx, want.Name)
	}
	if err != nil {
		return err
	}
	have := s.CachedInfo().Config
	if createOnly || streamMatches(have, want) {
		return nil
	}
	_, err = js.UpdateStream(ctx, managed(have, want))
	return err
}

// streamMatches reports whether have already is the configuration bcsync
// sets, as the server stores it (its defaults filled in).
func streamMatches(have, want jetstream.StreamConfig) bool {
	have, want = ServerDefaults(have), ServerDefaults(want)
	return slices.Equal(have.Subjects, want.Subjects) && have.Description == want.Description &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.MaxMsgSize == want.MaxMsgSize && have.Discard == want.Discard &&
		have.MaxAge == want.MaxAge
}

// managed is have with the settings bcsync manages (those streamMatches
// compares) taken from want: an update keeps what an operator set beyond
// them, such as a max_bytes cap.
func managed(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	have.Subjects, have.Description = want.Subjects, want.Description
	have.Retention, have.Storage, have.Replicas = want.Retention, want.Storage, want.Replicas
	have.Duplicates, have.MaxMsgSize, have.Discard, have.MaxAge = want.Duplicates, want.MaxMsgSize, want.Discard, want.MaxAge
	return have
}

// ServerDefaults fills in what nats-server stores for a stream setting
// left at zero (-1 for "unlimited", one replica, a 2-minute duplicate
// window or MaxAge if shorter), so that two configurations compare as the
// server sees them.
func ServerDefaults(c jetstream.StreamConfig) jetstream.StreamConfig {
	if c.MaxConsumers == 0 {
		c.MaxConsumers = -1
	}
	for _, p := range []*int64{&c.MaxMsgs, &c.MaxBytes, &c.MaxMsgsPerSubject} {
		if *p == 0 {
			*p = -1
		}
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = -1
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
		if c.MaxAge != 0 && c.MaxAge < c.Duplicates {
			c.Duplicates = c.MaxAge
		}
	}
	return c
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
	want := ConsumerConfig(o)
	c, err := js.Consumer(ctx, messages.StreamJobs, want.Durable)
	if err == nil {
		if consumerMatches(c.CachedInfo().Config, want) {
			return c, nil
		}
		// An update must not resume a consumer the fleet paused.
		want.PauseUntil = c.CachedInfo().Config.PauseUntil
	}
	c, err = js.CreateOrUpdateConsumer(ctx, messages.StreamJobs, want)
	if err != nil {
		return nil, fmt.Errorf("broker: create or update consumer %s: %w", ConsumerName(o.Subscription), err)
	}
	return c, nil
}

// consumerMatches reports whether have already is the configuration bcsync sets.
func consumerMatches(have, want jetstream.ConsumerConfig) bool {
	return have.FilterSubject == want.FilterSubject && have.Description == want.Description &&
		have.AckPolicy == want.AckPolicy && have.DeliverPolicy == want.DeliverPolicy &&
		have.MaxDeliver == want.MaxDeliver && have.AckWait == want.AckWait &&
		have.MaxAckPending == want.MaxAckPending && have.MaxWaiting == want.MaxWaiting
}
