// Package brokertest starts a real embedded JetStream server for tests, with
// bcsync's streams in place. It never mocks NATS.
package brokertest

import (
	"context"
	"testing"

	"github.com/bcsync/bcsync/broker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// New starts an embedded nats-server with JetStream in t.TempDir(), connects,
// creates the streams, and stops it all when the test ends.
func New(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Connect(context.Background(), broker.Options{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	t.Cleanup(b.Close)
	if err := broker.EnsureStreams(context.Background(), b.JS, broker.StreamOptions{}); err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	return b
}

// KV opens another connection to b's server, as a separate worker process
// would have, and returns the bucket called name (broker.BucketTokens or
// broker.BucketThrottle), created if needed. The connection closes when the
// test ends.
func KV(t testing.TB, b *broker.Broker, name string) jetstream.KeyValue {
	t.Helper()
	wb, err := broker.Connect(context.Background(), broker.Options{URL: b.ClientURL(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	t.Cleanup(wb.Close)
	kvs, err := broker.EnsureKV(context.Background(), wb.JS, broker.KVOptions{})
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	return kvs[name]
}

// Keys lists the keys of kv matching filter (for example "lease.>").
func Keys(t testing.TB, kv jetstream.KeyValue, filter string) []string {
	t.Helper()
	l, err := kv.ListKeysFiltered(context.Background(), filter)
	if err != nil {
		t.Fatalf("brokertest: list %s: %v", filter, err)
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys
}
