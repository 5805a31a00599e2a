package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type loopEnv struct {
	b    *broker.Broker
	cons jetstream.Consumer
}

func newLoopEnv(t *testing.T, maxDeliver int) *loopEnv {
	t.Helper()
	b := brokertest.New(t)
	cons, err := broker.EnsureConsumer(context.Background(), b.JS, broker.ConsumerOptions{
		Subscription: "contoso", MaxDeliver: maxDeliver, AckWait: 5 * time.Second, MaxAckPending: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &loopEnv{b: b, cons: cons}
}

func (e *loopEnv) publish(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{
			ID: fmt.Sprintf("job-%d", i), Subscription: "contoso", Type: messages.TypeLocation,
			Op: messages.OpUpsert, Key: fmt.Sprintf("L%04d", i),
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *loopEnv) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := e.b.JS.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *loopEnv) run(t *testing.T, cfg worker.LoopConfig) (stop func()) {
	t.Helper()
	cfg.Subscription, cfg.Consumer = "contoso", e.cons
	if cfg.JS == nil {
		cfg.JS = e.b.JS
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 5
	}
	if cfg.Backoff == (worker.Backoff{}) {
		cfg.Backoff = worker.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = 200 * time.Millisecond
	}
	cfg.Log = zerolog.Nop()
	l, err := worker.NewLoop(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func TestLoopAcksEveryJobOnceWithBoundedConcurrency(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	const n, conc = 300, 4
	e.publish(t, n)
	var cur, peak atomic.Int32
	seen := sync.Map{}
	var calls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Concurrency: conc, Stats: stats, Handler: worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
		c := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		calls.Add(1)
		if _, dup := seen.LoadOrStore(j.Key, true); dup {
			t.Errorf("job %s handled twice", j.Key)
		}
		time.Sleep(time.Millisecond)
		return nil
	})})
	waitFor(t, 20*time.Second, "all jobs acked", func() bool { return stats.Acked.Load() == n })
	if got := e.streamMsgs(t, messages.StreamJobs); got != 0 {
		t.Errorf("jobs stream holds %d messages after all were acked", got)
	}
	if p := peak.Load(); p > conc {
		t.Errorf("peak concurrency %d > %d", p, conc)
	}
	if calls.Load() != n {
		t.Errorf("handler called %d times, want %d", calls.Load(), n)
	}
}

func TestLoopPullsNoMoreThanItCanRun(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	e.publish(t, 20)
	release := make(chan struct{})
	var started atomic.Int32
	e.run(t, worker.LoopConfig{Concurrency: 3, Handler: worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
		started.Add(1)
		<-release
		return nil
	})})
	waitFor(t, 5*time.Second, "3 jobs started", func() bool { return started.Load() == 3 })
	time.Sleep(300 * time.Millisecond) // give an over-eager loop time to pull more
	info, err := e.cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending > 3 {
		t.Errorf("%d jobs delivered while 3 slots are busy: the loop prefetched", info.NumAckPending)
	}
	close(release)
}

func TestLoopRetriesTransientFailure(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	e.publish(t, 1)
	var calls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Stats: stats, Handler: worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
		if calls.Add(1) <= 2 {
			return errors.New("connection reset by peer")
		}
		return nil
	})})
	waitFor(t, 10*time.Second, "job acked after retries", func() bool { return stats.Acked.Load() == 1 })
	if calls.Load() != 3 || stats.Retried.Load() != 2 || stats.DeadLettered.Load() != 0 {
		t.Errorf("calls=%d retried=%d dead=%d, want 3/2/0", calls.Load(), stats.Retried.Load(), stats.DeadLettered.Load())
	}
}

func readDLQ(t *testing.T, js jetstream.JetStream, want int) []*messages.DeadLetter {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	var out []*messages.DeadLetter
	for seq := uint64(1); len(out) < want; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter #%d: %v", seq, err)
		}
		dl, err := messages.DecodeDeadLetter(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}

func TestLoopDeadLettersMalformedJobsWithTheirBody(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	ctx := context.Background()
	bodies := map[string]string{
		"bcsync.jobs.contoso.location.A1": `not json`,
		"bcsync.jobs.contoso.location.A2": `{"v":9}`,
		"bcsync.jobs.contoso.location.A3": `{"v":1,"id":"x","subscription":"contoso","type":"location","op":"upsert","key":"OTHER"}`,
		"bcsync.jobs.contoso.vendor.A4":   `{"v":1,"id":"y","subscription":"contoso","type":"vendor","op":"upsert","key":"A4"}`,
	}
	for subj, body := range bodies {
		m := nats.NewMsg(subj)
		m.Data = []byte(body)
		m.Header.Set("X-Upstream", "test")
		if _, err := e.b.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{WorkerID: "w1", Stats: stats, Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
		calls.Add(1)
		return nil
	})})
	waitFor(t, 10*time.Second, "4 dead letters", func() bool { return stats.DeadLettered.Load() == 4 })
	if calls.Load() != 0 {
		t.Errorf("handler ran %d times for malformed jobs", calls.Load())
	}
	if got := e.streamMsgs(t, messages.StreamJobs); got != 0 {
		t.Errorf("jobs stream still holds %d messages", got)
	}
	reasons := map[string]bool{}
	for _, dl := range readDLQ(t, e.b.JS, 4) {
		if string(dl.Body) != bodies[dl.Subject] {
			t.Errorf("dead letter of %s has body %q, want the original %q", dl.Subject, dl.Body, bodies[dl.Subject])
		}
		if dl.Headers["X-Upstream"][0] != "test" || dl.ErrorClass != "permanent" || dl.WorkerID != "w1" || dl.Attempts != 1 || dl.StreamSeq == 0 {
			t.Errorf("dead letter %+v lacks headers, class, worker, attempts or seq", dl)
		}
		reasons[dl.Reason] = true
	}
	if len(reasons) != 4 {
		t.Errorf("want 4 distinct reasons, got %v", reasons)
	}
	for r := range reasons {
		if !strings.Contains(r, "JSON") && !strings.Contains(r, "version") && !strings.Contains(r, "subject") && !strings.Contains(r, "type") {
			t.Errorf("reason %q does not say what is wrong", r)
		}
	}
}

func TestLoopDeadLettersOnLastAttempt(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 1)
	stats := &worker.Stats{}
	var calls atomic.Int32
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Redactor: worker.NewRedactor("s3cr3t-value"),
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			calls.Add(1)
			return errors.New("upstream said s3cr3t-value is wrong")
		})})
	waitFor(t, 10*time.Second, "dead letter", func() bool { return stats.DeadLettered.Load() == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	if calls.Load() != 3 || dl.Attempts != 3 || dl.ErrorClass != "transient" || !strings.Contains(dl.Reason, "gave up after 3 attempts") {
		t.Errorf("calls=%d dead letter=%+v", calls.Load(), dl)
	}
	if strings.Contains(dl.Reason, "s3cr3t-value") {
		t.Errorf("secret in dead letter reason: %q", dl.Reason)
	}
	if dl.Key != "L0000" || dl.JobID != "job-0" || dl.Subscription != "contoso" {
		t.Errorf("dead letter does not name the job: %+v", dl)
	}
	var job messages.Job
	if err := json.Unmarshal(dl.Body, &job); err != nil || job.ID != "job-0" {
		t.Errorf("dead letter body is not the original job: %v %s", err, dl.Body)
	}
}

// failureKeys lists the first failure times the loop keeps.
func failureKeys(t *testing.T, kv jetstream.KeyValue) []string {
	t.Helper()
	return brokertest.Keys(t, kv, "fail.>")
}

// A dead letter says when the job first failed, not when it was queued (it
// waited here 1.5 s for a worker), and the time is forgotten once the job
// is settled.
func TestLoopDeadLetterNamesTheFirstFailure(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 1)
	queued := time.Now()
	time.Sleep(1500 * time.Millisecond)
	failures := brokertest.KV(t, e.b, broker.BucketRecords)
	stats := &worker.Stats{}
	var mu sync.Mutex
	var calls []time.Time
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Failures: failures,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			mu.Lock()
			calls = append(calls, time.Now())
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // the failures far enough apart to tell
			return errors.New("BC answered 503")
		})})
	waitFor(t, 10*time.Second, "dead letter", func() bool { return stats.DeadLettered.Load() == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Fatalf("%d attempts, want 3", len(calls))
	}
	// The first attempt failed after its 100 ms; the second began after it.
	if dl.FirstFailure.Before(calls[0]) || !dl.FirstFailure.Before(calls[1]) {
		t.Errorf("first failure %v: want the first attempt's (%v to %v); the job was queued at %v", dl.FirstFailure, calls[0], calls[1], queued)
	}
	if !dl.LastFailure.After(calls[2]) {
		t.Errorf("last failure %v before the last attempt %v", dl.LastFailure, calls[2])
	}
	waitFor(t, 5*time.Second, "the first failure forgotten", func() bool { return len(failureKeys(t, failures)) == 0 })
}

// downKV is a bucket NATS cannot reach: every call fails.
type downKV struct{ jetstream.KeyValue }

func (downKV) Create(context.Context, string, []byte, ...jetstream.KVCreateOpt) (uint64, error) {
	return 0, nats.ErrTimeout
}
func (downKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, nats.ErrTimeout
}
func (downKV) Purge(context.Context, string, ...jetstream.KVDeleteOpt) error { return nats.ErrTimeout }

// Keeping first failure times is best effort: with the bucket unreachable
// the job is dead-lettered all the same, naming its stored time.
func TestLoopDeadLettersWhenFirstFailuresCannotBeKept(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	e.publish(t, 1)
	s, err := e.b.JS.Stream(context.Background(), messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, Failures: downKV{},
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return errors.New("BC answered 503") })})
	waitFor(t, 10*time.Second, "dead letter", func() bool { return stats.DeadLettered.Load() == 1 })
	if dl := readDLQ(t, e.b.JS, 1)[0]; !dl.FirstFailure.Equal(stored.Time) {
		t.Errorf("first failure %v, want the job's stored time %v", dl.FirstFailure, stored.Time)
	}
}

// A job that fails, then succeeds, leaves no first failure behind.
func TestLoopForgetsTheFirstFailureOfAJobThatSucceeds(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	e.publish(t, 1)
	failures := brokertest.KV(t, e.b, broker.BucketRecords)
	stats := &worker.Stats{}
	var calls atomic.Int32
	recorded := make(chan int, 1)
	e.run(t, worker.LoopConfig{Stats: stats, Failures: failures,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			if calls.Add(1) == 1 {
				return errors.New("BC answered 503")
			}
			recorded <- len(failureKeys(t, failures))
			return nil
		})})
	waitFor(t, 10*time.Second, "the job acked", func() bool { return stats.Acked.Load() == 1 })
	if n := <-recorded; n != 1 {
		t.Errorf("%d first failures kept while the job was retried, want 1", n)
	}
	waitFor(t, 5*time.Second, "the first failure forgotten", func() bool { return len(failureKeys(t, failures)) == 0 })
}

func TestLoopStopReturnsInFlightJobsAndLosesNone(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 10)
	const n = 40
	e.publish(t, n)
	var done sync.Map
	var count atomic.Int32
	handler := func(delay time.Duration) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return ctx.Err()
			}
			if _, dup := done.LoadOrStore(j.Key, true); !dup {
				count.Add(1)
			}
			return nil
		})
	}
	// The first worker is slow and stops after a few jobs, with a grace
	// shorter than its jobs: they are cancelled and handed back.
	s1 := &worker.Stats{}
	stop1 := e.run(t, worker.LoopConfig{Concurrency: 4, Grace: 50 * time.Millisecond, Stats: s1, Handler: handler(time.Second)})
	waitFor(t, 5*time.Second, "first worker busy", func() bool {
		info, _ := e.cons.Info(context.Background())
		return info != nil && info.NumAckPending == 4
	})
	stop1()
	if s1.Returned.Load() == 0 {
		t.Errorf("stopped worker returned no job")
	}
	s2 := &worker.Stats{}
	e.run(t, worker.LoopConfig{Concurrency: 8, Stats: s2, Handler: handler(time.Millisecond)})
	waitFor(t, 20*time.Second, "every job done", func() bool { return count.Load() == n })
	waitFor(t, 5*time.Second, "stream empty", func() bool { return e.streamMsgs(t, messages.StreamJobs) == 0 })
}

func TestLoopKeepsJobWhenTheDeadLetterCannotBeStored(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	ctx := context.Background()
	if err := e.b.JS.DeleteStream(ctx, messages.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	if err := e.b.NC.Publish("bcsync.jobs.contoso.location.A1", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Stats: stats, Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
		calls.Add(1)
		return nil
	})})
	// The job is tried, cannot be dead-lettered, and stays in the stream.
	waitFor(t, 10*time.Second, "a second delivery", func() bool {
		info, err := e.cons.Info(ctx)
		return err == nil && info.NumRedelivered > 0
	})
	if stats.DeadLettered.Load() != 0 || stats.Acked.Load() != 0 {
		t.Errorf("dead=%d acked=%d with no dead-letter stream", stats.DeadLettered.Load(), stats.Acked.Load())
	}
	if got := e.streamMsgs(t, messages.StreamJobs); got != 1 {
		t.Fatalf("the job left the stream (%d left) although it was never dead-lettered", got)
	}
	// Once the stream is back, the job is dead-lettered and removed.
	if err := broker.EnsureStreams(ctx, e.b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "dead letter", func() bool { return stats.DeadLettered.Load() == 1 })
	waitFor(t, 5*time.Second, "stream empty", func() bool { return e.streamMsgs(t, messages.StreamJobs) == 0 })
}

// A job that runs longer than AckWait is not redelivered to another worker
// meanwhile: the loop extends its deadline.
func TestLoopLongJobIsNotRedelivered(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5) // AckWait 5s
	e.publish(t, 1)
	var calls atomic.Int32
	stats := &worker.Stats{}
	handler := worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
		calls.Add(1)
		time.Sleep(8 * time.Second)
		return nil
	})
	e.run(t, worker.LoopConfig{Stats: stats, Handler: handler})
	e.run(t, worker.LoopConfig{Stats: stats, Handler: handler}) // a second worker, ready to take it
	waitFor(t, 20*time.Second, "the long job acked", func() bool { return stats.Acked.Load() == 1 })
	if n := calls.Load(); n != 1 {
		t.Errorf("the job ran %d times, want once", n)
	}
}

// A job whose worker died on its last delivery (never settled) is moved to
// the dead-letter stream by the safety net, and out of the jobs stream.
func TestSafetyNetMovesUnsettledJobsToTheDLQ(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	cons, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{
		Subscription: "contoso", MaxDeliver: 2, AckWait: time.Second, MaxAckPending: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := messages.Publish(ctx, b.JS, messages.Job{ID: "dies-1", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "EAST"}); err != nil {
		t.Fatal(err)
	}
	// Two deliveries, neither settled: a worker that dies each time; the
	// server gives up on it when it would deliver it again.
	exhaustDeliveries(t, cons, 2)

	// The advisory was announced while no safety net ran: it was kept, and
	// the first worker to start handles it.
	stop, err := worker.SafetyNet(ctx, b.JS, worker.SafetyNetConfig{WorkerID: "net-1", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	env := &loopEnv{b: b, cons: cons}
	waitFor(t, 15*time.Second, "the job moved to the DLQ", func() bool {
		return env.streamMsgs(t, messages.StreamDLQ) == 1 && env.streamMsgs(t, messages.StreamJobs) == 0
	})
	dl := readDLQ(t, b.JS, 1)[0]
	if dl.ErrorClass != "max_deliveries" || dl.JobID != "dies-1" || dl.Attempts != 2 || dl.WorkerID != "net-1" {
		t.Errorf("dead letter %+v", dl)
	}
}

// TestLoopReleasesEveryRecordLockBeforeRunReturns: locks are released in
// the background once a job is settled; Run waits for those releases, so a
// worker that stopped leaves no lock for the next to wait out.
func TestLoopReleasesEveryRecordLockBeforeRunReturns(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	const n = 30
	e.publish(t, n)
	kv := brokertest.KV(t, e.b, broker.BucketRecords)
	stats := &worker.Stats{}
	stop := e.run(t, worker.LoopConfig{Concurrency: 8, Stats: stats, Locks: worker.NewRecordLocks(e.b.JS, kv, 10*time.Second),
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { time.Sleep(20 * time.Millisecond); return nil })})
	// Stopped with jobs in flight: they finish within the grace period, and
	// their locks are released as Run returns.
	waitFor(t, 20*time.Second, "some jobs acked", func() bool { return stats.Acked.Load() >= 10 })
	stop()
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for k := range keys.Keys() {
		if strings.HasPrefix(k, "lock.") {
			held = append(held, k)
		}
	}
	if len(held) > 0 {
		t.Errorf("%d record locks left after Run returned: %v", len(held), held)
	}
}

// A subscription's consumer deleted under a running loop (an operator, a
// stream made anew) is made again, and the jobs flow on: the loop once
// pulled in vain for ever, warning, while the worker reported ready. A
// consumer that cannot be made again at once (the stream's leader being
// elected, the account at its limit) is tried again at the next pulls, with
// the pull's backoff, until it is back; the loop neither stops nor spins.
func TestLoopMakesItsDeletedConsumerAgain(t *testing.T) {
	t.Parallel()
	for _, failFirst := range []int32{0, 2} {
		t.Run(fmt.Sprintf("failing %d times", failFirst), func(t *testing.T) {
			t.Parallel()
			e := newLoopEnv(t, 5)
			opts := broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 5, AckWait: 5 * time.Second, MaxAckPending: 1000}
			var tries atomic.Int32
			var first, last atomic.Int64 // unix nanos of the first and the last try
			stats := &worker.Stats{}
			e.run(t, worker.LoopConfig{Stats: stats,
				Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil }),
				Recreate: func(ctx context.Context) error {
					n := tries.Add(1)
					if n == 1 {
						first.Store(time.Now().UnixNano())
					}
					last.Store(time.Now().UnixNano())
					if n <= failFirst {
						return errors.New("insufficient resources")
					}
					_, err := broker.EnsureConsumer(ctx, e.b.JS, opts)
					return err
				}})
			e.publish(t, 1)
			waitFor(t, 10*time.Second, "the first job acked", func() bool { return stats.Acked.Load() == 1 })
			if err := e.b.JS.DeleteConsumer(context.Background(), messages.StreamJobs, broker.ConsumerName("contoso")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the consumer made again", func() bool { return tries.Load() > failFirst })
			// Each failed try is followed by the pull's backoff (100 ms, then
			// 200 ms, ±50%): not a spin.
			if gap := time.Duration(last.Load() - first.Load()); failFirst > 0 && gap < 100*time.Millisecond {
				t.Errorf("%d tries within %v: the loop spins on a consumer it cannot make", tries.Load(), gap)
			}
			if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{ID: "after", Subscription: "contoso",
				Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "AFTER"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "the job after the deletion acked", func() bool { return stats.Acked.Load() == 2 })
			if n := tries.Load(); n != failFirst+1 {
				t.Errorf("%d tries to make the consumer; it was made on try %d", n, failFirst+1)
			}
		})
	}
}

// A record lock that cannot be taken because its bucket fails (NATS
// trouble on this worker) is not the job's fault: the job is held, and
// requeued on its last delivery, never dead-lettered for it.
func TestLoopHoldsAJobWhoseLockCannotBeTaken(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	e.publish(t, 1)
	stats := &worker.Stats{}
	var ran atomic.Int32
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, Locks: worker.NewRecordLocks(e.b.JS, downKV{}, 10*time.Second),
		Failures: brokertest.KV(t, e.b, broker.BucketRecords),
		Handler:  worker.HandlerFunc(func(context.Context, *messages.Job) error { ran.Add(1); return nil })})
	waitFor(t, 20*time.Second, "the job requeued on its last delivery", func() bool { return stats.Requeued.Load() >= 1 })
	if n := stats.DeadLettered.Load(); n != 0 || ran.Load() != 0 || stats.Held.Load() == 0 {
		t.Errorf("%d dead-lettered, handler ran %d times, %d held: want the job held and requeued, never run nor dead-lettered", n, ran.Load(), stats.Held.Load())
	}
}
