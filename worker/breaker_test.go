package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func (e *loopEnv) breaker(t *testing.T, cfg worker.BreakerConfig) *worker.Breaker {
	t.Helper()
	cfg.Subscription, cfg.JS, cfg.Consumer, cfg.Log = "contoso", e.b.JS, broker.ConsumerName("contoso"), zerolog.Nop()
	br, err := worker.NewBreaker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return br
}

func (e *loopEnv) paused(t *testing.T) bool {
	t.Helper()
	c, err := e.b.JS.Consumer(context.Background(), messages.StreamJobs, broker.ConsumerName("contoso"))
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Paused
}

// A dependency down for longer than the jobs' attempts last: the consumer is
// paused for the fleet, jobs on their last delivery are requeued, and not
// one is dead-lettered.
func TestLoopOutageHoldsAndRequeuesButNeverDeadLetters(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 20)
	stats := &worker.Stats{}
	var down atomic.Bool
	down.Store(true)
	var calls atomic.Int32
	br := e.breaker(t, worker.BreakerConfig{Threshold: 3, MinPause: 200 * time.Millisecond, MaxPause: 200 * time.Millisecond})
	failures := brokertest.KV(t, e.b, broker.BucketRecords)
	start := time.Now()
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Breaker: br, Concurrency: 4, Failures: failures,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			calls.Add(1)
			if down.Load() {
				return &bcclient.APIError{Status: 503, Code: "Internal_ServiceUnavailable", Message: "down"}
			}
			return nil
		})})
	waitFor(t, 10*time.Second, "the consumer paused", func() bool { return e.paused(t) })
	waitFor(t, 20*time.Second, "a job requeued on its last delivery", func() bool { return stats.Requeued.Load() > 0 })
	// The first copy (after the 20 jobs) carries when the job it replaces
	// first failed: its dead letter, if it came to one, would say so.
	s, err := e.b.JS.Stream(context.Background(), messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if copy1, err := s.GetMsg(context.Background(), 21); err != nil {
		t.Errorf("the first requeued copy: %v", err)
	} else if first, err := time.Parse(time.RFC3339Nano, copy1.Header.Get(worker.HeaderFirstFailure)); err != nil || first.Before(start) || !first.Before(copy1.Time) {
		t.Errorf("the requeued copy's first failure %q (%v): want between the test's start %v and the copy's %v", copy1.Header.Get(worker.HeaderFirstFailure), err, start, copy1.Time)
	}
	down.Store(false)
	waitFor(t, 20*time.Second, "every job acked", func() bool { return stats.Acked.Load() == 20 })
	if n := stats.DeadLettered.Load(); n != 0 {
		t.Errorf("%d dead letters after an outage", n)
	}
	if got := e.streamMsgs(t, messages.StreamDLQ); got != 0 {
		t.Errorf("%d messages in the DLQ", got)
	}
	if got := e.streamMsgs(t, messages.StreamJobs); got != 0 {
		t.Errorf("%d jobs left in the stream", got)
	}
	if br.Stats().Trips.Load() == 0 || stats.Held.Load() == 0 {
		t.Errorf("trips=%d held=%d: the outage was not seen", br.Stats().Trips.Load(), stats.Held.Load())
	}
	if s := br.Stats().State.Load(); s != worker.StateClosed {
		t.Errorf("breaker state %d after recovery, want closed", s)
	}
	// Every job settled: no first failure is kept any more.
	waitFor(t, 5*time.Second, "the first failures forgotten", func() bool { return len(failureKeys(t, failures)) == 0 })
	t.Logf("%d handler calls for 20 jobs; held %d, requeued %d, trips %d", calls.Load(), stats.Held.Load(), stats.Requeued.Load(), br.Stats().Trips.Load())
}

// Transient failures of one job while the others succeed are the job's own:
// they count, and the last one dead-letters it.
func TestLoopIsolatedTransientFailuresStillDeadLetter(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 10)
	stats := &worker.Stats{}
	br := e.breaker(t, worker.BreakerConfig{Threshold: 5})
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Breaker: br, Concurrency: 2,
		Handler: worker.HandlerFunc(func(_ context.Context, j *messages.Job) error {
			if j.Key == "L0003" {
				return errors.New("this record breaks the service")
			}
			return nil
		})})
	waitFor(t, 20*time.Second, "nine acks and one dead letter", func() bool {
		return stats.Acked.Load() == 9 && stats.DeadLettered.Load() == 1
	})
	if br.Stats().Trips.Load() != 0 {
		t.Errorf("one bad record tripped the breaker %d times", br.Stats().Trips.Load())
	}
}

// Refused credentials pause the subscription until a probe succeeds: no
// delivery meanwhile, no dead letter, and it resumes without a restart.
func TestLoopAuthFailurePausesUntilTheProbeSucceeds(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 10)
	stats := &worker.Stats{}
	var fixed atomic.Bool
	var calls, probes atomic.Int32
	br := e.breaker(t, worker.BreakerConfig{ProbeMin: 100 * time.Millisecond, ProbeMax: 200 * time.Millisecond,
		Probe: func(context.Context) error {
			probes.Add(1)
			if !fixed.Load() {
				return errors.New("AADSTS7000215: invalid client secret")
			}
			return nil
		}})
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Breaker: br, Concurrency: 2,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			calls.Add(1)
			if !fixed.Load() {
				return &bcclient.APIError{Status: 403, Code: "Authorization_Unauthorized", Message: "no permission"}
			}
			return nil
		})})
	waitFor(t, 10*time.Second, "the subscription paused for its credentials", func() bool {
		return e.paused(t) && br.Stats().State.Load() == worker.StateAuth
	})
	time.Sleep(300 * time.Millisecond) // in-flight jobs settle
	before := calls.Load()
	waitFor(t, 10*time.Second, "a few probes", func() bool { return probes.Load() >= 3 })
	if after := calls.Load(); after != before {
		t.Errorf("%d jobs ran while the subscription was paused", after-before)
	}
	fixed.Store(true)
	waitFor(t, 20*time.Second, "every job acked after the fix", func() bool { return stats.Acked.Load() == 10 })
	if n := stats.DeadLettered.Load(); n != 0 {
		t.Errorf("%d dead letters for refused credentials", n)
	}
	if br.Stats().Resumes.Load() != 1 || br.Stats().AuthPauses.Load() != 1 {
		t.Errorf("resumes=%d auth pauses=%d, want 1 and 1", br.Stats().Resumes.Load(), br.Stats().AuthPauses.Load())
	}
}

// A job in flight when the credentials were refused may still succeed. That
// success once ended the auth state, so the probe stopped without resuming
// the consumer, which stayed paused until AuthPause ran out (10 minutes by
// default). Only the probe ends an auth pause now.
func TestBreakerSuccessDuringAnAuthPauseLeavesItToTheProbe(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	var fixed atomic.Bool
	br := e.breaker(t, worker.BreakerConfig{ProbeMin: 100 * time.Millisecond, ProbeMax: 200 * time.Millisecond, AuthPause: time.Hour,
		Probe: func(context.Context) error {
			if !fixed.Load() {
				return errors.New("AADSTS7000215: invalid client secret")
			}
			return nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { br.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if !br.Record(ctx, worker.ClassAuth, "job-1", "403") {
		t.Fatal("an auth failure did not hold the jobs")
	}
	waitFor(t, 5*time.Second, "the consumer paused", func() bool { return e.paused(t) })
	time.Sleep(300 * time.Millisecond) // a probe or two fail
	if !br.Record(ctx, "", "job-2", "") {
		t.Error("a success in flight ended the auth pause's hold of failures")
	}
	if s := br.Stats().State.Load(); s != worker.StateAuth {
		t.Errorf("state %d after a success in flight, want %d (auth)", s, worker.StateAuth)
	}
	fixed.Store(true)
	waitFor(t, 5*time.Second, "the probe resumed the consumer", func() bool {
		return br.Stats().Resumes.Load() > 0 && !e.paused(t)
	})
	if br.Stats().Resumes.Load() != 1 || br.Stats().State.Load() != worker.StateClosed {
		t.Errorf("resumes=%d state=%d, want 1 and closed", br.Stats().Resumes.Load(), br.Stats().State.Load())
	}
}

// A worker that starts while the consumer is paused for credentials probes
// them and resumes the consumer.
func TestBreakerProbesAPauseFoundAtStart(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	if _, err := e.b.JS.PauseConsumer(context.Background(), messages.StreamJobs, broker.ConsumerName("contoso"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.publish(t, 3)
	stats := &worker.Stats{}
	br := e.breaker(t, worker.BreakerConfig{ProbeMin: 100 * time.Millisecond, Probe: func(context.Context) error { return nil }})
	e.run(t, worker.LoopConfig{Stats: stats, Breaker: br,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil })})
	waitFor(t, 10*time.Second, "the jobs acked", func() bool { return stats.Acked.Load() == 3 })
	if e.paused(t) {
		t.Error("consumer still paused")
	}
}

// One job failing again and again, alone, is its own problem: it does not
// trip the breaker, and it is dead-lettered.
func TestLoopLoneFailingJobDoesNotTripTheBreaker(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 8)
	e.publish(t, 1)
	stats := &worker.Stats{}
	br := e.breaker(t, worker.BreakerConfig{Threshold: 3})
	e.run(t, worker.LoopConfig{MaxDeliver: 8, Stats: stats, Breaker: br,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return errors.New("HTTP 500 for this record") })})
	waitFor(t, 20*time.Second, "the job dead-lettered", func() bool { return stats.DeadLettered.Load() == 1 })
	if br.Stats().Trips.Load() != 0 {
		t.Errorf("a lone failing job tripped the breaker %d times", br.Stats().Trips.Load())
	}
}

// failingPublisher refuses every publish, as a JetStream that lost quorum.
type failingPublisher struct{ jetstream.JetStream }

func (failingPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return nil, errors.New("nats: no response from stream")
}

// A held job on its last delivery whose copy cannot be published is not
// terminated: it stays in the stream (the safety net takes it from there).
func TestLoopRequeueThatCannotPublishKeepsTheJob(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	e.publish(t, 1)
	stats := &worker.Stats{}
	var calls atomic.Int32
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, JS: failingPublisher{e.b.JS},
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			calls.Add(1)
			return &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
		})})
	waitFor(t, 10*time.Second, "the last delivery", func() bool { return calls.Load() == 2 })
	time.Sleep(300 * time.Millisecond) // the settlement after it
	if stats.Requeued.Load() != 0 || stats.DeadLettered.Load() != 0 {
		t.Errorf("requeued=%d dead=%d although nothing could be published", stats.Requeued.Load(), stats.DeadLettered.Load())
	}
	if got := e.streamMsgs(t, messages.StreamJobs); got != 1 {
		t.Errorf("%d jobs in the stream, want the original kept", got)
	}
}

// A held record job of a bulk job, requeued on its last delivery, lands
// past the bulk's LastSeq: the worker marks its copy's sequence for
// bcsync init, which would otherwise report the bulk done while the copy
// is still queued. A job that no bulk published leaves no mark.
func TestLoopRequeuedBulkJobIsMarkedForInit(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	for i, source := range []string{"initialize:init-1", "initialize:init-1", "webhook"} {
		if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: fmt.Sprintf("job-%d", i), Subscription: "contoso",
			Type: messages.TypeLocation, Op: messages.OpUpsert, Key: fmt.Sprintf("L%04d", i), Source: source}); err != nil {
			t.Fatal(err)
		}
	}
	progress := brokertest.KV(t, e.b, broker.BucketProgress)
	stop := e.run(t, worker.LoopConfig{MaxDeliver: 2, Progress: progress,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			return &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
		})})
	s, err := e.b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every original requeued", func() bool {
		info, err := s.Info(ctx)
		return err == nil && info.State.FirstSeq > 3
	})
	stop()
	// The newest copies are what is left in the stream.
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var newest uint64
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		job, err := messages.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if job.Source == "initialize:init-1" {
			newest = max(newest, seq)
		}
	}
	got, _, err := worker.RequeuedSeq(ctx, progress, "contoso", "init-1")
	if err != nil {
		t.Fatal(err)
	}
	if newest == 0 || got != newest {
		t.Errorf("requeued mark %d, want %d: the newest copy of the bulk's jobs", got, newest)
	}
	if keys := brokertest.Keys(t, progress, ">"); len(keys) != 1 {
		t.Errorf("progress keys %v, want the bulk's mark alone", keys)
	}
}

// brokenKV answers every call with an error, as a bucket that cannot be
// reached.
type brokenKV struct{ jetstream.KeyValue }

func (brokenKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, errors.New("nats: timeout")
}

// A requeued copy whose mark cannot be written is still the job's copy:
// the original is settled, nothing is lost (bcsync init may only report
// its bulk done early).
func TestLoopRequeueWithoutTheMarkStillSettles(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: "job-0", Subscription: "contoso",
		Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "L0000", Source: "initialize:init-1"}); err != nil {
		t.Fatal(err)
	}
	stats := &worker.Stats{}
	stop := e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, Progress: brokenKV{},
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			return &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
		})})
	waitFor(t, 20*time.Second, "the job requeued", func() bool { return stats.Requeued.Load() > 0 })
	stop()
	s, err := e.b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.State.FirstSeq < 2 {
		t.Errorf("%d jobs from sequence %d: want the copy alone", info.State.Msgs, info.State.FirstSeq)
	}
}
