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
	"github.com/bcsync/bcsync/messages"
	"github.com/rs/zerolog"
)

// jitterTransport delays each request by up to max, so that two jobs'
// requests overtake each other as they would across machines, and calls
// read, when set, with the query of each BC read answered.
type jitterTransport struct {
	max  time.Duration
	read func(query string)
}

func (j jitterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(time.Duration(rand.Int64N(int64(j.max))))
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && j.read != nil && r.Method == http.MethodGet {
		q, _ := url.QueryUnescape(r.URL.RawQuery)
		j.read(q)
	}
	return resp, err
}

// DESIGN invariant 2, issue 5's acceptance: two jobs for one record enqueued
// back to back, BC changing the record in between, two workers with
// requests that overtake each other: iPaaS.com ends with the newer state,
// in 100 repetitions (100 records at once).
func TestE2ENewerStateWinsIn100Repetitions(t *testing.T) {
	t.Parallel()
	const n = 100
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: n}})
	var mu sync.Mutex
	reads := map[string]chan struct{}{}
	for _, code := range e.bc.LocationCodes() {
		reads[code] = make(chan struct{})
	}
	read := func(q string) {
		mu.Lock()
		defer mu.Unlock()
		for code, ch := range reads {
			if strings.Contains(q, "'"+code+"'") {
				close(ch)
				delete(reads, code)
			}
		}
	}
	hc := &http.Client{Transport: jitterTransport{max: 30 * time.Millisecond, read: read}, Timeout: 10 * time.Second}
	e.startWorker("w1", zerolog.Nop(), hc)
	e.startWorker("w2", zerolog.Nop(), hc)
	for _, code := range e.bc.LocationCodes() {
		mu.Lock()
		first := reads[code]
		mu.Unlock()
		e.publish(messages.TypeLocation, code)
		// The first job has read the record; BC changes it while that job
		// writes, and the second job reads the newer state.
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Fatalf("the first job for %s never read it", code)
		}
		e.bc.UpdateLocation(code, func(f map[string]any) { f["displayName"] = "newer " + code })
		e.publish(messages.TypeLocation, code)
	}
	waitFor(t, 60*time.Second, "every job acked", func() bool { return e.stats.Acked.Load() == 2*n })
	checkNewer(t, e, e.bc.LocationCodes())
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
