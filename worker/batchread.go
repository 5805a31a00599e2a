package worker

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// batchReader turns concurrent reads of single BC records by code or number
// into one request for many: BC's budget counts requests, not records, so
// a worker running many jobs of one type reads their records together.
//
// No read waits for a batch to fill: a read starts a request at once when
// fewer than inflight are running; the reads arriving meanwhile queue and
// leave together, up to max keys, when a request ends. Reads by GUID, which
// BC's batched filter does not take, go out alone.
type batchReader[B any] struct {
	one       func(ctx context.Context, key string) (B, error)
	many      func(ctx context.Context, keys []string) (map[string]B, error)
	absent    func(key string) error // the error one returns for a key BC does not have
	batchable func(key string) bool
	// refused tells a batch refused before it was sent (a key many does not
	// take): its keys are then read one by one, so that one bad key fails
	// only its own job.
	refused  func(error) bool
	max      int
	inflight int
	// timeout bounds one request, which serves several jobs and so runs
	// under none of their contexts (see requestContext).
	timeout time.Duration

	mu      sync.Mutex
	queue   []*batchRead[B]
	running int
}

type batchRead[B any] struct {
	ctx  context.Context
	key  string
	done chan struct{}
	rec  B
	err  error
}

// get reads the record whose code or number (or GUID) is key.
func (r *batchReader[B]) get(ctx context.Context, key string) (B, error) {
	if !r.batchable(key) {
		return r.one(ctx, key)
	}
	w := &batchRead[B]{ctx: ctx, key: key, done: make(chan struct{})}
	r.mu.Lock()
	r.queue = append(r.queue, w)
	start := r.running < r.inflight
	if start {
		r.running++
	}
	r.mu.Unlock()
	if start {
		go r.run()
	}
	select {
	case <-w.done:
		return w.rec, w.err
	case <-ctx.Done():
		var zero B
		return zero, ctx.Err()
	}
}

// run sends batches until the queue is empty.
func (r *batchReader[B]) run() {
	for {
		r.mu.Lock()
		// Readers that gave up need no answer.
		r.queue = slices.DeleteFunc(r.queue, func(w *batchRead[B]) bool { return w.ctx.Err() != nil })
		if len(r.queue) == 0 {
			r.running--
			r.mu.Unlock()
			return
		}
		var batch []*batchRead[B]
		var keys []string
		rest := r.queue[:0]
		for _, w := range r.queue {
			switch {
			case slices.Contains(keys, w.key):
				batch = append(batch, w)
			case len(keys) < r.max:
				keys = append(keys, w.key)
				batch = append(batch, w)
			default:
				rest = append(rest, w)
			}
		}
		clear(r.queue[len(rest):])
		r.queue = rest
		r.mu.Unlock()
		r.send(keys, batch)
	}
}

func (r *batchReader[B]) send(keys []string, batch []*batchRead[B]) {
	ctx, cancel := r.requestContext(batch)
	defer cancel()
	var recs map[string]B
	var err error
	if len(keys) == 1 {
		// Alone: the plain read, whose answer BC gives the same way.
		var rec B
		if rec, err = r.one(ctx, keys[0]); err == nil {
			recs = map[string]B{keys[0]: rec}
		}
	} else {
		recs, err = r.many(ctx, keys)
		if err != nil && r.refused != nil && r.refused(err) {
			for _, w := range batch {
				w.rec, w.err = r.one(w.ctx, w.key)
				close(w.done)
			}
			return
		}
	}
	for _, w := range batch {
		switch rec, ok := recs[w.key]; {
		case err != nil:
			w.err = err
		case ok:
			w.rec = rec
		default:
			w.err = r.absent(w.key)
		}
		close(w.done)
	}
}

// requestContext is the context of one request serving batch: it ends
// after the timeout, or once every job waiting for the request has given
// up (a worker stopping), so that no request outlives all its readers. A
// job that gives up alone does not end it for the others.
func (r *batchReader[B]) requestContext(batch []*batchRead[B]) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), r.timeout)
	waiting := new(atomic.Int32)
	waiting.Store(int32(len(batch)))
	stops := make([]func() bool, 0, len(batch))
	for _, w := range batch {
		stops = append(stops, context.AfterFunc(w.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
