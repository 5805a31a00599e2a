package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
)

// An advisory is about the job stored at its sequence before it was raised:
// a job stored there later (the job stream made anew while the advisory
// waited to be handled) is another one, and stays where it is.
func TestRescueLeavesAJobStoredAfterTheAdvisory(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		raised  time.Duration // advisory time, from the job's publish
		rescued bool
	}{
		{"raised before the job was stored", -time.Minute, false},
		{"raised after the job was stored", time.Minute, true},
	} {
		ack, _, err := messages.Publish(ctx, b.JS, messages.Job{ID: strings.ReplaceAll(tc.name, " ", "-"), Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "L0001"})
		if err != nil {
			t.Fatal(err)
		}
		a := maxDeliveriesAdvisory{Stream: messages.StreamJobs, StreamSeq: ack.Sequence, Deliveries: 5, Timestamp: time.Now().Add(tc.raised)}
		dl, err := rescue(ctx, b.JS, failureTimes{}, a, "w1")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s, err := b.JS.Stream(ctx, messages.StreamJobs)
		if err != nil {
			t.Fatal(err)
		}
		_, gerr := s.GetMsg(ctx, ack.Sequence)
		if got := dl != nil; got != tc.rescued || (gerr == nil) == tc.rescued {
			t.Errorf("%s: dead-lettered %v, job still queued %v; want dead-lettered %v", tc.name, got, gerr == nil, tc.rescued)
		}
	}
}
