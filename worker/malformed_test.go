package worker_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/bcsync/bcsync/worker/dlq"
	"github.com/nats-io/nats.go"
)

// Every kind of malformed job is dead-lettered at once, byte for byte, with
// a reason of its own that names what is wrong; the handler never sees one.
func TestLoopEveryMalformationHasItsOwnReason(t *testing.T) {
	t.Parallel()
	const ok = `"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert"`
	big := `{"x":"` + strings.Repeat("a", messages.MaxDataBytes) + `"}`
	cases := []struct {
		name, subject, body, want string
	}{
		{"not JSON", "bcsync.jobs.contoso.location.M01", `not json`, "JSON"},
		{"trailing data", "bcsync.jobs.contoso.location.M02", `{` + ok + `,"key":"M02"} {}`, "JSON"},
		{"unknown field", "bcsync.jobs.contoso.location.M03", `{` + ok + `,"key":"M03","colour":"red"}`, "colour"},
		{"unknown version", "bcsync.jobs.contoso.location.M04", `{"v":9,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"M04"}`, "version"},
		{"unknown type", "bcsync.jobs.contoso.vendor.M05", `{"v":1,"id":"j1","subscription":"contoso","type":"vendor","op":"upsert","key":"M05"}`, "type"},
		{"unknown op", "bcsync.jobs.contoso.location.M06", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"merge","key":"M06"}`, "op"},
		{"missing id", "bcsync.jobs.contoso.location.M07", `{"v":1,"subscription":"contoso","type":"location","op":"upsert","key":"M07"}`, "id"},
		{"missing key", "bcsync.jobs.contoso.location.M08", `{` + ok + `}`, "key"},
		{"lower-case key", "bcsync.jobs.contoso.location.m09", `{` + ok + `,"key":"m09"}`, "upper-case"},
		{"bad subscription", "bcsync.jobs.contoso.location.M10", `{"v":1,"id":"j1","subscription":"Contoso","type":"location","op":"upsert","key":"M10"}`, "subscription"},
		{"data not an object", "bcsync.jobs.contoso.location.M11", `{` + ok + `,"key":"M11","data":[1,2]}`, "data"},
		{"data too large", "bcsync.jobs.contoso.location.M12", `{` + ok + `,"key":"M12","data":` + big + `}`, "too large"},
		{"subject mismatch", "bcsync.jobs.contoso.location.M13", `{` + ok + `,"key":"OTHER"}`, "subject"},
		{"GUID for a category", "bcsync.jobs.contoso.customer_category.0f8fad5b-d9cb-469f-a165-70867728950e",
			`{"v":1,"id":"j1","subscription":"contoso","type":"customer_category","op":"upsert","key":"0f8fad5b-d9cb-469f-a165-70867728950e"}`, "price group code"},
	}
	e := newLoopEnv(t, 5)
	for _, c := range cases {
		m := nats.NewMsg(c.subject)
		m.Data = []byte(c.body)
		if _, err := e.b.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	var calls atomic.Int32
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{Stats: stats, Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
		calls.Add(1)
		return nil
	})})
	waitFor(t, 20*time.Second, "every malformed job dead-lettered", func() bool { return stats.DeadLettered.Load() == int64(len(cases)) })
	if calls.Load() != 0 {
		t.Errorf("the handler ran %d times for malformed jobs", calls.Load())
	}
	bySubject := map[string]*messages.DeadLetter{}
	for _, dl := range readDLQ(t, e.b.JS, len(cases)) {
		bySubject[dl.Subject] = dl
	}
	seen := map[string]string{}
	for _, c := range cases {
		dl, found := bySubject[c.subject]
		if !found {
			t.Errorf("%s: no dead letter", c.name)
			continue
		}
		if string(dl.Body) != c.body {
			t.Errorf("%s: the dead letter's body is not the original", c.name)
		}
		if dl.ErrorClass != "permanent" {
			t.Errorf("%s: class %q, want permanent", c.name, dl.ErrorClass)
		}
		if !strings.Contains(dl.Reason, c.want) {
			t.Errorf("%s: reason %q does not mention %q", c.name, dl.Reason, c.want)
		}
		if other, dup := seen[dl.Reason]; dup {
			t.Errorf("%s and %s share the reason %q", c.name, other, dl.Reason)
		}
		seen[dl.Reason] = c.name
	}
}

// A replay killed between its publish and its delete leaves the letter in
// both streams; the worker that runs the replayed job deletes the letter,
// but not another job's letter found at that sequence (the DLQ stream made
// anew since the replay).
func TestLoopReplayedJobDeletesItsLeftoverLetter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		letterKey string // the job the letter at the replayed sequence holds
		left      uint64 // letters left
	}{
		{"its own letter", "L0000", 0},
		{"another job's letter", "L0001", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newLoopEnv(t, 5)
			ctx := context.Background()
			jobs := map[string]*nats.Msg{}
			job := func(key string) *nats.Msg {
				if jobs[key] == nil {
					msg, _, err := messages.NewMsg(messages.Job{ID: "job-" + key, Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: key})
					if err != nil {
						t.Fatal(err)
					}
					jobs[key] = msg
				}
				return jobs[key]
			}
			held := job(tc.letterKey)
			body, err := json.Marshal(messages.DeadLetter{Subject: held.Subject, Body: held.Data})
			if err != nil {
				t.Fatal(err)
			}
			letter := nats.NewMsg(messages.DLQSubject("contoso", messages.TypeLocation))
			letter.Data = body
			ack, err := e.b.JS.PublishMsg(ctx, letter)
			if err != nil {
				t.Fatal(err)
			}
			msg := job("L0000")
			msg.Header.Set(dlq.HeaderReplayOf, strconv.FormatUint(ack.Sequence, 10))
			if _, err := e.b.JS.PublishMsg(ctx, msg); err != nil {
				t.Fatal(err)
			}
			stats := &worker.Stats{}
			e.run(t, worker.LoopConfig{Stats: stats, Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil })})
			waitFor(t, 10*time.Second, "the replayed job acked", func() bool { return stats.Acked.Load() == 1 })
			if n := e.streamMsgs(t, messages.StreamDLQ); n != tc.left {
				t.Errorf("%d letters in the DLQ after the replayed job ran, want %d", n, tc.left)
			}
		})
	}
}

// A handler that panics (a bcsync bug, or a BC answer it did not expect)
// fails its job for good, and the worker goes on with the others: the
// panic once took down the whole process, then the next worker's.
func TestLoopSurvivesAPanickingHandler(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 2)
	stats := &worker.Stats{}
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats,
		Handler: worker.HandlerFunc(func(_ context.Context, j *messages.Job) error {
			if j.Key == "L0000" {
				var m map[string]int
				m["boom"] = 1 // panics: assignment to entry in nil map
			}
			return nil
		})})
	waitFor(t, 10*time.Second, "the other job acked and the panicking one dead-lettered", func() bool {
		return stats.Acked.Load() == 1 && stats.DeadLettered.Load() == 1
	})
	dl := readDLQ(t, e.b.JS, 1)[0]
	if dl.Key != "L0000" || dl.ErrorClass != "permanent" || !strings.Contains(dl.Reason, "panicked") || !strings.Contains(dl.Reason, "nil map") {
		t.Errorf("letter %+v, want L0000 dead-lettered for good with the panic", dl)
	}
}
