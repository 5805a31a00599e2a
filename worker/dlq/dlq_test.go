package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func putLetter(t *testing.T, js jetstream.JetStream, d messages.DeadLetter) uint64 {
	t.Helper()
	body, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(messages.DLQSubject(d.Subscription, d.Type))
	m.Data = body
	m.Header.Set(messages.HeaderMsgID, d.MsgID())
	m.Header.Set(messages.HeaderDLQClass, d.ErrorClass)
	m.Header.Set(messages.HeaderDLQSubject, d.Subject)
	ack, err := js.PublishMsg(context.Background(), m, jetstream.WithExpectStream(messages.StreamDLQ))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func letter(seq uint64, sub string, typ messages.Type, key, class, reason string) messages.DeadLetter {
	return messages.DeadLetter{
		Subject:      messages.JobSubject(sub, typ, key),
		Headers:      map[string][]string{messages.HeaderMsgID: {"job-" + key}, "X-Trace": {"t-" + key}, "Nats-Expected-Stream": {"OLD"}},
		Body:         []byte(`{"v":1,"id":"job-` + key + `","subscription":"` + sub + `","type":"` + string(typ) + `","op":"upsert","key":"` + key + `"}`),
		Stream:       messages.StreamJobs,
		StreamSeq:    seq,
		Subscription: sub, Type: typ, Key: key, JobID: "job-" + key,
		ErrorClass: class, Reason: reason, Attempts: 3,
		FirstFailure: time.Now().UTC(), LastFailure: time.Now().UTC(), WorkerID: "w1",
	}
}

type fixture struct {
	js   jetstream.JetStream
	seqs map[string]uint64 // by key
	bad  uint64
}

func setup(t *testing.T) fixture {
	t.Helper()
	b := brokertest.New(t)
	f := fixture{js: b.JS, seqs: map[string]uint64{}}
	for i, l := range []messages.DeadLetter{
		letter(1, "contoso", messages.Type("location"), "EAST", "permanent", "BC said 404 Not Found"),
		letter(2, "contoso", messages.Type("customer"), "C000001", "transient", "iPaaS.com timeout"),
		letter(3, "fabrikam", messages.Type("location"), "WEST", "permanent", "mapping: missing code"),
	} {
		_ = i
		f.seqs[l.Key] = putLetter(t, b.JS, l)
	}
	ack, err := b.JS.Publish(context.Background(), messages.DLQPrefix+".contoso.location", []byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	f.bad = ack.Sequence
	return f
}

func keys(t *testing.T, js jetstream.JetStream, f dlq.Filter) ([]string, error) {
	t.Helper()
	var out []string
	err := dlq.List(context.Background(), js, f, func(l dlq.Letter) error {
		out = append(out, l.DL.Key)
		return nil
	})
	return out, err
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	now := time.Now()
	for name, tc := range map[string]struct {
		f    dlq.Filter
		want []string
	}{
		"all":          {dlq.Filter{}, []string{"EAST", "C000001", "WEST"}},
		"subscription": {dlq.Filter{Subscription: "contoso"}, []string{"EAST", "C000001"}},
		"type":         {dlq.Filter{Type: "location"}, []string{"EAST", "WEST"}},
		"sub+type":     {dlq.Filter{Subscription: "fabrikam", Type: "location"}, []string{"WEST"}},
		"class":        {dlq.Filter{Class: "transient"}, []string{"C000001"}},
		"text reason":  {dlq.Filter{Text: "not FOUND"}, []string{"EAST"}},
		"text job id":  {dlq.Filter{Text: "job-west"}, []string{"WEST"}},
		"since future": {dlq.Filter{Since: now.Add(time.Hour)}, nil},
		"since past":   {dlq.Filter{Since: now.Add(-time.Hour)}, []string{"EAST", "C000001", "WEST"}},
		"until past":   {dlq.Filter{Until: now.Add(-time.Hour)}, nil},
	} {
		got, err := keys(t, fx.js, tc.f)
		var ue *dlq.UndecodableError
		wantBad := tc.f.Subscription != "fabrikam" && tc.f.Type != "customer"
		if wantBad {
			if !errors.As(err, &ue) || len(ue.Seqs) != 1 || ue.Seqs[0] != fx.bad {
				t.Errorf("%s: err %v, want the malformed record %d reported", name, err, fx.bad)
			}
		} else if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: got %v, want %v", name, got, tc.want)
				break
			}
		}
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	l, err := dlq.Get(ctx, fx.js, fx.seqs["C000001"])
	if err != nil || l.DL.Key != "C000001" || l.DL.ErrorClass != "transient" || l.Seq != fx.seqs["C000001"] || l.Stored.IsZero() {
		t.Fatalf("Get = %+v, %v", l, err)
	}
	if _, err := dlq.Get(ctx, fx.js, 999); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("Get(999) err = %v, want ErrNotFound", err)
	}
	if _, err := dlq.Get(ctx, fx.js, fx.bad); err == nil {
		t.Error("Get of a malformed record succeeded")
	}
}

func TestReplayMovesTheOriginalJob(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	l, err := dlq.Get(ctx, fx.js, fx.seqs["EAST"])
	if err != nil {
		t.Fatal(err)
	}
	if err := dlq.Replay(ctx, fx.js, l); err != nil {
		t.Fatal(err)
	}
	js, err := fx.js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := js.GetLastMsgForSubject(ctx, l.DL.Subject)
	if err != nil {
		t.Fatalf("replayed job not in %s: %v", messages.StreamJobs, err)
	}
	if string(raw.Data) != string(l.DL.Body) {
		t.Errorf("body %s, want %s", raw.Data, l.DL.Body)
	}
	if got := raw.Header.Get(messages.HeaderMsgID); got != dlq.ReplayMsgID(l) {
		t.Errorf("Nats-Msg-Id %q, want %q", got, dlq.ReplayMsgID(l))
	}
	if got := raw.Header.Get(dlq.HeaderReplayOf); got != "1" {
		t.Errorf("%s %q, want 1", dlq.HeaderReplayOf, got)
	}
	if got := raw.Header.Get("X-Trace"); got != "t-EAST" {
		t.Errorf("X-Trace %q, want t-EAST", got)
	}
	if got := raw.Header.Get("Nats-Expected-Stream"); got == "OLD" {
		t.Errorf("Nats-Expected-Stream kept: %q", got)
	}
	if _, err := dlq.Get(ctx, fx.js, l.Seq); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("letter still there after replay: %v", err)
	}
	// A replay repeated (e.g. after a crash) is deduplicated.
	if err := dlq.Replay(ctx, fx.js, l); err != nil {
		t.Fatal(err)
	}
	info, err := js.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("jobs stream holds %d, want 1", info.State.Msgs)
	}
}

func TestReplayFailureKeepsTheLetter(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	if err := fx.js.DeleteStream(ctx, messages.StreamJobs); err != nil {
		t.Fatal(err)
	}
	l, err := dlq.Get(ctx, fx.js, fx.seqs["WEST"])
	if err != nil {
		t.Fatal(err)
	}
	if err := dlq.Replay(ctx, fx.js, l); err == nil {
		t.Fatal("replay without a jobs stream succeeded")
	}
	if _, err := dlq.Get(ctx, fx.js, l.Seq); err != nil {
		t.Errorf("letter lost after a failed replay: %v", err)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	l, err := dlq.Get(ctx, fx.js, fx.seqs["C000001"])
	if err != nil {
		t.Fatal(err)
	}
	if err := dlq.Purge(ctx, fx.js, l); err != nil {
		t.Fatal(err)
	}
	got, _ := keys(t, fx.js, dlq.Filter{})
	if len(got) != 2 || got[0] != "EAST" || got[1] != "WEST" {
		t.Errorf("after purge: %v", got)
	}
	if err := dlq.Purge(ctx, fx.js, l); err != nil {
		t.Errorf("purging twice: %v", err)
	}
}

// BCSYNC_DLQ made anew (its sequences start again at 1) within the jobs
// stream's duplicate window: replaying the new letter at a reused sequence
// once published with the Nats-Msg-Id of an earlier, unrelated replay
// (bcsync-replay-<seq>); JetStream dropped it as a duplicate, and Replay
// deleted the letter: the job was in neither stream (invariant 5).
func TestReplayAfterTheDLQWasMadeAnewKeepsTheLetter(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	first, err := dlq.Get(ctx, fx.js, fx.seqs["EAST"])
	if err != nil {
		t.Fatal(err)
	}
	if err := dlq.Replay(ctx, fx.js, first); err != nil {
		t.Fatal(err)
	}
	// An operator drops the dead letters by deleting the stream; a worker
	// (or `bcsync dlq`) makes it anew.
	if err := fx.js.DeleteStream(ctx, messages.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureStreams(ctx, fx.js, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	seq := putLetter(t, fx.js, letter(77, "contoso", messages.Type("location"), "NORTH", "permanent", "BC said 400"))
	if seq != first.Seq {
		t.Fatalf("new letter at seq %d, want the reused seq %d", seq, first.Seq)
	}
	l, err := dlq.Get(ctx, fx.js, seq)
	if err != nil {
		t.Fatal(err)
	}
	replayErr := dlq.Replay(ctx, fx.js, l)
	js, err := fx.js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	_, jobErr := js.GetLastMsgForSubject(ctx, l.DL.Subject)
	_, letterErr := dlq.Get(ctx, fx.js, seq)
	if jobErr != nil && letterErr != nil {
		t.Errorf("replay returned %v, the job NORTH is not in %s (%v) and its letter is gone (%v): lost", replayErr, messages.StreamJobs, jobErr, letterErr)
	}
}

// A replay starts afresh: a letter of a requeued copy carried its failures
// so far (Bcsync-Failures), and replayed with them the job was
// dead-lettered again at its first transient failure.
func TestReplayStartsAfresh(t *testing.T) {
	t.Parallel()
	dl := &messages.DeadLetter{Subject: "bcsync.jobs.contoso.location.EAST", Body: []byte(`{}`)}
	dl.SetHeaders(map[string][]string{
		messages.HeaderFailures: {"9"}, messages.HeaderDeliveries: {"20"}, messages.HeaderFirstFailure: {"2026-11-01T00:00:00Z"},
		"X-Upstream": {"kept"},
	})
	msg, err := dlq.ReplayMsg(dlq.Letter{Seq: 7, DL: dl})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{messages.HeaderFailures, messages.HeaderDeliveries, messages.HeaderFirstFailure} {
		if v := msg.Header.Get(h); v != "" {
			t.Errorf("the replay carries %s: %q", h, v)
		}
	}
	if msg.Header.Get("X-Upstream") != "kept" || msg.Header.Get(dlq.HeaderReplayOf) != "7" {
		t.Errorf("headers %v: want the publisher's kept and %s set", msg.Header, dlq.HeaderReplayOf)
	}
}
