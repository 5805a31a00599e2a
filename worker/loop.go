package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Handler syncs one decoded, validated job. Its error decides the job's fate
// (see Classify and Decide); nil means the iPaaS.com write succeeded.
type Handler interface {
	Handle(ctx context.Context, job *messages.Job) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *messages.Job) error

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, job *messages.Job) error { return f(ctx, job) }

// LoopConfig configures the consume loop of one subscription.
type LoopConfig struct {
	// Subscription is the subscription this loop serves (required).
	Subscription string
	// Consumer is the subscription's durable pull consumer (required).
	Consumer jetstream.Consumer
	// JS publishes dead letters (required).
	JS messages.Publisher
	// Handler syncs a job (required).
	Handler Handler
	// Concurrency is the number of jobs processed at once; no more jobs
	// than free slots are ever pulled. Default 8.
	Concurrency int
	// MaxDeliver must equal the consumer's MaxDeliver: the last delivery
	// that fails is dead-lettered. Required.
	MaxDeliver int
	// Backoff computes redelivery delays.
	Backoff Backoff
	// Grace is how long in-flight jobs may run after Run's context ended;
	// jobs still running then are cancelled and returned to the stream.
	// Default 25s.
	Grace time.Duration
	// PollWait is how long one pull waits for a job when the queue is
	// empty; Run notices its context at least this often. Default 2s.
	PollWait time.Duration
	// WorkerID names this worker in dead letters and logs.
	WorkerID string
	// Redactor cleans failure reasons before they are logged or kept.
	Redactor *Redactor
	// Log is the loop's logger.
	Log zerolog.Logger
	// Stats, when set, counts outcomes (shared by several loops).
	Stats *Stats
	// Breaker, when set, is fed every outcome; it pauses the consumer when
	// a dependency is down or refuses the credentials, and tells Decide
	// whether a transient failure is the job's fault.
	Breaker *Breaker
	// Metrics, when set, counts outcomes and durations by type.
	Metrics *Metrics
	// Observe, when set, is called with each settled job (nil for one too
	// broken to decode) and its outcome, e.g. to measure latencies.
	Observe func(job *messages.Job, outcome string)
	// Locks, when set, serializes the jobs of one record across the fleet:
	// a job waits for its record's lock (renewed with the heartbeat) before
	// its handler runs, and releases it once settled.
	Locks *RecordLocks
	// Failures, when set (the broker.BucketRecords bucket), keeps when each
	// failing job first failed, for its dead letter; without it a dead
	// letter names the job's stored time.
	Failures jetstream.KeyValue
	// Recreate, when set, makes the subscription's consumer again; the loop
	// calls it when its pulls show the consumer gone (an operator deleted
	// it, or the stream was made anew), so that it does not pull in vain
	// for ever.
	Recreate func(ctx context.Context) error
	// Progress, when set (the broker.BucketProgress bucket), is told the
	// sequence of each requeued copy of a bulk job's record job (see
	// RequeuedKey), so that `bcsync init` waits for the copy too.
	Progress jetstream.KeyValue
}

// Stats counts job outcomes. Safe for concurrent use.
type Stats struct {
	Acked        atomic.Int64
	Retried      atomic.Int64 // failed, counted toward dead-lettering
	Held         atomic.Int64 // failed while a dependency was down: not counted
	Requeued     atomic.Int64 // held on their last delivery: copied anew
	DeadLettered atomic.Int64
	Returned     atomic.Int64 // handed back on shutdown
}

// Loop pulls one subscription's jobs and processes them.
type Loop struct {
	cfg      LoopConfig
	sem      chan struct{}
	ackWait  time.Duration // the consumer's, for heartbeats
	handler  atomic.Pointer[Handler]
	redactor atomic.Pointer[Redactor]
	failures failureTimes
	unlocks  sync.WaitGroup // record locks being released
}

// NewLoop checks the configuration and applies defaults.
func NewLoop(cfg LoopConfig) (*Loop, error) {
	var errs []error
	if cfg.Subscription == "" {
		errs = append(errs, errors.New("Subscription is required"))
	}
	if cfg.Consumer == nil {
		errs = append(errs, errors.New("Consumer is required"))
	}
	if cfg.JS == nil {
		errs = append(errs, errors.New("JS is required"))
	}
	if cfg.Handler == nil {
		errs = append(errs, errors.New("Handler is required"))
	}
	if cfg.MaxDeliver < 2 {
		errs = append(errs, errors.New("MaxDeliver must be the consumer's MaxDeliver (at least 2)"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("worker: loop config: %w", errors.Join(errs...))
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 25 * time.Second
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 2 * time.Second
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	if cfg.Redactor == nil {
		cfg.Redactor = NewRedactor()
	}
	cfg.Log = cfg.Log.With().Str("subscription", cfg.Subscription).Logger()
	l := &Loop{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), failures: failureTimes{kv: cfg.Failures, log: cfg.Log}}
	l.SetHandler(cfg.Handler, cfg.Redactor)
	if info := cfg.Consumer.CachedInfo(); info != nil {
		l.ackWait = info.Config.AckWait
	}
	return l, nil
}

// SetHandler replaces the handler and the redactor for the jobs that start
// from now on: the clients rebuilt with corrected credentials.
func (l *Loop) SetHandler(h Handler, r *Redactor) {
	l.handler.Store(&h)
	if r != nil {
		l.redactor.Store(r)
	}
}

// Run pulls and processes jobs until ctx ends. Then it stops pulling, lets
// in-flight jobs finish for up to Grace, cancels and returns (Naks) the
// rest, and returns nil. It returns an error only if it could not run.
func (l *Loop) Run(ctx context.Context) error {
	// Jobs run under hard, which outlives ctx by the grace period.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	var wg sync.WaitGroup
	if l.cfg.Breaker != nil {
		wg.Add(1)
		go func() { defer wg.Done(); l.cfg.Breaker.Run(ctx) }()
	}

	// One goroutine per slot runs the jobs, so a job starts on a stack
	// already grown by the ones before it.
	jobs := make(chan jetstream.Msg, cap(l.sem))
	var runners sync.WaitGroup
	for range cap(l.sem) {
		runners.Go(func() {
			for msg := range jobs {
				l.process(hard, msg)
				<-l.sem
				wg.Done()
			}
		})
	}
	defer func() { close(jobs); runners.Wait() }()

	l.pull(ctx, jobs, &wg)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(l.cfg.Grace):
		l.cfg.Log.Warn().Dur("grace", l.cfg.Grace).Msg("grace period over: cancelling in-flight jobs; they return to the queue")
		cancelHard()
		<-done
	}
	l.unlocks.Wait()
	return nil
}

// pull fetches no more jobs than there are free slots and starts each one.
func (l *Loop) pull(ctx context.Context, jobs chan<- jetstream.Msg, wg *sync.WaitGroup) {
	failures := 0
	for {
		// Wait for one free slot, then take every other free one.
		select {
		case l.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < cap(l.sem) {
			select {
			case l.sem <- struct{}{}:
				n++
			default:
				break more
			}
		}
		// Take what is there at once; when nothing is, wait for one job
		// with a single slot so the others stay free.
		batch, err := l.cfg.Consumer.FetchNoWait(n)
		got := 0
		if err == nil {
			got = l.dispatch(jobs, wg, batch)
			err = quiet(batch.Error())
		}
		if err == nil && got == 0 {
			l.release(n - 1)
			n = 1
			batch, err = l.cfg.Consumer.Fetch(1, jetstream.FetchMaxWait(l.cfg.PollWait))
			if err == nil {
				got = l.dispatch(jobs, wg, batch)
				err = quiet(batch.Error())
			}
		}
		l.release(n - got)
		if err != nil {
			failures++
			delay := Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Delay(failures, 0)
			l.cfg.Log.Warn().Err(err).Dur("retry_in", delay).Msg("pulling jobs failed")
			if consumerGone(err) && l.cfg.Recreate != nil {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if rerr := l.cfg.Recreate(rctx); rerr != nil {
					l.cfg.Log.Error().Err(rerr).Msg("the subscription's consumer is gone and could not be made again")
				} else {
					l.cfg.Log.Warn().Msg("the subscription's consumer was gone: made it again")
				}
				cancel()
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			continue
		}
		failures = 0
	}
}

// consumerGone reports whether a pull's error says the consumer does not
// exist: deleted while pulled, or no server answers its pulls. (A
// JetStream electing a leader answers nobody for a moment too; making the
// consumer again is then a no-op update.)
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, nats.ErrNoResponders)
}

// quiet drops the errors that only mean "no job right now".
func quiet(err error) error {
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
		return nil
	}
	return err
}

func (l *Loop) release(n int) {
	for range n {
		<-l.sem
	}
}

// dispatch hands each message to a job runner, each message owning one
// slot.
func (l *Loop) dispatch(jobs chan<- jetstream.Msg, wg *sync.WaitGroup, batch jetstream.MessageBatch) int {
	got := 0
	// Jobs that arrive while stopping are processed all the same, within
	// the grace period: a Nak now would make the server redeliver the job at
	// once, possibly into a pull request nobody listens to any more, where
	// it would wait for AckWait.
	for msg := range batch.Messages() {
		got++
		wg.Add(1)
		jobs <- msg // never blocks for long: a runner is free per slot
	}
	return got
}

// process runs one job and settles it.
func (l *Loop) process(ctx context.Context, msg jetstream.Msg) {
	log := l.cfg.Log.With().Str("nats_subject", msg.Subject()).Logger()
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to settle.
		log.Error().Err(err).Msg("message without JetStream metadata")
		return
	}
	attempt := int(md.NumDelivered)
	log = log.With().Int("attempt", attempt).Uint64("stream_seq", md.Sequence.Stream).Logger()
	delivered := time.Now()
	l.forgetReplayedLetter(ctx, msg, log)

	job, err := messages.Decode(msg.Data())
	if err == nil {
		err = job.CheckSubject(msg.Subject())
	}
	if err != nil {
		l.settle(ctx, msg, md, nil, Permanent(err), delivered, log)
		return
	}
	log = log.With().Str("job_id", job.ID).Str("type", string(job.Type)).Str("op", string(job.Op)).Str("key", job.Key).Logger()
	start := time.Now()
	var locks *jobLocks
	if l.cfg.Locks != nil {
		locks = &jobLocks{locks: l.cfg.Locks, subscription: l.cfg.Subscription, owner: l.cfg.WorkerID + "/" + job.ID}
		ctx = withJobLocks(ctx, locks)
	}
	// The job stops, as Renew asks, once its record lock may be another's.
	jobCtx, stopJob := context.WithCancelCause(ctx)
	defer stopJob(nil)
	stopBeat := l.heartbeat(msg, locks, stopJob, log)
	if locks != nil {
		err = locks.lock(jobCtx, job.Type, job.Key)
		// Released once the job is settled, off the job's slot: the next
		// job need not wait for the round trips.
		defer l.unlocks.Go(func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for _, lock := range locks.all() {
				if uerr := lock.Unlock(uctx); uerr != nil {
					log.Warn().Err(uerr).Msg("could not release the record lock; it expires by itself")
				}
			}
		})
	}
	if err == nil {
		err = l.handle(log.WithContext(jobCtx), job, log)
	}
	stopBeat()
	if cause := context.Cause(jobCtx); err != nil && ctx.Err() == nil && errors.Is(cause, ErrLockLost) {
		err = fmt.Errorf("worker: job stopped: %w", cause)
	}
	if err != nil && ctx.Err() != nil {
		// Cancelled at the end of the grace period: not the job's fault.
		l.cfg.Stats.Returned.Add(1)
		l.cfg.Metrics.job(l.cfg.Subscription, job.Type, "returned", 0)
		if attempt < l.cfg.MaxDeliver {
			// Counted as held: returned, it was not the job's fault.
			l.failures.held(ctx, md.Sequence.Stream, md.Timestamp)
			_ = msg.Nak()
			log.Info().Msg("job returned to the queue on shutdown")
			return
		}
		// JetStream would not deliver it again, and the safety net would
		// dead-letter it: hand it on as a copy instead.
		seq, qerr := l.requeueLast(ctx, msg, md, job, l.ownFailures(ctx, msg, md)-1, log)
		if qerr != nil {
			_ = msg.Nak()
			log.Error().Err(qerr).Msg("could not requeue a job returned on shutdown on its last delivery; the safety net dead-letters it")
			return
		}
		log.Info().Uint64("copy_seq", seq).Msg("job returned to the queue on shutdown, as a copy: it was on its last delivery")
		return
	}
	if err == nil {
		log.Debug().Dur("took", time.Since(start)).Msg("job done")
	}
	l.settle(ctx, msg, md, job, err, delivered, log)
}

// ownFailures is how many deliveries of the job failed by its own fault,
// this one included: those of the jobs it replaces (a requeued copy's
// HeaderFailures), and this message's deliveries less those held or
// returned on shutdown.
func (l *Loop) ownFailures(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) int {
	prior, _ := strconv.Atoi(msg.Headers().Get(HeaderFailures))
	held := 0
	if md.NumDelivered > 1 {
		held = l.failures.heldCount(ctx, md.Sequence.Stream, md.Timestamp)
	}
	return max(prior, 0) + max(int(md.NumDelivered)-held, 1)
}

// handle runs the handler on job. A panic (a bcsync bug, or a BC answer it
// did not expect) fails the job for good, with the stack in the log,
// instead of taking down every subscription of the worker and then, job
// redelivered, the next worker.
func (l *Loop) handle(ctx context.Context, job *messages.Job, log zerolog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error().Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("the job's handler panicked (a bcsync bug): dead-lettered")
			err = Permanent(fmt.Errorf("worker: the job's handler panicked (a bcsync bug): %v", r))
		}
	}()
	return (*l.handler.Load()).Handle(ctx, job)
}

// forgetReplayedLetter deletes the dead letter a replayed job came from, if
// it is still there: a replay killed between its publish and its delete
// leaves the letter in both streams, and the job, now in the job stream,
// is the one that counts.
func (l *Loop) forgetReplayedLetter(ctx context.Context, msg jetstream.Msg, log zerolog.Logger) {
	v := msg.Headers().Get(dlq.HeaderReplayOf)
	js, ok := l.cfg.JS.(jetstream.JetStream)
	if v == "" || !ok {
		return
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	letter, err := dlq.Get(dctx, js, seq)
	var undecodable *dlq.UndecodableError
	switch {
	case errors.Is(err, dlq.ErrNotFound), errors.As(err, &undecodable):
		return
	case err != nil:
		log.Warn().Err(err).Uint64("dlq_seq", seq).Msg("could not read the dead letter this replayed job came from")
		return
	case letter.DL.Subject != msg.Subject() || !bytes.Equal(letter.DL.Body, msg.Data()):
		// Another job's letter (the DLQ stream made anew since the
		// replay): not this job's to delete.
		return
	}
	if err := dlq.Purge(dctx, js, letter); err != nil {
		log.Warn().Err(err).Uint64("dlq_seq", seq).Msg("could not delete the dead letter this replayed job came from")
	}
}

// heartbeat tells JetStream, every third of AckWait, that the job is still
// being worked on (a long wait for the request budget or the record's
// lock, BC retries), so that it is not redelivered to another worker
// meanwhile, and renews the record locks the job holds (none when locks is
// nil). When a lock is lost, or was not renewed for half its TTL (it
// expires at the TTL, and the job needs time to stop), it calls lost: the
// job must stop before another takes the record. The returned function
// stops it.
func (l *Loop) heartbeat(msg jetstream.Msg, locks *jobLocks, lost func(error), log zerolog.Logger) (stop func()) {
	every := l.ackWait / 3
	if l.cfg.Locks != nil && (every <= 0 || l.cfg.Locks.TTL()/3 < every) {
		every = l.cfg.Locks.TTL() / 3
	}
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		renewed := time.Now() // no later than any lock was taken
		for {
			select {
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					log.Warn().Err(err).Msg("could not extend the job's ack deadline")
				}
				if locks == nil {
					continue
				}
				// Every lock at once, and done two thirds of the TTL after
				// the last renewal at the latest, so that the check below
				// comes a third of the TTL before any lock may expire,
				// however many the job holds.
				start := time.Now()
				deadline := start.Add(every)
				if limit := renewed.Add(2 * l.cfg.Locks.TTL() / 3); limit.Before(deadline) {
					deadline = limit
				}
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				held := locks.all()
				errs := make([]error, len(held))
				var wg sync.WaitGroup
				for i, lk := range held {
					wg.Go(func() { errs[i] = lk.Renew(ctx) })
				}
				wg.Wait()
				cancel()
				failed := false
				for _, err := range errs {
					switch {
					case errors.Is(err, ErrLockLost):
						log.Error().Err(err).Msg("record lock lost: stopping the job; it is retried")
						lost(err)
						return
					case err != nil:
						failed = true
						log.Warn().Err(err).Msg("could not renew the record lock")
					}
				}
				if !failed {
					renewed = start
				} else if since := time.Since(renewed); since >= l.cfg.Locks.TTL()/2 {
					err := fmt.Errorf("%w: not renewed for %s of its %s TTL", ErrLockLost, since.Round(time.Millisecond), l.cfg.Locks.TTL())
					log.Error().Err(err).Msg("record lock may expire: stopping the job; it is retried")
					lost(err)
					return
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// settle acknowledges, retries, holds, requeues or dead-letters a job
// according to err (see Decide).
func (l *Loop) settle(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, job *messages.Job, err error, delivered time.Time, log zerolog.Logger) {
	typ := messages.Type("unknown")
	if job != nil {
		typ = job.Type
	} else if p, perr := messages.ParseSubject(msg.Subject()); perr == nil && p.Type.Valid() {
		typ = p.Type
	}
	count := func(outcome string) {
		l.cfg.Metrics.job(l.cfg.Subscription, typ, outcome, time.Since(delivered))
		if l.cfg.Observe != nil {
			l.cfg.Observe(job, outcome)
		}
	}
	attempt := int(md.NumDelivered)
	class := Classify(err)
	own := 0 // the job's own failures, this delivery included
	if class != "" {
		own = l.ownFailures(ctx, msg, md)
	}
	redactor := l.redactor.Load()
	reason := ""
	if err != nil {
		reason = redactor.Redact(explain(err))
	}
	down := false
	switch {
	case errors.Is(err, ErrLockLost), errors.Is(err, ErrLockStore):
		// Stopped by its heartbeat, or the lock could not be taken: this
		// worker could not keep or reach the record's lock (its NATS
		// trouble), which is not the job's fault. Held, never counted
		// toward dead-lettering; requeued on the last delivery.
		down = true
	case l.cfg.Breaker != nil:
		down = l.cfg.Breaker.Record(ctx, class, msg.Subject(), reason)
	}
	action := Decide(class, own, attempt, l.cfg.MaxDeliver, down)
	if counted := class == ClassTransient && !down; !counted {
		own-- // this delivery was not the job's fault
	}
	switch action {
	case ActionAck:
		// DoubleAck waits for the server's confirmation; if it is lost, the
		// job comes back after AckWait and the idempotent write repeats.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if aerr := msg.DoubleAck(actx); aerr != nil {
			log.Warn().Err(aerr).Msg("ack not confirmed; the job will be redelivered and rewritten idempotently")
			return
		}
		l.cfg.Stats.Acked.Add(1)
		count("acked")
		if attempt > 1 {
			l.failures.settled(ctx, md.Sequence.Stream)
		}
	case ActionRetry, ActionHold:
		switch {
		case action == ActionHold:
			// Counted, so that this delivery, which JetStream counts,
			// does not count toward dead-lettering.
			l.failures.held(ctx, md.Sequence.Stream, md.Timestamp)
		case msg.Headers().Get(HeaderFirstFailure) == "":
			// A create: kept only if no failure of the job was recorded.
			l.failures.failed(ctx, md.Sequence.Stream, md.Timestamp, time.Now())
		}
		ra, _ := RetryAfter(err)
		delay := l.cfg.Backoff.Delay(attempt, ra)
		if action == ActionRetry {
			log.Warn().Str("error_class", string(class)).Str("error", reason).
				Dur("retry_in", delay).Msg("job failed; will retry")
			l.cfg.Stats.Retried.Add(1)
			count("retried")
		} else {
			// Not the job's fault: the breaker logs the outage once, so
			// each held job is only a debug line.
			log.Debug().Str("error_class", string(class)).Str("error", reason).
				Dur("retry_in", delay).Msg("job held: a dependency is down or throttling")
			l.cfg.Stats.Held.Add(1)
			count("held")
		}
		l.nak(msg, delay, log)
	case ActionRequeue:
		seq, qerr := l.requeueLast(ctx, msg, md, job, own, log)
		if qerr != nil {
			// Not copied: the delivery stays unsettled. If it was the last,
			// the safety net moves it to the dead-letter stream.
			log.Error().Err(qerr).Msg("could not requeue a job on its last delivery")
			l.nak(msg, l.cfg.Backoff.Delay(1, 0), log)
			return
		}
		log.Info().Str("error_class", string(class)).Int("failures", own).Uint64("copy_seq", seq).
			Msg("job requeued on its last delivery: some of its deliveries were held, not its fault")
		l.cfg.Stats.Requeued.Add(1)
		count("requeued")
	case ActionDeadLetter:
		if class != ClassPermanent && class != ClassNotFound {
			reason = fmt.Sprintf("gave up after %d attempts: %s", own, reason)
		}
		if derr := l.deadLetter(ctx, msg, md, job, class, reason); derr != nil {
			// Not copied: keep the job. It comes back and is tried again.
			log.Error().Err(derr).Msg("could not copy the job to the dead-letter stream; it stays queued")
			l.nak(msg, l.cfg.Backoff.Delay(1, 0), log)
			return
		}
		log.Error().Str("error_class", string(class)).Str("reason", reason).Msg("job dead-lettered")
		if terr := msg.TermWithReason(string(class)); terr != nil {
			// The copy exists (deduplicated by its id if made again).
			log.Warn().Err(terr).Msg("term after dead-lettering failed; a duplicate dead letter is deduplicated")
		}
		l.failures.settled(ctx, md.Sequence.Stream)
		l.cfg.Stats.DeadLettered.Add(1)
		count("dead_lettered")
	}
}

func (l *Loop) nak(msg jetstream.Msg, delay time.Duration, log zerolog.Logger) {
	if err := msg.NakWithDelay(delay); err != nil {
		log.Warn().Err(err).Msg("nak failed; the job will be redelivered after AckWait")
	}
}

// requeueLast hands on a job on its last delivery that is not its fault
// (held, or returned on shutdown): it publishes a copy, raises the bulk's
// requeued mark, then terminates the delivery. On an error nothing was
// copied and the delivery is left unsettled.
func (l *Loop) requeueLast(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, job *messages.Job, own int, log zerolog.Logger) (uint64, error) {
	seq, err := l.requeue(ctx, msg, md, own)
	if err != nil {
		return 0, err
	}
	// Before the original is settled, so that bcsync init following the
	// bulk always sees one of the two.
	l.noteRequeued(ctx, job, seq, log)
	if terr := msg.TermWithReason("requeued"); terr != nil {
		log.Warn().Err(terr).Msg("term after requeueing failed; the job may run twice (idempotently)")
	}
	l.failures.settled(ctx, md.Sequence.Stream) // the copy carries it
	return seq, nil
}

// requeue publishes a copy of a held job, as the job stream's newest
// message, with a fresh delivery count, and returns once JetStream stored
// it. Its Nats-Msg-Id names the job it replaces (its sequence and a digest
// of its content), so that a requeue repeated after a crash is stored once.
func (l *Loop) requeue(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, own int) (uint64, error) {
	out := nats.NewMsg(msg.Subject())
	out.Data = msg.Data()
	prior := 0
	for k, vs := range msg.Headers() {
		switch {
		case strings.EqualFold(k, messages.HeaderMsgID), strings.HasPrefix(strings.ToLower(k), "nats-expected-"), strings.EqualFold(k, HeaderFirstFailure),
			strings.EqualFold(k, HeaderFailures):
			continue
		case strings.EqualFold(k, HeaderDeliveries):
			prior, _ = strconv.Atoi(msg.Headers().Get(k))
			continue
		}
		for _, v := range vs {
			out.Header.Add(k, v)
		}
	}
	// The digest keeps apart two jobs at one sequence of a job stream made
	// anew, whose copies would otherwise be taken for one.
	out.Header.Set(messages.HeaderMsgID, fmt.Sprintf("bcsync-requeue-%d-%s", md.Sequence.Stream, messages.ContentDigest(msg.Subject(), msg.Data())))
	out.Header.Set(HeaderDeliveries, strconv.Itoa(prior+int(md.NumDelivered)))
	if own > 0 {
		out.Header.Set(HeaderFailures, strconv.Itoa(own))
	}
	out.Header.Set(HeaderFirstFailure, firstFailure(ctx, l.failures, msg.Headers(), md.Sequence.Stream, md.NumDelivered, md.Timestamp).Format(time.RFC3339Nano))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ack, err := l.cfg.JS.PublishMsg(pctx, out, jetstream.WithExpectStream(messages.StreamJobs))
	if err != nil {
		return 0, fmt.Errorf("worker: requeue: %w", err)
	}
	return ack.Sequence, nil
}

// noteRequeued tells the progress bucket that the job, if a bulk job
// published it, has a requeued copy at seq. Best effort: without it, bcsync
// init may report the bulk done while the copy is still queued.
func (l *Loop) noteRequeued(ctx context.Context, job *messages.Job, seq uint64, log zerolog.Logger) {
	bulk := bulkOf(job)
	if l.cfg.Progress == nil || bulk == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := noteRequeued(ctx, l.cfg.Progress, l.cfg.Subscription, bulk, seq); err != nil {
		log.Warn().Err(err).Str("bulk_job", bulk).Msg("could not record the requeued copy for bcsync init, which may report its initialization done before this job")
	}
}

// HeaderDeliveries is messages.HeaderDeliveries.
const HeaderDeliveries = messages.HeaderDeliveries

// explain is the error text plus, when known, what the operator must do.
func explain(err error) string {
	var te *bcclient.TokenError
	if errors.As(err, &te) {
		if fix := te.Fix(); fix != "" {
			return err.Error() + " — fix: " + fix
		}
	}
	return err.Error()
}

// deadLetter copies the job, byte for byte, to BCSYNC_DLQ with its reason,
// and returns only once JetStream stored it.
func (l *Loop) deadLetter(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, job *messages.Job, class Class, reason string) error {
	dl := newDeadLetter(msg.Subject(), msg.Headers(), msg.Data(), md.Stream, md.Sequence.Stream, job, l.cfg.Subscription)
	prior, _ := strconv.Atoi(msg.Headers().Get(HeaderDeliveries))
	dl.ErrorClass, dl.Reason, dl.Attempts, dl.WorkerID = string(class), reason, prior+int(md.NumDelivered), l.cfg.WorkerID
	dl.FirstFailure = firstFailure(ctx, l.failures, msg.Headers(), md.Sequence.Stream, md.NumDelivered, md.Timestamp)
	return storeDeadLetter(ctx, l.cfg.JS, dl)
}

// firstFailure is when the job at seq first failed: as a requeued copy's
// header says; else as recorded; else now, when this is its first
// delivery (deliveries <= 1), so its first failure; else, the time lost,
// the job's stored time.
func firstFailure(ctx context.Context, f failureTimes, h nats.Header, seq, deliveries uint64, stored time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderFirstFailure)); err == nil {
		return t.UTC()
	}
	if t, ok := f.first(ctx, seq, stored); ok {
		return t.UTC()
	}
	if deliveries <= 1 {
		return time.Now().UTC()
	}
	return stored.UTC()
}

// newDeadLetter records the original message, naming the job from its body
// (job) or, for a job too broken to decode, from its subject.
func newDeadLetter(subject string, h nats.Header, body []byte, stream string, seq uint64, job *messages.Job, subscription string) *messages.DeadLetter {
	now := time.Now().UTC()
	dl := &messages.DeadLetter{
		Subject: subject, Body: body, Stream: stream, StreamSeq: seq,
		FirstFailure: now, LastFailure: now,
	}
	dl.SetHeaders(h)
	if job != nil {
		dl.Subscription, dl.Type, dl.Key, dl.JobID = job.Subscription, job.Type, job.Key, job.ID
	} else if p, err := messages.ParseSubject(subject); err == nil {
		dl.Subscription, dl.Type, dl.Key = p.Subscription, p.Type, p.Key
	}
	if dl.Subscription == "" {
		dl.Subscription = subscription
	}
	return dl
}

// storeDeadLetter publishes dl to BCSYNC_DLQ and returns once JetStream
// stored it. Its Nats-Msg-Id names the job (dl.MsgID), so a letter stored
// twice (by the loop and by the safety net) is kept once.
func storeDeadLetter(ctx context.Context, js messages.Publisher, dl *messages.DeadLetter) error {
	body, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("worker: encode dead letter: %w", err)
	}
	out := nats.NewMsg(messages.DLQSubject(dl.Subscription, dl.Type))
	out.Data = body
	out.Header.Set(messages.HeaderMsgID, dl.MsgID())
	out.Header.Set(messages.HeaderDLQClass, dl.ErrorClass)
	out.Header.Set(messages.HeaderDLQSubject, dl.Subject)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, out, jetstream.WithExpectStream(messages.StreamDLQ)); err != nil {
		return fmt.Errorf("worker: publish dead letter: %w", err)
	}
	return nil
}
