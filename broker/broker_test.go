package broker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func TestEnsureIsIdempotentAndConfigured(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	// A second worker starting up runs the same calls.
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatalf("second EnsureStreams: %v", err)
	}
	jobs, err := b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if got := jobs.CachedInfo().Config; got.Retention != jetstream.WorkQueuePolicy || got.Subjects[0] != "bcsync.jobs.>" || got.Duplicates != 2*time.Minute {
		t.Errorf("jobs stream config = %+v", got)
	}
	dlq, err := b.JS.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if got := dlq.CachedInfo().Config; got.Retention != jetstream.LimitsPolicy || got.MaxAge != 30*24*time.Hour {
		t.Errorf("dlq stream config = %+v", got)
	}
	adv, err := b.JS.Stream(ctx, broker.StreamAdvisories)
	if err != nil {
		t.Fatal(err)
	}
	if got := adv.CachedInfo().Config; got.Subjects[0] != "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.BCSYNC_JOBS.*" || got.Storage != jetstream.FileStorage {
		t.Errorf("advisories stream config = %+v", got)
	}
	opts := broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 5, AckWait: 30 * time.Second, MaxAckPending: 100}
	for i := 0; i < 2; i++ {
		if _, err := broker.EnsureConsumer(ctx, b.JS, opts); err != nil {
			t.Fatalf("EnsureConsumer #%d: %v", i+1, err)
		}
	}
	// Settings changed in config are applied to the existing consumer.
	opts.MaxAckPending = 200
	c, err := broker.EnsureConsumer(ctx, b.JS, opts)
	if err != nil {
		t.Fatal(err)
	}
	got := c.CachedInfo().Config
	if got.Durable != "bcsync-contoso" || got.AckPolicy != jetstream.AckExplicitPolicy || got.MaxDeliver != 5 ||
		got.AckWait != 30*time.Second || got.MaxAckPending != 200 || got.FilterSubject != "bcsync.jobs.contoso.>" {
		t.Errorf("consumer config = %+v", got)
	}
	// A second subscription gets its own consumer on the same work queue.
	opts.Subscription = "fabrikam"
	if _, err := broker.EnsureConsumer(ctx, b.JS, opts); err != nil {
		t.Fatalf("second subscription's consumer: %v", err)
	}
}

func TestEnsureConsumerRejectsBadOptions(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	for name, o := range map[string]broker.ConsumerOptions{
		"infinite deliveries": {Subscription: "a", MaxDeliver: -1, AckWait: time.Second, MaxAckPending: 1},
		"bad name":            {Subscription: "A.B", MaxDeliver: 3, AckWait: time.Second, MaxAckPending: 1},
		"no ack wait":         {Subscription: "a", MaxDeliver: 3, MaxAckPending: 1},
	} {
		if _, err := broker.EnsureConsumer(context.Background(), b.JS, o); err == nil {
			t.Errorf("%s: EnsureConsumer succeeded", name)
		}
	}
}

func TestEmbeddedStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := broker.Connect(ctx, broker.Options{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "EAST"}); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b2, err := broker.Connect(ctx, broker.Options{DataDir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	s, err := b2.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("after restart the stream holds %d jobs, want 1", info.State.Msgs)
	}
}

func TestConnectErrorsAreClear(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := broker.Connect(ctx, broker.Options{URL: "nats://user:hunter2@127.0.0.1:1", Log: zerolog.Nop()})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Connect to a closed port = %v; want an error naming the address without the password", err)
	}
	_, err = broker.Connect(ctx, broker.Options{URL: "nats://127.0.0.1:1", CredsFile: filepath.Join(t.TempDir(), "missing.creds"), Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "credentials file") {
		t.Errorf("missing creds file: %v", err)
	}
	_, err = broker.Connect(ctx, broker.Options{URL: "nats://127.0.0.1:1", CertFile: "x.pem", Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "key file") {
		t.Errorf("cert without key: %v", err)
	}
}

// Workers start together: each ensures the streams and its consumers at
// once. Nothing may be updated needlessly (nats-server races a stream update
// against a consumer creation), and a changed setting is still applied.
func TestEnsureConcurrentlyAndApplyChanges(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
					t.Error(err)
				}
				if _, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{
					Subscription: fmt.Sprintf("sub-%d", i), MaxDeliver: 3, AckWait: time.Minute, MaxAckPending: 10,
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{DuplicateWindow: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	s, err := b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != 5*time.Minute {
		t.Errorf("duplicate window %v after a changed setting, want 5m", got)
	}
}

// A worker starting with other settings updates the consumer, but must not
// resume it when the fleet paused it (a dependency down, refused
// credentials).
func TestEnsureConsumerKeepsAPause(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	o := broker.ConsumerOptions{Subscription: "contoso", MaxDeliver: 3, AckWait: time.Minute, MaxAckPending: 10}
	if _, err := broker.EnsureConsumer(ctx, b.JS, o); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	if _, err := b.JS.PauseConsumer(ctx, messages.StreamJobs, broker.ConsumerName("contoso"), until); err != nil {
		t.Fatal(err)
	}
	o.AckWait = 2 * time.Minute
	c, err := broker.EnsureConsumer(ctx, b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 2*time.Minute {
		t.Errorf("AckWait %v, want the new 2m", info.Config.AckWait)
	}
	if !info.Paused || info.Config.PauseUntil == nil || info.Config.PauseUntil.Sub(until).Abs() > time.Second {
		t.Errorf("paused=%v until=%v after an update, want paused until %v", info.Paused, info.Config.PauseUntil, until)
	}
}

func TestIsConflict(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketThrottle)
	ctx := context.Background()
	rev, err := kv.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	_, createErr := kv.Create(ctx, "k", []byte("2"))
	_, updateErr := kv.Update(ctx, "k", []byte("2"), rev+10)
	for name, err := range map[string]error{
		"create on an existing key":  createErr,
		"update on another revision": updateErr,
		// A clustered server with per-key TTLs answers this one.
		"wrong last sequence (10164)": &jetstream.APIError{Code: 400, ErrorCode: 10164, Description: "wrong last sequence"},
		"wrapped":                     fmt.Errorf("take a lease: %w", &jetstream.APIError{Code: 400, ErrorCode: 10071}),
	} {
		if !broker.IsConflict(err) {
			t.Errorf("%s: IsConflict(%v) = false", name, err)
		}
	}
	for _, err := range []error{nil, jetstream.ErrKeyNotFound, &jetstream.APIError{Code: 503, ErrorCode: 10008}} {
		if broker.IsConflict(err) {
			t.Errorf("IsConflict(%v) = true", err)
		}
	}
}

// Commands that do not know the fleet's settings create what is missing and
// leave the rest alone: they must not turn R3 streams into R1.
func TestCreateOnlyLeavesExistingStreamsAlone(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{DuplicateWindow: 7 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{CreateOnly: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{CreateOnly: true}); err != nil {
		t.Fatal(err)
	}
	s, err := b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != 7*time.Minute {
		t.Errorf("duplicate window %v after a create-only ensure, want the existing 7m", got)
	}
	// Without CreateOnly the stream is brought to the settings given.
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	s, _ = b.JS.Stream(ctx, messages.StreamJobs)
	if got := s.CachedInfo().Config.Duplicates; got != 2*time.Minute {
		t.Errorf("duplicate window %v after an ensure, want 2m", got)
	}
}
