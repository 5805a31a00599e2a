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
// fail.<stream sequence> (see failure), across its
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

// failed records at as the first failure of the job at seq, stored at
// stored, unless one is recorded already.
func (f failureTimes) failed(ctx context.Context, seq uint64, stored, at time.Time) {
	f.update(ctx, seq, stored, func(cur failure, found bool) (failure, bool) {
		if found {
			return cur, false
		}
		return failure{at: at}, true
	})
}

// held records one more held delivery of the job at seq, stored at stored
// (and, if none is recorded, now as its first failure).
func (f failureTimes) held(ctx context.Context, seq uint64, stored time.Time) {
	f.update(ctx, seq, stored, func(cur failure, found bool) (failure, bool) {
		if !found || cur.at.IsZero() {
			cur.at = time.Now()
		}
		cur.held++
		return cur, true
	})
}

// failure is what fail.<seq> holds: "<first failure> held=<n> of=<the
// job's stored time, unix ns>". The stored time tells the job apart from
// another at the same sequence of a job stream made anew.
type failure struct {
	at   time.Time
	held int
	of   int64 // 0 in entries written before it was kept
}

func (v failure) format() []byte {
	b := v.at.UTC().Format(time.RFC3339Nano)
	if v.held > 0 {
		b += " held=" + strconv.Itoa(v.held)
	}
	if v.of != 0 {
		b += " of=" + strconv.FormatInt(v.of, 10)
	}
	return []byte(b)
}

func parseFailure(b []byte) failure {
	fields := strings.Fields(string(b))
	var v failure
	if len(fields) > 0 {
		v.at, _ = time.Parse(time.RFC3339Nano, fields[0])
	}
	for _, fl := range fields[min(1, len(fields)):] {
		if n, ok := strings.CutPrefix(fl, "held="); ok {
			v.held, _ = strconv.Atoi(n)
			v.held = max(v.held, 0)
		} else if n, ok := strings.CutPrefix(fl, "of="); ok {
			v.of, _ = strconv.ParseInt(n, 10, 64)
		}
	}
	return v
}

// mine reports whether v is the record of the job stored at stored.
func (v failure) mine(stored time.Time) bool {
	return v.of == 0 || stored.IsZero() || v.of == stored.UnixNano()
}

// update applies fn to the record of the job at seq (found false when there
// is none, or it is another job's), and writes what fn returns if it says
// so, by compare-and-set.
func (f failureTimes) update(ctx context.Context, seq uint64, stored time.Time, fn func(cur failure, found bool) (failure, bool)) {
	if f.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	for range 5 {
		e, err := f.kv.Get(ctx, failureKey(seq))
		var cur failure
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			f.log.Debug().Err(err).Uint64("stream_seq", seq).Msg("could not read the job's failures; its dead letter may name its stored time, and its held deliveries count")
			return
		default:
			rev, cur = e.Revision(), parseFailure(e.Value())
		}
		found := rev != 0 && cur.mine(stored)
		if !found {
			cur = failure{}
		}
		next, write := fn(cur, found)
		if !write {
			return
		}
		if !stored.IsZero() {
			next.of = stored.UnixNano()
		}
		if rev == 0 {
			_, err = f.kv.Create(ctx, failureKey(seq), next.format(), jetstream.KeyTTL(failureTTL))
		} else {
			_, err = f.kv.Update(ctx, failureKey(seq), next.format(), rev)
		}
		if err == nil {
			return
		}
		if !broker.IsConflict(err) {
			f.log.Debug().Err(err).Uint64("stream_seq", seq).Msg("could not record the job's failures; its dead letter may name its stored time, and its held deliveries count")
			return
		}
	}
}

// first returns the recorded first failure of the job at seq, stored at
// stored.
func (f failureTimes) first(ctx context.Context, seq uint64, stored time.Time) (time.Time, bool) {
	v, ok := f.read(ctx, seq, stored)
	return v.at, ok && !v.at.IsZero()
}

// heldCount returns how many deliveries of the job at seq, stored at
// stored, were held.
func (f failureTimes) heldCount(ctx context.Context, seq uint64, stored time.Time) int {
	v, _ := f.read(ctx, seq, stored)
	return v.held
}

func (f failureTimes) read(ctx context.Context, seq uint64, stored time.Time) (failure, bool) {
	if f.kv == nil {
		return failure{}, false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureCallTimeout)
	defer cancel()
	e, err := f.kv.Get(ctx, failureKey(seq))
	if err != nil {
		return failure{}, false
	}
	v := parseFailure(e.Value())
	if !v.mine(stored) {
		return failure{}, false // another job's, at the same sequence of a stream made anew
	}
	return v, true
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
