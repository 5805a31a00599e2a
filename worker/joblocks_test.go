package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/rs/zerolog"
)

func TestLockRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := brokertest.New(t)
	rl := NewRecordLocks(b.JS, brokertest.KV(t, b, broker.BucketRecords), time.Second)

	// Without the locks of a job (no loop, or no record locks): nothing.
	if err := lockRecord(ctx, messages.TypeLocation, "FREE"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	free, err := rl.Lock(short, "contoso", messages.TypeLocation, "FREE", "another job")
	if err != nil {
		t.Fatalf("lockRecord without a job's locks took a lock: %v", err)
	}
	if err := free.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	jl := &jobLocks{locks: rl, subscription: "contoso", owner: "w1/job"}
	jctx := withJobLocks(ctx, jl)
	for range 2 { // the second time, already held
		if err := lockRecord(jctx, messages.TypeLocation, "L2"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(jl.all()); n != 1 {
		t.Fatalf("%d locks held, want 1", n)
	}

	// A lock another job holds and renews: the wait ends after one TTL,
	// as a transient failure (the job is retried and its locks released).
	other, err := rl.Lock(ctx, "contoso", messages.TypeLocation, "L1", "another job")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				_ = other.Renew(ctx)
			}
		}
	}()
	start := time.Now()
	err = lockRecord(jctx, messages.TypeLocation, "L1")
	close(stop)
	<-renewed
	if !errors.Is(err, context.DeadlineExceeded) || Classify(err) != ClassTransient {
		t.Fatalf("got %v (%s), want a transient timeout", err, Classify(err))
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 10*time.Second {
		t.Errorf("waited %v for a lock with a 1s TTL", took)
	}
	if n := len(jl.all()); n != 1 {
		t.Errorf("%d locks held after the timeout, want 1", n)
	}
}

// A lock the handler adds (a GUID job locking its record's code) is renewed
// with the job's heartbeat while the job runs longer than the lock's TTL,
// and released with the job's own once it is settled.
func TestLoopRenewsAndReleasesTheLocksAHandlerAdds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := brokertest.New(t)
	cons, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 5, AckWait: 5 * time.Second, MaxAckPending: 10})
	if err != nil {
		t.Fatal(err)
	}
	kv := brokertest.KV(t, b, broker.BucketRecords)
	rl := NewRecordLocks(b.JS, kv, time.Second)
	added := make(chan error, 1)
	stats := &Stats{}
	l, err := NewLoop(LoopConfig{Subscription: "contoso", Consumer: cons, JS: b.JS, MaxDeliver: 5, Stats: stats, Locks: rl,
		PollWait: 200 * time.Millisecond, Log: zerolog.Nop(),
		Handler: HandlerFunc(func(ctx context.Context, job *messages.Job) error {
			added <- lockRecord(ctx, job.Type, "SECOND")
			time.Sleep(3 * time.Second) // three TTLs
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = l.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	if _, _, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "FIRST"}); err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	// Renewed, so not taken over after its TTL while the job runs.
	wait, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if l, err := rl.Lock(wait, "contoso", messages.TypeLocation, "SECOND", "another job"); err == nil {
		_ = l.Unlock(ctx)
		t.Fatal("another job took the added lock while the job holding it ran")
	}
	// Released once the job is settled: taken at once.
	for stats.Acked.Load() != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	quick, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	second, err := rl.Lock(quick, "contoso", messages.TypeLocation, "SECOND", "another job")
	if err != nil {
		t.Fatalf("the added lock was not released with the job: %v", err)
	}
	_ = second.Unlock(ctx)
}
