package worker_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// deltaClock is a settable clock for the BC fake and the bulk jobs.
type deltaClock struct{ ns atomic.Int64 }

func (c *deltaClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *deltaClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *deltaClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// publishRecorder records the keys of the record jobs published, and calls
// onPublish (if set) before each publish.
type publishRecorder struct {
	messages.Publisher
	mu        sync.Mutex
	keys      []string
	onPublish func(job *messages.Job)
}

func (r *publishRecorder) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	job, err := messages.Decode(msg.Data)
	if err == nil {
		r.mu.Lock()
		r.keys = append(r.keys, job.Key)
		hook := r.onPublish
		r.mu.Unlock()
		if hook != nil {
			hook(job)
		}
	}
	return r.Publisher.PublishMsg(ctx, msg, opts...)
}

func (r *publishRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.keys
	r.keys = nil
	return out
}

type deltaRig struct {
	bc    *bctest.Server
	clock *deltaClock
	rec   *publishRecorder
	bulk  *worker.Bulk
	n     int
}

func newDeltaRig(t *testing.T, locations, pageSize int) *deltaRig {
	t.Helper()
	ctx := context.Background()
	clock := &deltaClock{}
	clock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	bc := bctest.NewServer(bctest.Options{Locations: locations, Now: clock.Now})
	t.Cleanup(bc.Close)
	b := brokertest.New(t)
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	kv := brokertest.KV(t, b, broker.BucketProgress)
	c, err := bcclient.New(bcclient.Config{
		APIURL: bc.URL(), TenantID: bc.TenantID(), Environment: bc.Environment(), CompanyName: bc.CompanyName(),
		TokenSource: bcclient.NewTokenSource(ctx, bcclient.Credentials{
			AuthorityURL: bc.URL(), TenantID: bc.TenantID(), ClientID: bc.ClientID(), ClientSecret: bc.ClientSecret(),
		}),
		PageSize: pageSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &publishRecorder{Publisher: b.JS}
	return &deltaRig{bc: bc, clock: clock, rec: rec,
		bulk: &worker.Bulk{BC: c, JS: rec, Progress: kv, Subscription: "contoso", Now: clock.Now}}
}

// delta runs one delta job of locations to its end and returns the keys it
// published.
func (r *deltaRig) delta(t *testing.T) []string {
	t.Helper()
	r.n++
	job := &messages.Job{ID: "delta-" + string(rune('a'+r.n)), Subscription: "contoso",
		Type: messages.TypeLocation, Op: messages.OpDelta, Source: "poller"}
	if err := r.bulk.Handle(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	return r.rec.take()
}

// settle runs a first delta, which lists every record (stamped at the
// start), then, past DeltaOverlap, a second one, after which the watermark
// is the records' stamp: the deltas after it only read what changes.
func (r *deltaRig) settle(t *testing.T, n int) {
	t.Helper()
	if got := r.delta(t); len(got) != n {
		t.Fatalf("first delta published %v, want every location", got)
	}
	r.clock.Add(10 * time.Minute)
	r.delta(t)
	r.clock.Add(10 * time.Minute)
	if got := r.delta(t); len(got) != 0 {
		t.Fatalf("a delta with nothing changed published %v", got)
	}
}

// seenLater runs three more deltas, a second apart, and fails unless one
// of them published code: a change the watermark skipped is lost for good.
func (r *deltaRig) seenLater(t *testing.T, code string) {
	t.Helper()
	var seen []string
	for range 3 {
		r.clock.Add(time.Second)
		seen = append(seen, r.delta(t)...)
	}
	if !hasKey(seen, code) {
		rec, _ := r.bc.Record(bctest.SetLocations, code)
		t.Errorf("location %s, changed at %v, was never published by the deltas after it (published %v): lost for good",
			code, rec["lastModifiedDateTime"], seen)
	}
}

func hasKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// A record modified in the same millisecond as the newest record a delta
// read, but after that read (another BC transaction committed in the same
// millisecond), was never published: the watermark became that
// millisecond and the next delta asked for "lastModifiedDateTime gt" it.
// The watermark stays DeltaOverlap behind the delta's start now.
func TestDeltaSeesARecordModifiedInTheWatermarksMillisecond(t *testing.T) {
	t.Parallel()
	r := newDeltaRig(t, 5, 100)
	codes := r.bc.LocationCodes()
	r.settle(t, 5)
	// T: A changes, the poll reads it.
	r.clock.Add(time.Second)
	r.bc.UpdateLocation(codes[0], func(f map[string]any) { f["displayName"] = "A changed" })
	if got := r.delta(t); !hasKey(got, codes[0]) {
		t.Fatalf("second delta published %v, want %s in it", got, codes[0])
	}
	// Still in millisecond T, B changes after that read.
	r.bc.UpdateLocation(codes[1], func(f map[string]any) { f["displayName"] = "B changed" })
	r.seenLater(t, codes[1])
	// Past the overlap, what did not change is not read again.
	r.clock.Add(10 * time.Minute)
	r.delta(t)
	r.clock.Add(10 * time.Minute)
	if got := r.delta(t); len(got) != 0 {
		t.Errorf("a delta long after the last change published %v", got)
	}
}

// A record changed while a delta pages, at a position the listing has
// already passed, is left for the next delta; but the watermark moved to
// the newest record read on a later page, which is newer than that change,
// and the next delta's "gt" skipped it for good. The watermark stays
// DeltaOverlap behind the delta's start now.
func TestDeltaSeesAChangeBehindItsPage(t *testing.T) {
	t.Parallel()
	r := newDeltaRig(t, 6, 1)
	codes := r.bc.LocationCodes()
	r.settle(t, 6)
	r.clock.Add(time.Second)
	r.bc.UpdateLocation(codes[0], func(f map[string]any) { f["displayName"] = "0 changed" })
	r.bc.UpdateLocation(codes[2], func(f map[string]any) { f["displayName"] = "2 changed" })
	// While the delta publishes its first page (codes[0]), codes[1] (before
	// the next page's position) changes, then codes[3] (after it).
	var once sync.Once
	r.rec.onPublish = func(job *messages.Job) {
		if job.Key != codes[0] {
			return
		}
		once.Do(func() {
			r.clock.Add(time.Second)
			r.bc.UpdateLocation(codes[1], func(f map[string]any) { f["displayName"] = "1 changed" })
			r.clock.Add(time.Second)
			r.bc.UpdateLocation(codes[3], func(f map[string]any) { f["displayName"] = "3 changed" })
		})
	}
	got := r.delta(t)
	r.rec.onPublish = nil
	if hasKey(got, codes[1]) || !hasKey(got, codes[3]) {
		t.Fatalf("the delta during the changes published %v: want %s (read after the change) but not %s (behind its page), or the test proves nothing",
			got, codes[3], codes[1])
	}
	r.seenLater(t, codes[1])
}

// A collection notification of BC's items makes a product delta job: it
// pages BC's items like the other types' deltas (it was dead-lettered:
// "cannot be initialized by this worker version").
func TestDeltaOfProducts(t *testing.T) {
	t.Parallel()
	r := newDeltaRig(t, 1, 7)
	job := &messages.Job{ID: "delta-items", Subscription: "contoso", Type: messages.TypeProduct, Op: messages.OpDelta}
	if err := r.bulk.Handle(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	r.rec.mu.Lock()
	keys := slices.Clone(r.rec.keys)
	r.rec.mu.Unlock()
	slices.Sort(keys)
	if want := r.bc.ItemNumbers(); len(want) == 0 || !slices.Equal(keys, want) {
		t.Errorf("published %v, want every item %v", keys, want)
	}
}
