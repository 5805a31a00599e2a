package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
)

func TestLockRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rl := NewRecordLocks(brokertest.KV(t, brokertest.New(t), broker.BucketRecords), time.Second)

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
