package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// exhaustDeliveries delivers the job at the head of the consumer maxDeliver
// times without settling it: a worker that died on each delivery. The
// server then announces the max-deliveries advisory.
func exhaustDeliveries(t *testing.T, cons jetstream.Consumer, maxDeliver int) {
	t.Helper()
	for i := range maxDeliver {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range batch.Messages() {
			n++
		}
		if n != 1 {
			t.Fatalf("delivery %d: got %d messages", i+1, n)
		}
	}
	if batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second)); err == nil {
		for m := range batch.Messages() {
			t.Fatalf("delivered beyond MaxDeliver: %s", m.Subject())
		}
	}
}

// diesOnEveryDelivery publishes job and delivers it MaxDeliver (2) times
// without settling it, through the subscription's consumer: a worker that
// died on each delivery. The server then announces its advisory.
func (e *loopEnv) diesOnEveryDelivery(t *testing.T, job messages.Job) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := messages.Publish(ctx, e.b.JS, job); err != nil {
		t.Fatal(err)
	}
	cons, err := broker.EnsureConsumer(ctx, e.b.JS, broker.ConsumerOptions{
		Subscription: "contoso", MaxDeliver: 2, AckWait: time.Second, MaxAckPending: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	exhaustDeliveries(t, cons, 2)
}

// A job the safety net moves to BCSYNC_DLQ is a dead-lettered job: the
// README lists dead_lettered among bcsync_jobs_total's outcomes, and the
// worker's "worker stopped" line reports dead_lettered from Stats. Neither
// counted the safety net's letters before.
func TestSafetyNetDeadLetterIsCounted(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 1}, maxDeliver: 2})
	ctx := context.Background()
	cons, err := broker.EnsureConsumer(ctx, e.b.JS, broker.ConsumerOptions{
		Subscription: "contoso", MaxDeliver: 2, AckWait: time.Second, MaxAckPending: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: "dies-1", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: e.bc.LocationCodes()[0]}); err != nil {
		t.Fatal(err)
	}
	exhaustDeliveries(t, cons, 2)

	reg := prometheus.NewRegistry()
	e.tune = func(o *worker.Options) { o.Metrics = worker.NewMetrics(reg) }
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "the job moved to the DLQ", func() bool {
		return e.streamMsgs(messages.StreamDLQ) == 1 && e.streamMsgs(messages.StreamJobs) == 0
	})
	time.Sleep(200 * time.Millisecond)
	var dead float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bcsync_jobs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "dead_lettered" {
					dead += m.GetCounter().GetValue()
				}
			}
		}
	}
	if dead != 1 {
		t.Errorf("bcsync_jobs_total{outcome=\"dead_lettered\"} = %v after the worker's safety net dead-lettered 1 job", dead)
	}
	if n := e.stats.DeadLettered.Load(); n != 1 {
		t.Errorf("Stats.DeadLettered = %d after the worker's safety net dead-lettered 1 job", n)
	}
}

// A requeued copy carries its earlier deliveries in Bcsync-Deliveries; the
// loop's dead letter adds them (prior + NumDelivered). The safety net's
// letter for the same copy once reported only the copy's own deliveries.
func TestSafetyNetAttemptsCountRequeuedDeliveries(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	job := messages.Job{ID: "copy-1", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "EAST"}
	msg, _, err := messages.NewMsg(job)
	if err != nil {
		t.Fatal(err)
	}
	// A copy requeued once already, after 2 deliveries of the original.
	msg.Header.Set(worker.HeaderDeliveries, "2")
	if _, err := e.b.JS.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	cons, err := broker.EnsureConsumer(ctx, e.b.JS, broker.ConsumerOptions{
		Subscription: "contoso", MaxDeliver: 2, AckWait: time.Second, MaxAckPending: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	exhaustDeliveries(t, cons, 2)
	stop, err := worker.SafetyNet(ctx, e.b.JS, worker.SafetyNetConfig{WorkerID: "net-1", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	waitFor(t, 15*time.Second, "the job moved to the DLQ", func() bool { return e.streamMsgs(t, messages.StreamDLQ) == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	if dl.Attempts != 4 {
		t.Errorf("dead letter attempts = %d, want 4 (2 deliveries of the original + 2 of the copy, as the loop counts them)", dl.Attempts)
	}
}

// README: "every line about a job carries job_id, subscription, type, op,
// key, attempt and the stream sequence". The safety net's line about the job
// it moved to the DLQ once carried only the stream sequence.
func TestSafetyNetLogLineNamesTheJob(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	e.diesOnEveryDelivery(t, messages.Job{ID: "dies-2", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "WEST"})
	var buf syncBuffer
	stop, err := worker.SafetyNet(ctx, e.b.JS, worker.SafetyNetConfig{WorkerID: "net-1", Log: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	waitFor(t, 15*time.Second, "the safety net's log line", func() bool { return strings.Contains(buf.String(), "dead-letter stream") })
	for line := range strings.Lines(buf.String()) {
		if !strings.Contains(line, "dead-letter stream") {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, f := range []string{"job_id", "subscription", "type", "op", "key", "attempt", "stream_seq"} {
			if _, ok := fields[f]; !ok {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			t.Errorf("log line about job dies-2 lacks %v: %s", missing, strings.TrimSpace(line))
		}
	}
}

// Its consumer deleted (an operator, a stream made anew), the safety net
// makes it again: it once stopped for good, silently, and jobs that reached
// MaxDeliver then stayed in the job stream with no one to move them.
func TestSafetyNetSurvivesItsConsumerBeingDeleted(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	var buf syncBuffer
	stop, err := worker.SafetyNet(ctx, e.b.JS, worker.SafetyNetConfig{WorkerID: "net-1", Log: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := e.b.JS.DeleteConsumer(ctx, broker.StreamAdvisories, "bcsync-safety-net"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the consumer made again", func() bool {
		_, err := e.b.JS.Consumer(ctx, broker.StreamAdvisories, "bcsync-safety-net")
		return err == nil
	})
	e.diesOnEveryDelivery(t, messages.Job{ID: "dies-3", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "NORTH"})
	waitFor(t, 15*time.Second, "the job moved to the DLQ", func() bool { return e.streamMsgs(t, messages.StreamDLQ) == 1 })
	if !strings.Contains(buf.String(), "making it again") {
		t.Errorf("no log line says the consumer was made again:\n%s", buf.String())
	}
}

// firstLookupJS is a JetStream whose first Consumer lookup runs hook first: the
// moment another worker of the fleet makes the safety net's consumer again
// before this one looked.
type firstLookupJS struct {
	jetstream.JetStream
	once sync.Once
	hook func()
}

func (j *firstLookupJS) Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	if stream == broker.StreamAdvisories && name == "bcsync-safety-net" {
		j.once.Do(j.hook)
	}
	return j.JetStream.Consumer(ctx, stream, name)
}

// Two workers' safety nets; an operator deletes the durable consumer. Both
// nets' Consume stop (nats.go stops a consume on 409 Consumer Deleted). The
// first makes the consumer again; the second, finding it there, once went on
// with its stopped consumption and never consumed again, so once the first
// worker exited (scaled down), jobs that reached MaxDeliver stayed in the
// job stream. It consumes again now whenever its consumption ends.
func TestSafetyNetOfEveryWorkerConsumesAgainAfterADeletion(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	var stopA func()
	created := make(chan struct{})
	js := &firstLookupJS{JetStream: e.b.JS, hook: func() {
		// Worker A's net makes the consumer again first.
		var err error
		stopA, err = worker.SafetyNet(ctx, e.b.JS, worker.SafetyNetConfig{WorkerID: "net-a", Log: zerolog.Nop()})
		if err != nil {
			t.Error(err)
		}
		close(created)
	}}
	var buf syncBuffer
	stopB, err := worker.SafetyNet(ctx, js, worker.SafetyNetConfig{WorkerID: "net-b", Log: zerolog.New(&buf).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()
	time.Sleep(time.Second) // B's pull request reaches the server
	if err := e.b.JS.DeleteConsumer(ctx, broker.StreamAdvisories, "bcsync-safety-net"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-created:
	case <-time.After(30 * time.Second):
		t.Fatal("worker B's safety net never looked for its consumer after it was deleted")
	}
	time.Sleep(500 * time.Millisecond)
	stopA() // worker A scaled down; worker B keeps running
	e.diesOnEveryDelivery(t, messages.Job{ID: "dies-r1", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "SOUTH"})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if e.streamMsgs(t, messages.StreamDLQ) == 1 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("worker B's safety net never moved the job that reached MaxDeliver: its consumer exists, but B's Consume was stopped and never restarted; log:\n%s", strings.TrimSpace(buf.String()))
}
