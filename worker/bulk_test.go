package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// progress reads a bulk job's checkpoint.
func (e *e2e) progress(jobID string) worker.Progress {
	e.t.Helper()
	kv, err := e.b.JS.KeyValue(context.Background(), broker.BucketProgress)
	if err != nil {
		return worker.Progress{}
	}
	entry, err := kv.Get(context.Background(), worker.ProgressKey("contoso", jobID))
	if err != nil {
		return worker.Progress{}
	}
	var p worker.Progress
	if err := json.Unmarshal(entry.Value(), &p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *e2e) bulk(op messages.Op, t messages.Type) string {
	e.t.Helper()
	_, job, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: t, Op: op})
	if err != nil {
		e.t.Fatal(err)
	}
	return job.ID
}

// An initialize job reads each BC page once (the records travel as
// snapshots, with no second read each), and a worker stopped half way is
// resumed by another at its checkpoint: every record arrives exactly once.
func TestE2EInitializeResumesAtItsCheckpoint(t *testing.T) {
	t.Parallel()
	const n, pageSize = 1000, 7
	const pages = (n + pageSize - 1) / pageSize
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: n}})
	e.bc.SetLatency(40 * time.Millisecond)
	id := e.bulk(messages.OpInitialize, messages.TypeLocation)
	stop := e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 30*time.Second, "a third of the pages read", func() bool { return e.progress(id).Pages >= pages/3 })
	stop()
	half := e.progress(id)
	if half.Done {
		t.Fatal("the first worker finished the initialization: the test proves nothing")
	}
	e.bc.SetLatency(0)
	e.startWorker("w2", zerolog.Nop(), nil)
	waitFor(t, 60*time.Second, "every location at iPaaS.com", func() bool { return e.ip.Count("location") == n })
	waitFor(t, 20*time.Second, "the job stream empty", func() bool { return e.streamMsgs(messages.StreamJobs) == 0 })
	done := e.progress(id)
	reads := e.bc.Stats().DataRequests["locations"]
	t.Logf("stopped after %d of %d pages; %d location reads in all; %d jobs enqueued", half.Pages, pages, reads, done.Enqueued)
	if !done.Done || done.Pages != pages {
		t.Errorf("progress %+v, want done after %d pages", done, pages)
	}
	// The initialize job and one job per record, each stored once: the
	// last record job's sequence is the stream's last.
	if s, err := e.b.JS.Stream(context.Background(), messages.StreamJobs); err != nil {
		t.Fatal(err)
	} else if last := s.CachedInfo().State.LastSeq; done.LastSeq != last || last != n+1 {
		t.Errorf("progress names %d as its last job's sequence; the stream's last is %d, want %d", done.LastSeq, last, n+1)
	}
	// The page being read when the first worker stopped may be read again;
	// no page before it is.
	if reads < pages || reads > pages+1 {
		t.Errorf("%d location reads for %d pages", reads, pages)
	}
	if n := e.streamMsgs(messages.StreamDLQ); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	if got := e.ip.Links("location"); got != n {
		t.Errorf("%d location links at iPaaS.com, want %d", got, n)
	}
}

// A delta job syncs the records changed after the watermark, once, and
// moves the watermark; the next delta finds nothing.
func TestE2EDeltaSyncsTheChangesOnce(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 30}})
	// No overlap: the next test shows what it adds.
	e.tune = func(o *worker.Options) { o.DeltaOverlap = time.Nanosecond }
	e.startWorker("w1", zerolog.Nop(), nil)
	e.bulk(messages.OpDelta, messages.TypeLocation) // no watermark yet: everything
	waitFor(t, 30*time.Second, "the first delta", func() bool { return e.ip.Count("location") == 30 })
	waitFor(t, 10*time.Second, "the job stream empty", func() bool { return e.streamMsgs(messages.StreamJobs) == 0 })
	time.Sleep(5 * time.Millisecond) // changes land in a later millisecond than the watermark
	codes := e.bc.LocationCodes()
	for _, c := range codes[:3] {
		e.bc.UpdateLocation(c, func(f map[string]any) { f["displayName"] = "changed " + c })
	}
	before := e.ip.Stats()
	acked := e.stats.Acked.Load()
	e.bulk(messages.OpDelta, messages.TypeLocation)
	waitFor(t, 30*time.Second, "the second delta's jobs", func() bool { return e.stats.Acked.Load() == acked+4 })
	for _, c := range codes[:3] {
		if rec, _ := e.ip.Lookup("location", c); rec["description"] != "changed "+c {
			t.Errorf("%s not updated: %v", c, rec["description"])
		}
	}
	after := e.ip.Stats()
	if w := after.Updates - before.Updates; w != 3 {
		t.Errorf("%d iPaaS.com writes for 3 changed records", w)
	}
	acked = e.stats.Acked.Load()
	e.bulk(messages.OpDelta, messages.TypeLocation)
	waitFor(t, 30*time.Second, "the third delta", func() bool { return e.stats.Acked.Load() == acked+1 })
	if w := e.ip.Stats().Updates - after.Updates; w != 0 {
		t.Errorf("%d iPaaS.com writes when nothing changed", w)
	}
}

// By default a delta leaves the watermark DeltaOverlap behind its start, so
// the next delta within that time reads the same changes again: they are
// written again with the same state, never duplicated (one link per
// record), and nothing is dead-lettered.
func TestE2EDeltaReadsTheOverlapAgain(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 10}})
	e.startWorker("w1", zerolog.Nop(), nil)
	delta := func(what string, records int) {
		t.Helper()
		acked := e.stats.Acked.Load()
		e.bulk(messages.OpDelta, messages.TypeLocation)
		waitFor(t, 30*time.Second, what, func() bool { return e.stats.Acked.Load() == acked+1+int64(records) })
		time.Sleep(100 * time.Millisecond)
		if n := e.stats.Acked.Load() - acked - 1; n != int64(records) {
			t.Fatalf("%s: %d record jobs, want %d", what, n, records)
		}
	}
	delta("the first delta, of every location", 10)
	codes := e.bc.LocationCodes()
	for _, c := range codes[:3] {
		e.bc.UpdateLocation(c, func(f map[string]any) { f["displayName"] = "changed " + c })
	}
	delta("the delta of the changes", 3)
	before := e.ip.Stats()
	delta("the delta within the overlap", 3)
	if w := e.ip.Stats().Updates - before.Updates; w != 3 {
		t.Errorf("%d iPaaS.com updates for the 3 records the overlap read again, want 3", w)
	}
	for _, c := range codes[:3] {
		if rec, _ := e.ip.Lookup("location", c); rec["description"] != "changed "+c {
			t.Errorf("%s: %v", c, rec["description"])
		}
	}
	if got := e.ip.Links("location"); got != 10 {
		t.Errorf("%d location links at iPaaS.com, want 10: the overlap duplicated records", got)
	}
	if n := e.streamMsgs(messages.StreamDLQ); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// A checkpoint whose next-page link cannot be followed (unreadable, or on
// another host after api_url changed) fails the same way on every delivery:
// the bulk job starts over from the first page instead of burning its
// deliveries as a transient failure until it is dead-lettered.
func TestBulkStartsOverFromACheckpointItCannotResume(t *testing.T) {
	t.Parallel()
	for name, next := range map[string]string{
		"unreadable":   "::not a url",
		"foreign host": "https://api.businesscentral.dynamics.com/v2.0/t/Production/api/v2.0/companies(00000000-0000-4000-8000-000000000001)/locations?$skiptoken=x",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newDeltaRig(t, 5, 2)
			ctx := context.Background()
			job := &messages.Job{ID: "init-x", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpInitialize}
			cp := `{"job_id":"init-x","type":"location","op":"initialize","next":"` + next + `","pages":1,"enqueued":2}`
			if _, err := r.bulk.Progress.Put(ctx, worker.ProgressKey("contoso", job.ID), []byte(cp)); err != nil {
				t.Fatal(err)
			}
			if err := r.bulk.Handle(ctx, job); err != nil {
				t.Fatalf("Handle = %v (class %s), want the bulk started over", err, worker.Classify(err))
			}
			r.rec.mu.Lock()
			keys := slices.Clone(r.rec.keys)
			r.rec.mu.Unlock()
			slices.Sort(keys)
			if want := r.bc.LocationCodes(); !slices.Equal(keys, want) {
				t.Errorf("published %v, want every location %v", keys, want)
			}
		})
	}
}

// failAfterPage1 refuses (transiently) every job but those of page 1, as a
// worker that dies after checkpointing page 1.
type failAfterPage1 struct {
	messages.Publisher
	page1 map[string]bool
	on    bool
}

func (f *failAfterPage1) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if job, err := messages.Decode(msg.Data); err == nil && f.on && !f.page1[job.Key] {
		return nil, errors.New("worker killed")
	}
	return f.Publisher.PublishMsg(ctx, msg, opts...)
}

// A bulk job whose checkpoint cannot be resumed (api_url changed) starts over
// from the first page; the pages it had read are read again, so their
// skipped records (and enqueued jobs) must not be counted twice: bcsync init
// prints Progress.Skipped/SkippedKeys as "N BC records skipped".
func TestBulkStartOverDoesNotCountSkippedRecordsTwice(t *testing.T) {
	t.Parallel()
	r := newDeltaRig(t, 6, 2)
	ctx := context.Background()
	// Page 1's records.
	var page1 []string
	errStop := errors.New("stop")
	_ = r.bulk.BC.ListLocations(ctx, func(ls []bcclient.Location) error {
		for _, l := range ls {
			page1 = append(page1, l.Code)
		}
		return errStop
	})
	if len(page1) != 2 {
		t.Fatalf("page 1 = %v", page1)
	}
	// One record of page 1 cannot travel as a job (snapshot too large).
	if !r.bc.UpdateLocation(page1[0], func(f map[string]any) { f["displayName"] = strings.Repeat("x", messages.MaxDataBytes) }) {
		t.Fatal("no such location")
	}
	fail := &failAfterPage1{Publisher: r.bulk.JS, page1: map[string]bool{page1[0]: true, page1[1]: true}, on: true}
	r.bulk.JS = fail
	job := &messages.Job{ID: "init-skip", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpInitialize}
	if err := r.bulk.Handle(ctx, job); err == nil {
		t.Fatal("the first delivery did not stop after page 1")
	}
	// The worker dies; api_url changes before the job is redelivered: the
	// checkpoint's next link is on another host now.
	key := worker.ProgressKey("contoso", job.ID)
	e, err := r.bulk.Progress.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var p worker.Progress
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Pages != 1 || p.Skipped != 1 {
		t.Fatalf("checkpoint after page 1: %+v", p)
	}
	p.Next = strings.Replace(p.Next, "http://127.0.0.1", "http://127.0.0.2", 1)
	v, _ := json.Marshal(p)
	if _, err := r.bulk.Progress.Put(ctx, key, v); err != nil {
		t.Fatal(err)
	}
	fail.on = false
	if err := r.bulk.Handle(ctx, job); err != nil {
		t.Fatalf("second delivery: %v", err)
	}
	e, err = r.bulk.Progress.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	p = worker.Progress{}
	_ = json.Unmarshal(e.Value(), &p)
	if p.Skipped != 1 || len(p.SkippedKeys) != 1 {
		t.Errorf("BC has 1 record that cannot travel as a job; the progress reports skipped=%d, skipped_keys=%q", p.Skipped, p.SkippedKeys)
	}
	if p.Enqueued != 5 {
		t.Errorf("BC has 5 locations that travel as jobs; the progress reports enqueued=%d (pages=%d)", p.Enqueued, p.Pages)
	}
}
