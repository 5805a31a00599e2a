package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// streamFiles are the stream definitions of deploy/streams, each with the
// configuration bcsync's workers create on a 3-node cluster.
func streamFiles() map[string]jetstream.StreamConfig {
	o := broker.StreamOptions{Replicas: 3}
	return map[string]jetstream.StreamConfig{
		"deploy/streams/BCSYNC_JOBS.json":       broker.JobsStreamConfig(o),
		"deploy/streams/BCSYNC_DLQ.json":        broker.DLQStreamConfig(o),
		"deploy/streams/BCSYNC_ADVISORIES.json": broker.AdvisoriesStreamConfig(o),
	}
}

// decodeStrict decodes a `nats ... --config` JSON file, refusing fields that
// the JetStream API does not know (a misspelled field would be ignored by the
// server, silently).
func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, file)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestStreamFilesMatchBroker compares every field of each stream file with
// the broker package's configuration (with 3 replicas): a setting changed in
// one place and not in the other fails here.
func TestStreamFilesMatchBroker(t *testing.T) {
	t.Parallel()
	for file, want := range streamFiles() {
		var got jetstream.StreamConfig
		decodeStrict(t, file, &got)
		if base := strings.TrimSuffix(filepath.Base(file), ".json"); got.Name != base {
			t.Errorf("%s: name %q; the file must be named after the stream", file, got.Name)
		}
		if got.Replicas != 3 {
			t.Errorf("%s: num_replicas %d, want 3 (R3 on the 3-node cluster)", file, got.Replicas)
		}
		if g, w := broker.ServerDefaults(got), broker.ServerDefaults(want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s differs from broker's configuration of %s:\n file:   %+v\n broker: %+v", file, want.Name, g, w)
		}
	}
}

// TestConsumerFilesMatchBroker checks that every subscription of the
// Kubernetes ConfigMap has a consumer file, equal to the broker package's
// consumer with that subscription's worker settings.
func TestConsumerFilesMatchBroker(t *testing.T) {
	t.Parallel()
	cfg := kubeConfig(t)
	for _, s := range cfg.Subscriptions {
		file := "deploy/streams/" + broker.ConsumerName(s.Name) + ".json"
		var got jetstream.ConsumerConfig
		decodeStrict(t, file, &got)
		want := broker.ConsumerConfig(broker.ConsumerOptions{
			Subscription:  s.Name,
			MaxDeliver:    s.Worker.MaxDeliver,
			AckWait:       s.Worker.AckWait,
			MaxAckPending: s.Worker.MaxAckPending,
		})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs from broker's consumer of subscription %s (worker settings of deploy/kubernetes/configmap.yaml):\n file:   %+v\n broker: %+v",
				file, s.Name, got, want)
		}
	}
}

// TestStreamFilesOnServer creates each stream and the consumer on a real
// JetStream server twice, from the file and from the broker package, and
// compares the configurations the server reports. The embedded server is a
// single node, so both are created with one replica.
func TestStreamFilesOnServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, broker.Options{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	serverConfig := func(c jetstream.StreamConfig) jetstream.StreamConfig {
		t.Helper()
		c.Replicas = 1
		s, err := b.JS.CreateStream(ctx, c)
		if err != nil {
			t.Fatalf("create stream %s: %v", c.Name, err)
		}
		got := s.CachedInfo().Config
		if err := b.JS.DeleteStream(ctx, c.Name); err != nil {
			t.Fatal(err)
		}
		got.Metadata = nil // the server's version stamps
		return got
	}
	for file, want := range streamFiles() {
		var fromFile jetstream.StreamConfig
		decodeStrict(t, file, &fromFile)
		if g, w := serverConfig(fromFile), serverConfig(want); !reflect.DeepEqual(g, w) {
			t.Errorf("the server keeps %s differently from broker's %s:\n file:   %+v\n broker: %+v", file, want.Name, g, w)
		}
	}

	if _, err := b.JS.CreateStream(ctx, broker.JobsStreamConfig(broker.StreamOptions{})); err != nil {
		t.Fatal(err)
	}
	consumerConfig := func(c jetstream.ConsumerConfig) jetstream.ConsumerConfig {
		t.Helper()
		cons, err := b.JS.CreateConsumer(ctx, messages.StreamJobs, c)
		if err != nil {
			t.Fatalf("create consumer %s: %v", c.Durable, err)
		}
		got := cons.CachedInfo().Config
		if err := b.JS.DeleteConsumer(ctx, messages.StreamJobs, c.Durable); err != nil {
			t.Fatal(err)
		}
		got.Metadata = nil
		return got
	}
	for _, s := range kubeConfig(t).Subscriptions {
		file := "deploy/streams/" + broker.ConsumerName(s.Name) + ".json"
		var fromFile jetstream.ConsumerConfig
		decodeStrict(t, file, &fromFile)
		want := broker.ConsumerConfig(broker.ConsumerOptions{
			Subscription: s.Name, MaxDeliver: s.Worker.MaxDeliver, AckWait: s.Worker.AckWait, MaxAckPending: s.Worker.MaxAckPending,
		})
		if g, w := consumerConfig(fromFile), consumerConfig(want); !reflect.DeepEqual(g, w) {
			t.Errorf("the server keeps %s differently from broker's consumer:\n file:   %+v\n broker: %+v", file, g, w)
		}
	}
}

// TestStreamFilesAreAllThere fails on a JSON file in deploy/streams that no
// test compares with the code.
func TestStreamFilesAreAllThere(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy/streams/*.json"))
	if err != nil {
		t.Fatal(err)
	}
	known := streamFiles()
	for _, s := range kubeConfig(t).Subscriptions {
		known["deploy/streams/"+broker.ConsumerName(s.Name)+".json"] = jetstream.StreamConfig{}
	}
	for _, f := range files {
		rel := "deploy/streams/" + filepath.Base(f)
		if _, ok := known[rel]; !ok {
			t.Errorf("%s is checked by no test: add it to streamFiles, or name it bcsync-<subscription>.json for a subscription of deploy/kubernetes/configmap.yaml", rel)
		}
	}
	if len(files) != len(known) {
		t.Errorf("deploy/streams has %d JSON files, want %d (the 3 streams and one consumer per subscription)", len(files), len(known))
	}
}
