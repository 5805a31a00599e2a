package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeReads stands for BC: records "rec-<key>" for every key but those
// starting "missing", a batched read taking a moment. A request for a key
// starting "hang" waits for the end of its context, and reports it on
// ended.
type fakeReads struct {
	one, many atomic.Int64
	largest   atomic.Int64
	fail      error
	release   chan struct{} // when set, reads wait for it
	waiting   atomic.Int64  // keys of the reads that waited for release
	ended     chan error
}

// hang waits, for a request of keys that holds a "hang" key, for the end of
// ctx.
func (f *fakeReads) hang(ctx context.Context, keys ...string) error {
	if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "hang") }) {
		return nil
	}
	<-ctx.Done()
	f.ended <- ctx.Err()
	return ctx.Err()
}

func (f *fakeReads) reader(max, inflight int) *batchReader[string] {
	return &batchReader[string]{
		one: func(ctx context.Context, key string) (string, error) {
			f.one.Add(1)
			if err := f.hang(ctx, key); err != nil {
				return "", err
			}
			if f.release != nil {
				f.waiting.Add(1)
				<-f.release
			}
			if f.fail != nil {
				return "", f.fail
			}
			if strings.HasPrefix(key, "missing") {
				return "", errAbsent
			}
			if strings.HasPrefix(key, "bad") {
				return "", errRefused
			}
			return "rec-" + key, nil
		},
		many: func(ctx context.Context, keys []string) (map[string]string, error) {
			f.many.Add(1)
			if err := f.hang(ctx, keys...); err != nil {
				return nil, err
			}
			for n := int64(len(keys)); ; {
				cur := f.largest.Load()
				if n <= cur || f.largest.CompareAndSwap(cur, n) {
					break
				}
			}
			if f.release != nil {
				f.waiting.Add(int64(len(keys)))
				<-f.release
			}
			time.Sleep(time.Millisecond)
			if f.fail != nil {
				return nil, f.fail
			}
			if slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "bad") }) {
				return nil, errRefused
			}
			out := map[string]string{}
			for _, k := range keys {
				if !strings.HasPrefix(k, "missing") {
					out[k] = "rec-" + k
				}
			}
			return out, nil
		},
		absent:    func(string) error { return errAbsent },
		refused:   func(err error) bool { return errors.Is(err, errRefused) },
		batchable: func(key string) bool { return !strings.HasPrefix(key, "guid") },
		max:       max, inflight: inflight, timeout: 10 * time.Second,
	}
}

var (
	errAbsent  = errors.New("not found")
	errRefused = errors.New("invalid key")
)

func TestBatchReaderCoalescesConcurrentReads(t *testing.T) {
	t.Parallel()
	// The first request is held until every read has arrived, so that how
	// fast the goroutines start does not decide the batching: a fast first
	// read once left most reads to arrive one by one, each alone.
	f := &fakeReads{release: make(chan struct{})}
	r := f.reader(10, 1)
	ctx := context.Background()
	var wg sync.WaitGroup
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("C%03d", i)
			switch i % 50 {
			case 7:
				key = "missing" + key
			case 9:
				key = "bad" + key
			}
			rec, err := r.get(ctx, key)
			switch {
			case strings.HasPrefix(key, "bad"):
				// Its batch is refused: every key is read alone, and only
				// this one fails.
				if !errors.Is(err, errRefused) {
					errs <- fmt.Errorf("%s: %q, %v, want the refusal", key, rec, err)
				}
			case strings.HasPrefix(key, "missing"):
				if !errors.Is(err, errAbsent) {
					errs <- fmt.Errorf("%s: %q, %v, want the absent error", key, rec, err)
				}
			case err != nil || rec != "rec-"+key:
				errs <- fmt.Errorf("%s: %q, %v", key, rec, err)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		arrived := f.waiting.Load() + int64(len(r.queue))
		r.mu.Unlock()
		if arrived == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d reads arrived", arrived, n)
		}
		time.Sleep(time.Millisecond)
	}
	close(f.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	requests := f.one.Load() + f.many.Load()
	t.Logf("%d reads in %d requests (%d batched, largest %d keys)", n, requests, f.many.Load(), f.largest.Load())
	if requests > n/2 {
		t.Errorf("%d requests for %d concurrent reads: not batched", requests, n)
	}
	if f.largest.Load() > 10 {
		t.Errorf("a batch of %d keys, more than the maximum 10", f.largest.Load())
	}
}

func TestBatchReaderSendsALoneReadAtOnceAndGUIDsAlone(t *testing.T) {
	t.Parallel()
	f := &fakeReads{}
	r := f.reader(10, 1)
	for _, key := range []string{"C1", "guid-1", "C2"} {
		rec, err := r.get(context.Background(), key)
		if err != nil || rec != "rec-"+key {
			t.Fatalf("%s: %q, %v", key, rec, err)
		}
	}
	if f.one.Load() != 3 || f.many.Load() != 0 {
		t.Errorf("%d single and %d batched reads, want 3 single ones", f.one.Load(), f.many.Load())
	}
}

func TestBatchReaderFailureReachesEveryReaderOfTheBatch(t *testing.T) {
	t.Parallel()
	f := &fakeReads{fail: errors.New("BC answered 503"), release: make(chan struct{})}
	r := f.reader(10, 1)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			if _, err := r.get(context.Background(), fmt.Sprintf("C%d", i)); err != nil && strings.Contains(err.Error(), "503") {
				failed.Add(1)
			}
		})
	}
	// The first read goes out alone; the rest queue behind it and leave
	// together.
	time.Sleep(50 * time.Millisecond)
	close(f.release)
	wg.Wait()
	if failed.Load() != 8 {
		t.Errorf("%d of 8 readers got the failure", failed.Load())
	}
}

func TestBatchReaderReaderThatGivesUpLeavesTheOthers(t *testing.T) {
	t.Parallel()
	f := &fakeReads{release: make(chan struct{})}
	r := f.reader(10, 1)
	// Occupy the one request slot with a batch that waits.
	blocked := make(chan error, 2)
	go func() { _, err := r.get(context.Background(), "missing-first"); blocked <- err }()
	time.Sleep(20 * time.Millisecond)
	go func() { _, err := r.get(context.Background(), "missing-second"); blocked <- err }()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.get(ctx, "C9"); done <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled reader got %v", err)
	}
	close(f.release)
	for range 2 {
		if err := <-blocked; !errors.Is(err, errAbsent) {
			t.Errorf("a queued reader got %v", err)
		}
	}
	// The cancelled key was dropped from the queue, not read.
	if got := f.one.Load() + f.many.Load(); got > 2 {
		t.Errorf("%d requests, want at most 2", got)
	}
}

// A request serves several jobs, so no one job's context ends it: it ends
// once every job waiting for it gave up (a worker stopping), not after its
// timeout.
func TestBatchReaderRequestEndsWhenEveryReaderGaveUp(t *testing.T) {
	t.Parallel()
	f := &fakeReads{release: make(chan struct{}), ended: make(chan error, 1)}
	r := f.reader(10, 1)
	// Occupy the one request slot, so that the next two leave together.
	first := make(chan error, 1)
	go func() { _, err := r.get(context.Background(), "first"); first <- err }()
	time.Sleep(20 * time.Millisecond)
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	got := make(chan error, 2)
	go func() { _, err := r.get(ctx1, "hangA"); got <- err }()
	go func() { _, err := r.get(ctx2, "hangB"); got <- err }()
	time.Sleep(20 * time.Millisecond)
	close(f.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the batch of hangA and hangB is out
	cancel1()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("the reader that gave up got %v", err)
	}
	select {
	case err := <-f.ended:
		t.Fatalf("the request ended (%v) while a reader still waited for it", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel2()
	select {
	case err := <-f.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the request ended with %v, want its cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request outlived every reader (its timeout is 10s)")
	}
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("the last reader got %v", err)
	}
	if f.many.Load() != 1 {
		t.Errorf("%d batched requests, want the one", f.many.Load())
	}
}

// A request that BC does not answer ends after the reader's timeout, and
// its readers, whose own contexts go on, get that error.
func TestBatchReaderRequestTimesOut(t *testing.T) {
	t.Parallel()
	f := &fakeReads{ended: make(chan error, 1)}
	r := f.reader(10, 1)
	r.timeout = 50 * time.Millisecond
	start := time.Now()
	_, err := r.get(context.Background(), "hang-alone")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the request's deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the read took %v with a 50ms timeout", took)
	}
	if err := <-f.ended; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the request ended with %v", err)
	}
}
