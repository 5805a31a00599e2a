package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// HeaderFirstFailure is messages.HeaderFirstFailure.
const HeaderFirstFailure = messages.HeaderFirstFailure

// failureTTL is how long a job's first failure time is kept: far longer
// than a job's deliveries take to run out, even through an outage.
const failureTTL = 7 * 24 * time.Hour

// failureCallTimeout bounds each best-effort call, so that a struggling
// NATS delays a failing job's settlement by little.
const failureCallTimeout = 2 * time.Second

// HeaderFailures is messages.HeaderFailures.
const HeaderFailures = messages.HeaderFailures

// failureTimes keeps when each failing job first failed, and how many of
// its deliveries were held (not its fault), in the records bucket under
// fail.<stream sequence> ("<time>" or "<time> held=<n>"), across its
// deliveries and workers. A job that never fails costs nothing; one that
// fails costs a KV create (and a write per held delivery), and a delete
// once it is settled. Every call is best effort: without the time, a dead
// letter falls back to the job's stored time; without the held count,
// every delivery counts, as JetStream counts them. A nil kv keeps nothing.
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
	_, err := f.kv.Create(ctx, failureKey(seq), formatFailure(at, 0), jetstream.KeyTTL(failureTTL))
	if err != nil && !broker.IsConflict(err) {
		f.log.Debug().Err(err).Uint64("stream_seq", seq).Msg("could not record the job's first failure; its dead letter would name its stored time")
	}
}

// held records one more held delivery of the job at seq (and, if none is
// recorded, now as its first failure).
func (f failureTimes) held(ctx context.Context, seq uint64) {
	if f.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	for range 5 {
		e, err := f.kv.Get(ctx, failureKey(seq))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = f.kv.Create(ctx, failureKey(seq), formatFailure(time.Now(), 1), jetstream.KeyTTL(failureTTL))
		case err == nil:
			at, n := parseFailure(e.Value())
			if at.IsZero() {
				at = time.Now()
			}
			_, err = f.kv.Update(ctx, failureKey(seq), formatFailure(at, n+1), e.Revision())
		}
		if err == nil {
			return
		}
		if !broker.IsConflict(err) {
			f.log.Debug().Err(err).Uint64("stream_seq", seq).Msg("could not record a held delivery of the job; it may count toward dead-lettering")
			return
		}
	}
}

func formatFailure(at time.Time, held int) []byte {
	v := at.UTC().Format(time.RFC3339Nano)
	if held > 0 {
		v += " held=" + strconv.Itoa(held)
	}
	return []byte(v)
}

func parseFailure(v []byte) (time.Time, int) {
	ts, rest, _ := strings.Cut(string(v), " ")
	t, _ := time.Parse(time.RFC3339Nano, ts)
	n, _ := strconv.Atoi(strings.TrimPrefix(rest, "held="))
	return t, max(n, 0)
}

// first returns the recorded first failure of the job at seq.
func (f failureTimes) first(ctx context.Context, seq uint64) (time.Time, bool) {
	t, _, ok := f.read(ctx, seq)
	return t, ok && !t.IsZero()
}

// heldCount returns how many deliveries of the job at seq were held.
func (f failureTimes) heldCount(ctx context.Context, seq uint64) int {
	_, n, _ := f.read(ctx, seq)
	return n
}

func (f failureTimes) read(ctx context.Context, seq uint64) (time.Time, int, bool) {
	if f.kv == nil {
		return time.Time{}, 0, false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	e, err := f.kv.Get(ctx, failureKey(seq))
	if err != nil {
		return time.Time{}, 0, false
	}
	t, n := parseFailure(e.Value())
	return t, n, true
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
