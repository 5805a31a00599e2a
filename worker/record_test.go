package worker_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
)

// jitterTransport delays each request by up to max, so that two jobs'
// requests overtake each other as they would across machines, and calls
// read, when set, with the path and query of each BC read answered.
type jitterTransport struct {
	max  time.Duration
	read func(query string)
}

func (j jitterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(time.Duration(rand.Int64N(int64(j.max))))
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && j.read != nil && r.Method == http.MethodGet {
		q, _ := url.QueryUnescape(r.URL.RawQuery)
		j.read(r.URL.Path + "?" + q)
	}
	return resp, err
}

// DESIGN invariant 2, issue 5's acceptance: two jobs for one record enqueued
// back to back, BC changing the record in between, two workers with
// requests that overtake each other: iPaaS.com ends with the newer state,
// in 100 repetitions (100 records at once).
func TestE2ENewerStateWinsIn100Repetitions(t *testing.T) {
	t.Parallel()
	newerStateWins(t, func(int) (bool, bool) { return false, false })
}

// The same with one job of each pair naming the record by its GUID (as BC
// webhooks do) and the other by its code, in both orders: the two jobs
// take different locks for their BC reads, and must still never write at
// once.
func TestE2EJobsByGUIDAndByCodeNeverWriteAtOnce(t *testing.T) {
	t.Parallel()
	newerStateWins(t, func(i int) (bool, bool) { return i%2 == 0, i%2 == 1 })
}

// newerStateWins runs 100 pairs of jobs for one location each, enqueued
// back to back, BC changing the record once the first has read it, on two
// workers whose requests overtake each other; byGUID(i) tells whether the
// first and the second job of pair i name the record by its GUID rather
// than its code. iPaaS.com must end with the newer state of every record.
func newerStateWins(t *testing.T, byGUID func(i int) (first, second bool)) {
	t.Helper()
	const n = 100
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: n}})
	codes := e.bc.LocationCodes()
	ids := recordIDs(t, e.bc, bctest.SetLocations, codes)
	var mu sync.Mutex
	reads := map[string]chan struct{}{}
	for i, code := range codes {
		reads[code] = make(chan struct{})
		reads[ids[i]] = reads[code]
	}
	read := func(q string) {
		mu.Lock()
		defer mu.Unlock()
		for i, code := range codes {
			ch, ok := reads[code]
			if ok && (strings.Contains(q, "'"+code+"'") || strings.Contains(strings.ToLower(q), strings.ToLower(ids[i]))) {
				close(ch)
				delete(reads, code)
				delete(reads, ids[i])
			}
		}
	}
	hc := &http.Client{Transport: jitterTransport{max: 30 * time.Millisecond, read: read}, Timeout: 10 * time.Second}
	e.startWorker("w1", zerolog.Nop(), hc)
	e.startWorker("w2", zerolog.Nop(), hc)
	key := func(i int, guid bool) string {
		if guid {
			return ids[i]
		}
		return codes[i]
	}
	for i, code := range codes {
		mu.Lock()
		first := reads[code]
		mu.Unlock()
		g1, g2 := byGUID(i)
		e.publish(messages.TypeLocation, key(i, g1))
		// The first job has read the record; BC changes it while that job
		// writes, and the second job reads the newer state.
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Fatalf("the first job for %s never read it", code)
		}
		e.bc.UpdateLocation(code, func(f map[string]any) { f["displayName"] = "newer " + code })
		e.publish(messages.TypeLocation, key(i, g2))
	}
	waitFor(t, 60*time.Second, "every job acked", func() bool { return e.stats.Acked.Load() == 2*n })
	checkNewer(t, e, codes)
}

// The same with snapshots in the jobs (as webhooks and initialization send
// them): the older snapshot may run second, and must not win.
func TestE2ENewerSnapshotWinsIn100Repetitions(t *testing.T) {
	t.Parallel()
	const n = 100
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: n}})
	hc := &http.Client{Transport: jitterTransport{max: 30 * time.Millisecond}, Timeout: 10 * time.Second}
	e.startWorker("w1", zerolog.Nop(), hc)
	e.startWorker("w2", zerolog.Nop(), hc)
	snapshot := func(code string) json.RawMessage {
		rec, ok := e.bc.Record(bctest.SetLocations, code)
		if !ok {
			t.Fatalf("no location %s", code)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var older []messages.Job
	for _, code := range e.bc.LocationCodes() {
		old := snapshot(code)
		e.bc.UpdateLocation(code, func(f map[string]any) { f["displayName"] = "newer " + code })
		older = append(older, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: code, Data: old})
		// The newer snapshot is enqueued first: the older one, second,
		// must not overwrite it.
		if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{
			Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: code, Data: snapshot(code),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range older {
		if _, _, err := messages.Publish(context.Background(), e.b.JS, j); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "every job acked", func() bool { return e.stats.Acked.Load() == 2*n })
	checkNewer(t, e, e.bc.LocationCodes())
}

func checkNewer(t *testing.T, e *e2e, codes []string) {
	t.Helper()
	stale := 0
	for _, code := range codes {
		rec, ok := e.ip.Lookup("location", code)
		if !ok {
			t.Errorf("location %s not at iPaaS.com", code)
			continue
		}
		if rec["description"] != "newer "+code {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d records at iPaaS.com hold the older state", stale, len(codes))
	}
	if n := e.streamMsgs(messages.StreamDLQ); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// A delete named by GUID (BC's deleted notifications carry only the id)
// waits for the lock of the record's code, which a job named by the code
// may hold, before it deactivates the record.
func TestE2EDeleteByGUIDWaitsForTheCodesLock(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 1}})
	ctx := context.Background()
	code := e.bc.LocationCodes()[0]
	guid := recordIDs(t, e.bc, bctest.SetLocations, []string{code})[0]
	e.publish(messages.TypeLocation, code)
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "the record synced", func() bool { return e.stats.Acked.Load() == 1 })

	kv, err := e.b.JS.KeyValue(ctx, broker.BucketRecords)
	if err != nil {
		t.Fatal(err)
	}
	held, err := worker.NewRecordLocks(e.b.JS, kv, time.Minute).Lock(ctx, "contoso", messages.TypeLocation, code, "a job named by the code")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelete, Key: guid}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, ok := e.ip.Lookup("location", code); !ok || e.stats.Acked.Load() != 1 {
		t.Fatal("the delete ran while a job named by the code held the record's lock")
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the delete acked", func() bool { return e.stats.Acked.Load() == 2 })
	if _, ok := e.ip.Lookup("location", code); ok {
		t.Error("location still active after its delete job")
	}
}
