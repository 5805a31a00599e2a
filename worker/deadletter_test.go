package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/bcsync/bcsync/worker/dlq"
	"github.com/nats-io/nats.go"
)

// A letter of a job of an unknown type shows that type, and a filter on the
// type it shows finds it: the letter is stored under
// bcsync.dlq.<sub>._unknown, where the filter once never looked.
func TestDLQTypeFilterFindsTheTypeItShows(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	m := nats.NewMsg("bcsync.jobs.contoso.vendor.V01")
	m.Data = []byte(`{"v":1,"id":"j1","subscription":"contoso","type":"vendor","op":"upsert","key":"V01"}`)
	if _, err := e.b.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Stats: stats, Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil })})
	waitFor(t, 10*time.Second, "dead-lettered", func() bool { return stats.DeadLettered.Load() == 1 })
	var shown messages.Type
	if err := dlq.List(context.Background(), e.b.JS, dlq.Filter{}, func(l dlq.Letter) error { shown = l.DL.Type; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []messages.Type{shown, "_unknown"} {
		n := 0
		if err := dlq.List(context.Background(), e.b.JS, dlq.Filter{Subscription: "contoso", Type: typ}, func(dlq.Letter) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("list shows the letter with type %q, but a filter on type %q finds %d letter(s)", shown, typ, n)
		}
	}
	n := 0
	if err := dlq.List(context.Background(), e.b.JS, dlq.Filter{Type: messages.TypeLocation}, func(dlq.Letter) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a filter on type location finds %d letter(s) of type %q", n, shown)
	}
}

// The dead letter must hold the original headers byte for byte (invariant 1),
// so that a replay republishes the job as it was.
func TestDeadLetterKeepsHeaderBytes(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	msg, _, err := messages.NewMsg(messages.Job{ID: "j1", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "L0001"})
	if err != nil {
		t.Fatal(err)
	}
	const latin1 = "M\xfcller" // "Müller" in ISO-8859-1, as an upstream publisher may send it
	msg.Header.Set("X-Customer-Name", latin1)
	if _, err := e.b.JS.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Stats: stats, Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
		return worker.Permanent(errors.New("refused"))
	})})
	waitFor(t, 10*time.Second, "dead-lettered", func() bool { return stats.DeadLettered.Load() == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	if got := dl.OriginalHeaders()["X-Customer-Name"]; len(got) != 1 || got[0] != latin1 {
		t.Errorf("dead letter header X-Customer-Name = %q, want the original bytes %q", got, latin1)
	}
	replay, err := dlq.ReplayMsg(dlq.Letter{Seq: 1, DL: dl})
	if err != nil {
		t.Fatal(err)
	}
	if got := replay.Header.Values("X-Customer-Name"); len(got) != 1 || got[0] != latin1 {
		t.Errorf("replay header X-Customer-Name = %q, want the original bytes %q", got, latin1)
	}
	if got := dl.OriginalHeaders()[messages.HeaderMsgID]; len(got) != 1 || got[0] != msg.Header.Get(messages.HeaderMsgID) {
		t.Errorf("dead letter header %s = %q, want the original %q", messages.HeaderMsgID, got, msg.Header.Get(messages.HeaderMsgID))
	}
}

// BCSYNC_JOBS made anew (its sequences start again at 1) within the DLQ's
// duplicate window: a job dead-lettered at a reused sequence once got the
// same Nats-Msg-Id (bcsync-dlq-<seq>) as an earlier, unrelated letter, was
// dropped by BCSYNC_DLQ as a duplicate, and then Termed: a job gone with no
// dead letter (invariant 1).
func TestDeadLetterOfAJobAfterTheJobStreamWasMadeAnew(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	ctx := context.Background()
	fail := worker.HandlerFunc(func(context.Context, *messages.Job) error { return worker.Permanent(errors.New("refused")) })
	e.publish(t, 1) // L0000 at seq 1
	stats := &worker.Stats{}
	stop := e.run(t, worker.LoopConfig{Stats: stats, Handler: fail})
	waitFor(t, 10*time.Second, "first job dead-lettered", func() bool { return stats.DeadLettered.Load() == 1 })
	stop()

	// An operator deletes BCSYNC_JOBS; a worker (or nats stream add) makes it anew.
	if err := e.b.JS.DeleteStream(ctx, messages.StreamJobs); err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureStreams(ctx, e.b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	cons, err := broker.EnsureConsumer(ctx, e.b.JS, broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 5, AckWait: 5 * time.Second, MaxAckPending: 1000})
	if err != nil {
		t.Fatal(err)
	}
	e.cons = cons
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: "other", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "OTHER"}); err != nil {
		t.Fatal(err)
	}
	stats2 := &worker.Stats{}
	e.run(t, worker.LoopConfig{Stats: stats2, Handler: fail})
	waitFor(t, 10*time.Second, "second job settled", func() bool { return stats2.DeadLettered.Load() == 1 })
	if n := e.streamMsgs(t, messages.StreamJobs); n != 0 {
		t.Fatalf("jobs stream holds %d", n)
	}
	keys := map[string]bool{}
	if err := dlq.List(ctx, e.b.JS, dlq.Filter{}, func(l dlq.Letter) error { keys[l.DL.Key] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if !keys["OTHER"] {
		t.Errorf("job OTHER was Termed as dead-lettered, but BCSYNC_DLQ holds no letter for it (letters: %v)", keys)
	}
}

// A job held on its last delivery is requeued as a copy whose Nats-Msg-Id
// was bcsync-requeue-<seq>: after BCSYNC_JOBS was made anew, the copy of
// another job at the same sequence within the duplicate window was dropped
// as a duplicate and the original Termed: the job was in neither stream.
func TestRequeueAfterTheJobStreamWasMadeAnewLosesNoJob(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	job := func(id, key string) messages.Job {
		return messages.Job{ID: id, Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: key}
	}
	for _, j := range []messages.Job{job("f", "F"), job("a", "A")} { // A at sequence 2
		if _, _, err := messages.Publish(ctx, e.b.JS, j); err != nil {
			t.Fatal(err)
		}
	}
	consOpts := broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 2, AckWait: 5 * time.Second, MaxAckPending: 1000}
	throttled := &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
	var aCalls, bCalls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, Concurrency: 1,
		Recreate: func(ctx context.Context) error { _, err := broker.EnsureConsumer(ctx, e.b.JS, consOpts); return err },
		Handler: worker.HandlerFunc(func(_ context.Context, j *messages.Job) error {
			switch j.Key {
			case "A":
				switch aCalls.Add(1) {
				case 1:
					return throttled
				case 2: // its last delivery: meanwhile an operator makes the stream anew
					if err := e.b.JS.DeleteStream(ctx, messages.StreamJobs); err != nil {
						t.Error(err)
					}
					if err := broker.EnsureStreams(ctx, e.b.JS, broker.StreamOptions{}); err != nil {
						t.Error(err)
					}
					if _, err := broker.EnsureConsumer(ctx, e.b.JS, consOpts); err != nil {
						t.Error(err)
					}
					return throttled // held on its last delivery: copied to sequence 1 of the new stream
				case 3: // A's copy; a new job arrives, at sequence 2 of the new stream
					if _, _, err := messages.Publish(ctx, e.b.JS, job("b", "B")); err != nil {
						t.Error(err)
					}
				}
				return nil
			case "B":
				if bCalls.Add(1) <= 2 {
					return throttled // held on both deliveries: requeued on the last
				}
				return nil
			}
			return nil
		})})
	waitFor(t, 20*time.Second, "B requeued", func() bool { return stats.Requeued.Load() >= 2 })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && bCalls.Load() < 3 {
		time.Sleep(50 * time.Millisecond)
	}
	if bCalls.Load() < 3 {
		t.Errorf("job B was requeued on its last delivery but its copy never ran (B ran %d times; jobs stream holds %d, DLQ %d): lost",
			bCalls.Load(), e.streamMsgs(t, messages.StreamJobs), e.streamMsgs(t, messages.StreamDLQ))
	}
}

// BCSYNC_JOBS made anew while a job was held: its fail.<seq> entry (with its
// held count) stays in bcsync_records, and the next job stored at that
// sequence once inherited it: its own failures were taken for held
// deliveries, and its letter named the other job's first failure. The
// entry now names the job's stored time.
func TestStaleFailuresOfAnotherJobAtTheSameSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLoopEnv(t, 10) // A's consumer: room for many held deliveries
	failures := brokertest.KV(t, e.b, broker.BucketRecords)
	throttled := &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
	blip := &bcclient.APIError{Status: 503, Code: "Internal_ServiceUnavailable", Message: "blip"}

	// Job A, at sequence 1, held (throttled) at least 5 times.
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: "a", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "A"}); err != nil {
		t.Fatal(err)
	}
	statsA := &worker.Stats{}
	stop := e.run(t, worker.LoopConfig{MaxDeliver: 10, Stats: statsA, Failures: failures,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return throttled })})
	waitFor(t, 10*time.Second, "A held 5 times", func() bool { return statsA.Held.Load() >= 5 })
	stop()

	// An operator makes BCSYNC_JOBS anew (as TestDeadLetterOfAJobAfterTheJobStreamWasMadeAnew does).
	if err := e.b.JS.DeleteStream(ctx, messages.StreamJobs); err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureStreams(ctx, e.b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	cons, err := broker.EnsureConsumer(ctx, e.b.JS, broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 3, AckWait: 5 * time.Second, MaxAckPending: 1000})
	if err != nil {
		t.Fatal(err)
	}
	e.cons = cons

	// Job B, unrelated, lands at sequence 1 and fails by its own fault every time.
	published := time.Now()
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: "b", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "B"}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Failures: failures,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { calls.Add(1); return blip })})
	waitFor(t, 20*time.Second, "B dead-lettered", func() bool { return stats.DeadLettered.Load() == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	if n := calls.Load(); n != 3 || stats.Requeued.Load() != 0 {
		t.Errorf("B failed %d times by its own fault (max_deliver 3) and was requeued %d time(s) before its dead letter (%q); want 3 failures, no requeue",
			n, stats.Requeued.Load(), dl.Reason)
	}
	if dl.FirstFailure.Before(published) {
		t.Errorf("B's letter says it first failed at %v, before B was published (%v): that is job A's first failure", dl.FirstFailure, published)
	}
}
