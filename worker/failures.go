package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// HeaderFirstFailure carries, on a requeued job, when the job it replaces
// first failed (RFC 3339), so that its dead letter, if it comes to one,
// tells when the trouble began.
const HeaderFirstFailure = "Bcsync-First-Failure"

// failureTTL is how long a job's first failure time is kept: far longer
// than a job's deliveries take to run out, even through an outage.
const failureTTL = 7 * 24 * time.Hour

// failureCallTimeout bounds each best-effort call, so that a struggling
// NATS delays a failing job's settlement by little.
const failureCallTimeout = 2 * time.Second

// failureTimes keeps when each failing job first failed, in the records
// bucket under fail.<stream sequence>, across its deliveries and workers.
// A job that never fails costs nothing; one that fails costs a KV create,
// and a delete once it is settled. Every call is best effort: without the
// time, a dead letter falls back to the job's stored time. A nil kv keeps
// nothing.
type failureTimes struct {
	kv  jetstream.KeyValue
	log zerolog.Logger
}

func failureKey(seq uint64) string { return "fail." + strconv.FormatUint(seq, 10) }

// failed records at as the first failure of the job at seq, unless one is
// recorded already.
func (f failureTimes) failed(ctx context.Context, seq uint64, at time.Time) {
	if f.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	_, err := f.kv.Create(ctx, failureKey(seq), []byte(at.UTC().Format(time.RFC3339Nano)), jetstream.KeyTTL(failureTTL))
	if err != nil && !broker.IsConflict(err) {
		f.log.Debug().Err(err).Uint64("stream_seq", seq).Msg("could not record the job's first failure; its dead letter would name its stored time")
	}
}

// first returns the recorded first failure of the job at seq.
func (f failureTimes) first(ctx context.Context, seq uint64) (time.Time, bool) {
	if f.kv == nil {
		return time.Time{}, false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	e, err := f.kv.Get(ctx, failureKey(seq))
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	return t, err == nil
}

// settled forgets the job at seq.
func (f failureTimes) settled(ctx context.Context, seq uint64) {
	if f.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	if err := f.kv.Purge(ctx, failureKey(seq), jetstream.PurgeTTL(time.Minute)); err != nil {
		f.log.Debug().Err(err).Uint64("stream_seq", seq).Msg("could not forget the job's first failure; it expires by itself")
	}
}
