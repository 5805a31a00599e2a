package worker_test

// Tests of DESIGN's invariants 2, 4 and 6 on paths a review found open:
// each failed before its fix.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
)

// TestNotFoundDuringAnOutageDoesNotCloseTheBreaker: iPaaS.com is down for
// the whole test (every write answers 503). The breaker trips and holds the
// jobs. One job for a record BC no longer has (BC answers 404: ClassNotFound)
// once reset the breaker ("the dependencies answered"), although the
// dependency that is down, iPaaS.com, never answered; the next transient
// failure, on a job's last delivery, was then counted and the job
// dead-lettered during the outage. Invariant 4: an outage dead-letters
// nothing.
func TestNotFoundDuringAnOutageDoesNotCloseTheBreaker(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	e.publish(t, 2) // L0000, L0001
	stats := &worker.Stats{}
	br := e.breaker(t, worker.BreakerConfig{Threshold: 2, MinPause: 100 * time.Millisecond, MaxPause: 100 * time.Millisecond})
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, Breaker: br, Concurrency: 1,
		// Jobs come back 3 s after failing: time for the 404 job to run.
		Backoff: worker.Backoff{Initial: 3 * time.Second, Max: 3 * time.Second, Jitter: 0.01},
		Handler: worker.HandlerFunc(func(_ context.Context, j *messages.Job) error {
			if j.Key == "GONE" {
				return fmt.Errorf("bc: read location GONE: %w", bcclient.ErrNotFound)
			}
			return &ipaasclient.APIError{Status: 503, Message: "Service Unavailable"}
		})})
	waitFor(t, 10*time.Second, "the breaker tripped by the iPaaS.com outage", func() bool {
		return br.Stats().Trips.Load() >= 1 && stats.Held.Load() >= 1
	})
	// A job for a record deleted in BC, while iPaaS.com is still down.
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{ID: "gone-1", Subscription: "contoso",
		Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "GONE"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every job settled", func() bool {
		return stats.DeadLettered.Load()+stats.Requeued.Load() >= 3
	})
	var transient []string
	for _, dl := range readDLQ(t, e.b.JS, int(stats.DeadLettered.Load())) {
		if dl.ErrorClass == string(worker.ClassTransient) {
			transient = append(transient, dl.Key+": "+dl.Reason)
		}
	}
	if len(transient) > 0 {
		t.Errorf("dead-lettered during an iPaaS.com outage that never ended (breaker reset by a BC 404): %v", transient)
	}
}

// TestShutdownOnTheLastDeliveryRequeues: a worker stopped (SIGTERM) while
// running a job on its last allowed delivery once handed it back with a
// Nak, as any other job; JetStream never delivers it again (MaxDeliver
// reached), so the safety net moved it to the DLQ as "max_deliveries" and
// the worker taking over never got it. Now it is requeued as a copy.
// Invariant 6: in-flight jobs are finished or returned (to the others), not
// dead-lettered by a rolling restart.
func TestShutdownOnTheLastDeliveryRequeues(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	e.publish(t, 1)
	stop, err := worker.SafetyNet(context.Background(), e.b.JS, worker.SafetyNetConfig{WorkerID: "net-1", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	var calls atomic.Int32
	s1 := &worker.Stats{}
	stop1 := e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: s1, Grace: 100 * time.Millisecond,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
			if calls.Add(1) == 1 {
				return &ipaasclient.APIError{Status: 503, Message: "blip"} // one transient failure
			}
			<-ctx.Done() // the second (last) delivery is still running at shutdown
			return ctx.Err()
		})})
	waitFor(t, 10*time.Second, "the last delivery running", func() bool { return calls.Load() == 2 })
	stop1()
	if s1.Returned.Load() != 1 {
		t.Fatalf("returned=%d, want the job handed back", s1.Returned.Load())
	}
	// Another worker takes over; the job succeeds there.
	s2 := &worker.Stats{}
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: s2,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil })})
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) && s2.Acked.Load() == 0 && e.streamMsgs(t, messages.StreamDLQ) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if s2.Acked.Load() != 1 {
		var class string
		if n := e.streamMsgs(t, messages.StreamDLQ); n > 0 {
			class = readDLQ(t, e.b.JS, 1)[0].ErrorClass
		}
		t.Errorf("the job returned on shutdown never reached the next worker (acked=%d); DLQ holds %d letter(s), class %q",
			s2.Acked.Load(), e.streamMsgs(t, messages.StreamDLQ), class)
	}
}

// TestOlderPriceGroupSnapshotDoesNotWin: DESIGN invariant 2 (a
// stale BC read never overwrites a newer one at iPaaS.com), as
// TestE2ENewerSnapshotWinsIn100Repetitions checks it for locations, but for
// customer price groups (customer_category). Bulk jobs (initialize, and every
// poller delta, which lists all price groups) publish price-group jobs with
// snapshots; a job retried with backoff runs after a newer one. Price
// groups have no modification time to check, and the lock orders the
// writes only, not the reads the snapshots hold: the older snapshot, run
// second, won. The worker now reads BC under the lock instead.
func TestOlderPriceGroupSnapshotDoesNotWin(t *testing.T) {
	t.Parallel()
	const n = 10
	e := newE2E(t, e2eOptions{bc: bctest.Options{PriceGroups: n}})
	set := e.bc.PriceGroupService()
	snapshot := func(code string) json.RawMessage {
		rec, ok := e.bc.Record(set, code)
		if !ok {
			t.Fatalf("no price group %s", code)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx := context.Background()
	var older []messages.Job
	codes := e.bc.PriceGroupCodes()
	for _, code := range codes {
		old := snapshot(code)
		e.bc.Update(set, code, func(f map[string]any) { f["Description"] = "newer " + code })
		older = append(older, messages.Job{Subscription: "contoso", Type: messages.TypeCustomerCategory, Op: messages.OpUpsert, Key: code, Data: old})
		if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{
			Subscription: "contoso", Type: messages.TypeCustomerCategory, Op: messages.OpUpsert, Key: code, Data: snapshot(code),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range older {
		if _, _, err := messages.Publish(ctx, e.b.JS, j); err != nil {
			t.Fatal(err)
		}
	}
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 60*time.Second, "every job acked", func() bool { return e.stats.Acked.Load() == 2*n })
	stale := 0
	for _, code := range codes {
		rec, ok := e.ip.Lookup(ipaastest.TableCustomerCategory, code)
		if !ok {
			t.Errorf("customer category %s not at iPaaS.com", code)
			continue
		}
		if rec["description"] != "newer "+code {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d customer categories at iPaaS.com hold the older BC state (description %q, want %q)",
			stale, n, mustLookup(e, codes[0])["description"], "newer "+codes[0])
	}
}

func mustLookup(e *e2e, code string) map[string]any {
	rec, _ := e.ip.Lookup(ipaastest.TableCustomerCategory, code)
	return rec
}

// TestLostRecordLockStopsTheJob: DESIGN invariant 2 (two jobs
// for the same record never run at once). The heartbeat's renewals of a
// job's record lock fail (here: every renewal publish fails, as when this
// worker's JetStream requests time out); the lock expires by its TTL while
// the job still runs, and the next job for the record takes it. The loop
// once only logged "could not renew the record lock" and let the handler go
// on, so both ran at once; RecordLock.Renew says the holder must then stop.
func TestLostRecordLockStopsTheJob(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 5)
	ctx := context.Background()
	for i := range 2 {
		if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: fmt.Sprintf("same-%d", i), Subscription: "contoso",
			Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "EAST", ChangedAt: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	kv := brokertest.KV(t, e.b, broker.BucketRecords)
	locks := worker.NewRecordLocks(failingPublisher{e.b.JS}, kv, 2*time.Second)
	var running, overlap atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Concurrency: 2, Stats: stats, Locks: locks,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
			if running.Add(1) > 1 {
				overlap.Add(1)
			}
			defer running.Add(-1)
			select {
			case <-time.After(5 * time.Second): // a slow BC read and iPaaS.com write
			case <-ctx.Done():
			}
			return nil
		})})
	waitFor(t, 30*time.Second, "both jobs acked", func() bool { return stats.Acked.Load() == 2 })
	if overlap.Load() > 0 {
		t.Errorf("two jobs for record EAST ran at once: the first kept running after its lock expired")
	}
}

// The heartbeat stops a job whose record lock cannot be renewed (here: this
// worker's JetStream publishes fail, as in TestLostRecordLockStopsTheJob),
// logging "stopping the job; it is retried". The handler never failed: BC
// and iPaaS.com answered. The stop once counted toward MaxDeliver, so on
// the last delivery the job was dead-lettered ("gave up after 2 attempts");
// it is held now, and requeued on its last delivery.
func TestLockTroubleIsNotTheJobsFault(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 2)
	ctx := context.Background()
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{ID: "slow-1", Subscription: "contoso",
		Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "EAST"}); err != nil {
		t.Fatal(err)
	}
	kv := brokertest.KV(t, e.b, broker.BucketRecords)
	locks := worker.NewRecordLocks(failingPublisher{e.b.JS}, kv, 2*time.Second)
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{MaxDeliver: 2, Stats: stats, Locks: locks,
		Handler: worker.HandlerFunc(func(ctx context.Context, j *messages.Job) error {
			select {
			case <-time.After(3 * time.Second): // a slow BC read and iPaaS.com write, which succeed
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})})
	// Renewals fail for ever here: the job is stopped on each delivery,
	// held, and requeued on its last one, never dead-lettered.
	waitFor(t, 30*time.Second, "the job requeued", func() bool {
		return stats.Requeued.Load() > 0 || stats.DeadLettered.Load() > 0
	})
	if n := stats.DeadLettered.Load(); n > 0 {
		dl := readDLQ(t, e.b.JS, 1)[0]
		t.Errorf("a job whose handler never failed was dead-lettered (class %q): %s", dl.ErrorClass, dl.Reason)
	}
}
