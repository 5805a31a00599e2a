package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// hangingPublisher never answers a publish: renewals hang until their
// deadline, as when this worker's JetStream requests go unanswered.
type hangingPublisher struct{}

func (hangingPublisher) PublishMsg(ctx context.Context, _ *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// quietMsg is a delivery whose InProgress succeeds and does nothing.
type quietMsg struct{ jetstream.Msg }

func (quietMsg) InProgress() error { return nil }

// A job holding several record locks (a job named by GUID also locks its
// record's code) whose renewals hang is stopped before any of its locks may
// expire. Renewals were made one after another, each given a third of the
// TTL, so three hanging ones took a whole TTL before the job was stopped,
// and the next job of a record could run beside it.
func TestHeartbeatStopsAJobBeforeItsLocksExpire(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketRecords)
	const ttl = 3 * time.Second
	l := &Loop{cfg: LoopConfig{Locks: NewRecordLocks(hangingPublisher{}, kv, ttl)}}
	jl := &jobLocks{locks: l.cfg.Locks, subscription: "contoso", owner: "w/j"}
	ctx := context.Background()
	taken := time.Now()
	for _, key := range []string{"EAST", "WEST", "NORTH"} {
		if err := jl.lock(ctx, messages.TypeLocation, key); err != nil {
			t.Fatal(err)
		}
	}
	var stoppedAt atomic.Int64
	stopped := make(chan struct{})
	stop := l.heartbeat(quietMsg{}, jl, func(error) {
		stoppedAt.Store(int64(time.Since(taken)))
		close(stopped)
	}, zerolog.Nop())
	defer stop()
	select {
	case <-stopped:
	case <-time.After(3 * ttl):
		t.Fatal("the job was never stopped")
	}
	if at := time.Duration(stoppedAt.Load()); at >= ttl {
		t.Errorf("the job was stopped %v after its locks were taken, at or past their %v TTL", at.Round(time.Millisecond), ttl)
	}
}
