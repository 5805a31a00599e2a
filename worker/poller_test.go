package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Locations send no webhooks: the poller finds their changes. With two
// workers, one polls per interval, and a changed record is written once.
func TestE2EPollerSyncsChangesOnceWithTwoWorkers(t *testing.T) {
	t.Parallel()
	const interval = 2 * time.Second
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 20}})
	e.cfg.Subscriptions[0].Poll.Interval = interval // below the configurable 10s, for the test
	var pollers []map[string]*worker.Poller
	e.tune = func(o *worker.Options) {
		o.Pollers = map[string]*worker.Poller{}
		pollers = append(pollers, o.Pollers)
		// No overlap: each delta would read the last minutes again (see
		// TestE2EDeltaReadsTheOverlapAgain), and this counts writes.
		o.DeltaOverlap = time.Nanosecond
	}
	start := time.Now()
	e.startWorker("w1", zerolog.Nop(), nil)
	e.startWorker("w2", zerolog.Nop(), nil)
	// No watermark yet: the first poll copies every location.
	waitFor(t, 20*time.Second, "the first poll's locations", func() bool { return e.ip.Count("location") == 20 })
	time.Sleep(5 * time.Millisecond)
	codes := e.bc.LocationCodes()
	for _, c := range codes[:3] {
		e.bc.UpdateLocation(c, func(f map[string]any) { f["displayName"] = "polled " + c })
	}
	before := e.ip.Stats().Updates
	waitFor(t, 20*time.Second, "the changes synced", func() bool {
		for _, c := range codes[:3] {
			if rec, _ := e.ip.Lookup("location", c); rec["description"] != "polled "+c {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * interval) // more polls: nothing changed
	if n := e.ip.Stats().Updates - before; n != 3 {
		t.Errorf("%d iPaaS.com updates for 3 changed locations", n)
	}
	elapsed := time.Since(start)
	var polls, pollingWorkers int64
	for _, m := range pollers {
		n := m["contoso"].Polls.Load()
		polls += n
		if n > 0 {
			pollingWorkers++
		}
	}
	// One poll per interval for the fleet (the lease expires a moment after
	// the interval); two workers polling each interval would double it.
	if most := int64(elapsed/interval) + 1; polls > most || polls < 2 {
		t.Errorf("%d polls in %v with a %v interval, want 2..%d", polls, elapsed.Round(time.Millisecond), interval, most)
	}
	t.Logf("%d polls in %v by %d of 2 workers", polls, elapsed.Round(time.Millisecond), pollingWorkers)
	if n := e.streamMsgs("BCSYNC_DLQ"); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// failFirst refuses its first fail publishes, as JetStream does when it
// has no quorum or storage for a moment.
type failFirst struct {
	messages.Publisher
	fail  int32
	calls atomic.Int32
}

func (f *failFirst) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if f.calls.Add(1) <= f.fail {
		return nil, errors.New("nats: no responders available for request")
	}
	return f.Publisher.PublishMsg(ctx, msg, opts...)
}

// failingPoll is a poller, on a fresh broker, whose first publish fails.
type failingPoll struct {
	b     *broker.Broker
	p     *worker.Poller
	js    *failFirst
	logs  syncBuffer
	start time.Time
	stop  func() // stops the poller and waits for it
}

// startFailingPoll runs the poller with its progress bucket wrapped by wrap.
func startFailingPoll(t *testing.T, interval time.Duration, wrap func(jetstream.KeyValue) jetstream.KeyValue) *failingPoll {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := brokertest.New(t)
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &failingPoll{b: b, js: &failFirst{Publisher: b.JS, fail: 1}}
	f.p = &worker.Poller{JS: f.js, KV: wrap(brokertest.KV(t, b, broker.BucketProgress)), Subscription: "contoso",
		Types: []messages.Type{messages.TypeLocation}, Interval: interval, WorkerID: "w1", Log: zerolog.New(&f.logs)}
	f.start = time.Now()
	done := make(chan struct{})
	go func() { defer close(done); f.p.Run(ctx) }()
	f.stop = func() { cancel(); <-done }
	t.Cleanup(f.stop)
	return f
}

// A poll whose publish failed gives its lease back, so the next check polls
// again; keeping the lease put the changes off by a whole interval.
func TestPollerRetriesAFailedPublishAtTheNextCheck(t *testing.T) {
	t.Parallel()
	const interval = 8 * time.Second // checks every 1-3 s
	f := startFailingPoll(t, interval, func(kv jetstream.KeyValue) jetstream.KeyValue { return kv })
	waitFor(t, interval, "a poll after the failed one", func() bool { return f.p.Polls.Load() == 1 })
	if took := time.Since(f.start); took > interval*3/4 {
		t.Errorf("the poll succeeded %v after the failed one, with a lease of %v: the lease was kept", took, interval)
	}
	f.stop()
	if f.js.calls.Load() != 2 {
		t.Errorf("%d publishes, want the failed one and its retry", f.js.calls.Load())
	}
	info, err := f.b.JS.Stream(context.Background(), messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("%d jobs queued, want the one delta job", n)
	}
	if !strings.Contains(f.logs.String(), "poll failed") {
		t.Errorf("the failed poll was not logged: %q", f.logs.String())
	}
}

// noDeletes is a progress bucket whose deletes fail.
type noDeletes struct{ jetstream.KeyValue }

func (noDeletes) Delete(context.Context, string, ...jetstream.KVDeleteOpt) error {
	return nats.ErrTimeout
}

// When the lease cannot be given back either, the failure says the poll
// waits for the lease to expire, and the next worker to take it polls.
func TestPollerSaysWhenItsLeaseStays(t *testing.T) {
	t.Parallel()
	const interval = 2 * time.Second // a lease of 2 s, checks every 0.25-0.75 s
	f := startFailingPoll(t, interval, func(kv jetstream.KeyValue) jetstream.KeyValue { return noDeletes{kv} })
	waitFor(t, 3*interval, "a poll once the lease expired", func() bool { return f.p.Polls.Load() == 1 })
	if took := time.Since(f.start); took < interval {
		t.Errorf("polled again %v after the failure, before the lease of %v expired", took, interval)
	}
	f.stop()
	if !strings.Contains(f.logs.String(), "the poll lease stays until it expires") {
		t.Errorf("the failure does not say the lease stays: %q", f.logs.String())
	}
}

// A delta (or initialization) of a type still queued, e.g. held through an
// outage, is not joined by another at the next poll: each would read the
// same changes again once it ran, and with no watermark yet, every record.
func TestPollerAddsNoDeltaWhileOneIsQueued(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	if _, _, err := messages.Publish(ctx, b.JS, messages.Job{ID: "earlier", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelta, Source: "poller"}); err != nil {
		t.Fatal(err)
	}
	p := &worker.Poller{JS: b.JS, KV: brokertest.KV(t, b, broker.BucketProgress), Subscription: "contoso",
		Types: []messages.Type{messages.TypeLocation, messages.TypeShippingMethod}, Interval: 2 * time.Second, WorkerID: "w1", Log: zerolog.Nop()}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 10*time.Second, "a poll", func() bool { return p.Polls.Load() >= 1 })
	s, err := b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(messages.JobsPrefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	loc, ship := messages.JobSubject("contoso", messages.TypeLocation, ""), messages.JobSubject("contoso", messages.TypeShippingMethod, "")
	if got := info.State.Subjects; got[loc] != 1 || got[ship] != 1 {
		t.Errorf("jobs by subject %v: want the one queued location delta, and one shipping method delta", got)
	}
}
