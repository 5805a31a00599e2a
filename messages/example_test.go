package messages_test

import (
	"context"
	"fmt"
	"os"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/rs/zerolog"
)

// An upstream system publishes a sync job. Here the broker is an embedded
// server; in production, connect with nats.Connect(url) and jetstream.New.
func ExamplePublish() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	b, err := broker.Connect(ctx, broker.Options{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		fmt.Println(err)
		return
	}

	job := messages.Job{
		ID:           "webhook-2026-11-29-0001", // reuse the same ID when retrying
		Subscription: "contoso",
		Type:         messages.TypeLocation,
		Op:           messages.OpUpsert,
		Key:          "MAIN ST.1", // not subject-safe: encoded in the subject
		Source:       "example",
	}
	ack, job, err := messages.Publish(ctx, b.JS, job)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Subject(), ack.Stream, ack.Duplicate)

	// A retried publish of the same job is deduplicated by JetStream.
	ack, _, err = messages.Publish(ctx, b.JS, job)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("retry deduplicated:", ack.Duplicate)

	// A job that is not valid is refused before it reaches the stream.
	_, _, err = messages.Publish(ctx, b.JS, messages.Job{Subscription: "contoso", Type: "vendor", Op: messages.OpUpsert, Key: "V1"})
	fmt.Println(err)
	// Output:
	// bcsync.jobs.contoso.location.~TUFJTiBTVC4x BCSYNC_JOBS false
	// retry deduplicated: true
	// messages: invalid job: job field "type": unknown type: "vendor" is not one of customer_category, location, shipping_method, customer, product
}
