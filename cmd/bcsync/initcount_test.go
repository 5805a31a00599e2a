package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// storeOldCustomerLetter stores a dead letter of an earlier, unrelated
// customer job of subscription demo, as a worker would have, and returns
// its DLQ sequence.
func storeOldCustomerLetter(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	d := messages.DeadLetter{
		Subject:      messages.JobSubject("demo", messages.TypeCustomer, "OLD1"),
		Body:         []byte(`{"v":1,"id":"old-1","subscription":"demo","type":"customer","op":"upsert","key":"OLD1"}`),
		Stream:       messages.StreamJobs,
		StreamSeq:    999999,
		Subscription: "demo", Type: messages.TypeCustomer, Key: "OLD1", JobID: "old-1",
		ErrorClass: "permanent", Reason: "an old failure", Attempts: 1,
		FirstFailure: time.Now().UTC(), LastFailure: time.Now().UTC(), WorkerID: "w0",
	}
	body, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(messages.DLQSubject("demo", messages.TypeCustomer))
	m.Data = body
	m.Header.Set(messages.HeaderMsgID, d.MsgID())
	ack, err := js.PublishMsg(context.Background(), m, jetstream.WithExpectStream(messages.StreamDLQ))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// init once counted the dead letters of its run as "letters of the type
// now" minus "letters of the type at mark". A letter of the type that left
// the DLQ meanwhile (an operator's `dlq purge`/`dlq replay` of old letters,
// or the 30-day MaxAge) cancelled out a letter of this run: init reported
// "0 dead-lettered" and exited 0 although one of its records was
// dead-lettered. It now counts the letters of its own record jobs.
func TestInitCountsItsDeadLettersWhenAnOldOneLeaves(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Customers: 12, Budget: -1})
	bad := e.bc.CustomerNumbers()[4]
	e.bc.Update(bctest.SetCustomers, bad, func(f map[string]any) { f["displayName"] = "" }) // cannot be mapped: dead-lettered
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := broker.EnsureStreams(ctx, e.b.JS, broker.StreamOptions{CreateOnly: true}); err != nil {
		t.Fatal(err)
	}
	old := storeOldCustomerLetter(t, e.b.JS)

	// Once the initialization has started (its first page checkpointed,
	// so after init's mark), the old letter goes: purged by an operator.
	progress := brokertest.KV(t, e.b, broker.BucketProgress)
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		for ctx.Err() == nil {
			keys, _ := progress.ListKeys(ctx, jetstream.MetaOnly())
			started := false
			if keys != nil {
				for k := range keys.Keys() {
					if strings.HasPrefix(k, "bulk.demo.") {
						started = true
					}
				}
			}
			if started {
				s, err := e.b.JS.Stream(ctx, messages.StreamDLQ)
				if err == nil {
					_ = s.DeleteMsg(ctx, old)
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	code, out, errOut := runCmd(t, ctx, "", "init", "customer", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false")
	<-purged
	t.Logf("init customer: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	if got := e.ip.Count("customer"); got != 11 {
		t.Fatalf("%d customers at iPaaS.com, want 11 (one dead-lettered): the test proves nothing", got)
	}
	if code == 0 {
		t.Errorf("init exited 0 although one of its customers was dead-lettered (an older letter of the type was purged meanwhile)")
	}
	if !strings.Contains(out, "1 dead-lettered") {
		t.Errorf("init did not report its dead letter:\n%s", out)
	}
}
