// Package brokertest starts a real embedded JetStream server for tests, with
// bcsync's streams in place. It never mocks NATS.
package brokertest

import (
	"context"
	"testing"

	"github.com/bcsync/bcsync/broker"
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
