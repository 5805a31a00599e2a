package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
)

// EnsureStreams promises that a stream already configured as bcsync sets it
// is left alone (workers starting together must not update it under each
// other). A second ensure with the same options must send no
// $JS.API.STREAM.UPDATE.
func TestEnsureStreamsUpdatesNothingWhenUnchanged(t *testing.T) {
	b := brokertest.New(t) // has run EnsureStreams once
	ctx := context.Background()
	var mu sync.Mutex
	var updates []string
	sub, err := b.NC.Subscribe("$JS.API.STREAM.UPDATE.>", func(m *nats.Msg) {
		mu.Lock()
		updates = append(updates, strings.TrimPrefix(m.Subject, "$JS.API.STREAM.UPDATE."))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := b.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = b.NC.Flush()
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(updates) > 0 {
		t.Errorf("a second EnsureStreams with unchanged options updated %v; want no update", updates)
	}
}

// The needless update also resets what an operator set on the stream: a
// max_bytes cap on BCSYNC_DLQ is wiped by every worker start, while the same
// cap on BCSYNC_JOBS is kept.
func TestEnsureStreamsKeepsWhatAnOperatorSet(t *testing.T) {
	b := brokertest.New(t)
	ctx := context.Background()
	for _, name := range []string{messages.StreamJobs, messages.StreamDLQ} {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.MaxBytes = 1 << 30
		if _, err := b.JS.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{messages.StreamJobs, messages.StreamDLQ} {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxBytes; got != 1<<30 {
			t.Errorf("%s: max_bytes %d after a worker start, want the operator's %d", name, got, 1<<30)
		}
	}
	// An update of a setting bcsync manages keeps it too.
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{DuplicateWindow: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{messages.StreamJobs, messages.StreamDLQ} {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.MaxBytes != 1<<30 || c.Duplicates != 5*time.Minute {
			t.Errorf("%s after an update: max_bytes %d, duplicate window %v; want the operator's %d and the new 5m", name, c.MaxBytes, c.Duplicates, 1<<30)
		}
	}
}
