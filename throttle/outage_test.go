package throttle_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/throttle"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// restartable is a NATS server on a fixed port, which a test stops and
// starts again as an operator's restart would.
type restartable struct {
	t    *testing.T
	opts server.Options
	srv  *server.Server
}

func startRestartable(t *testing.T) *restartable {
	r := &restartable{t: t, opts: server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	r.start()
	r.opts.Port = r.srv.Addr().(*net.TCPAddr).Port
	return r
}

func (r *restartable) start() {
	srv, err := server.NewServer(&r.opts)
	if err != nil {
		r.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		r.t.Fatal("NATS server not ready")
	}
	r.t.Cleanup(srv.Shutdown)
	r.srv = srv
}

func (r *restartable) stop() { r.srv.Shutdown(); r.srv.WaitForShutdown() }

// fleetOn connects as a worker process does and returns its Fleet, on a
// throttle bucket kept on disk so that it survives a restart (broker's is
// in memory).
func (r *restartable) fleetOn(name string) (*broker.Broker, *throttle.Fleet) {
	t := r.t
	b, err := broker.Connect(context.Background(), broker.Options{URL: r.srv.ClientURL(), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := throttleBucket(t)
	cfg.Storage = jetstream.FileStorage // survives the restart
	kv, err := b.JS.CreateOrUpdateKeyValue(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := throttle.NewFleet(throttle.FleetConfig{Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5, KV: kv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return b, f
}

// throttleBucket is the throttle bucket's configuration, as broker makes it.
func throttleBucket(t *testing.T) jetstream.KeyValueConfig {
	t.Helper()
	for _, cfg := range broker.KVConfigs(broker.KVOptions{}) {
		if cfg.Bucket == broker.BucketThrottle {
			return cfg
		}
	}
	t.Fatal("no throttle bucket in broker.KVConfigs")
	return jetstream.KeyValueConfig{}
}

// A worker whose first BC request meets NATS unreachable must still honour
// the pauses the others announce once NATS is back (a 429 slows the whole
// fleet). The bucket is kept on disk here, so that only the watch is at
// stake.
func TestPauseWatchComesBackAfterAnOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := startRestartable(t)
	b, f := r.fleetOn("worker")
	r.stop() // a NATS restart, or a network blip, at the worker's first request
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := f.Acquire(actx); err == nil {
		t.Fatal("acquired with NATS down")
	}
	cancel()
	r.start()
	waitFor(t, 10*time.Second, "the worker to reconnect", b.NC.IsConnected)
	waitFor(t, 20*time.Second, "the worker's requests to go through again", func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		rel, err := f.Acquire(actx)
		if err == nil {
			rel()
		}
		return err == nil
	})
	_, other := r.fleetOn("other")
	other.Throttled(3 * time.Second)   // another worker got a 429 with Retry-After: 3
	time.Sleep(200 * time.Millisecond) // the pause travels through the bucket
	start := time.Now()
	rel, err := f.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("the worker went on after %v during the fleet's 3s pause", took.Round(time.Millisecond))
	}
}

// A single NATS server restarting (an upgrade, a crash, a node rebooted)
// must not leave the fleet's budget unusable: the throttle bucket is kept in
// memory, the workers' BC requests all need it, and nothing made the bucket
// again until the workers restarted. The worker gives its Fleet a way to
// make it again, as worker.Shared does.
func TestBudgetWorksAfterNATSRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := startRestartable(t)
	b, err := broker.Connect(ctx, broker.Options{URL: r.srv.ClientURL(), Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{}) // as the worker does at start
	if err != nil {
		t.Fatal(err)
	}
	f, err := throttle.NewFleet(throttle.FleetConfig{Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5, KV: kvs[broker.BucketThrottle],
		Recreate: func(ctx context.Context) error {
			_, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{CreateOnly: true})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	rel, err := f.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	r.stop()
	r.start()
	waitFor(t, 10*time.Second, "the worker to reconnect", b.NC.IsConnected)
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rel, err := f.Acquire(actx)
		cancel()
		if err == nil {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after NATS came back, Acquire still fails: %v", err)
		}
		time.Sleep(time.Second)
	}
	// The pause watch follows the new bucket.
	other, err := throttle.NewFleet(throttle.FleetConfig{Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5, KV: kvs[broker.BucketThrottle]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	waitFor(t, 10*time.Second, "a pause to reach the worker", func() bool {
		other.Throttled(2 * time.Second)
		actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		rel, err := f.Acquire(actx)
		if err == nil {
			rel()
		}
		return err != nil // waited for the pause
	})
}

// Two workers, each wired as worker.Shared does (a memory bucket, Recreate
// with EnsureKV CreateOnly). NATS restarts and loses the bucket; worker A's
// next Acquire makes it again. Worker B's next Acquire then succeeds (the
// bucket is back), so B never calls Recreate and never sets its watch up
// again: its ordered consumer resumes at the lost stream's sequence, and
// B misses the fleet's pauses on the new bucket.
func TestPauseReachesTheWorkerThatDidNotRecreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := startRestartable(t)
	worker := func(name string) *throttle.Fleet {
		b, err := broker.Connect(ctx, broker.Options{URL: r.srv.ClientURL(), Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := throttle.NewFleet(throttle.FleetConfig{Name: "bc-app", Requests: 100000, Window: time.Second, MaxConcurrency: 5,
			KV: kvs[broker.BucketThrottle],
			Recreate: func(ctx context.Context) error {
				_, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{CreateOnly: true})
				return err
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		waitFor(t, 10*time.Second, name+" to connect", b.NC.IsConnected)
		return f
	}
	a, bw := worker("a"), worker("b")
	acquire := func(f *throttle.Fleet, d time.Duration) error {
		actx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		rel, err := f.Acquire(actx)
		if err == nil {
			rel()
		}
		return err
	}
	// Some traffic, then a short pause that B sees: B's watch is past a
	// stream sequence of a few hundred.
	for range 200 {
		if err := acquire(a, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := acquire(bw, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	a.Throttled(200 * time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	r.stop()
	r.start() // the memory bucket is gone
	// A meets the missing bucket first and makes it again.
	waitFor(t, 30*time.Second, "worker a's requests to go through again", func() bool { return acquire(a, 3*time.Second) == nil })
	// B's next request goes through: the bucket is there.
	waitFor(t, 30*time.Second, "worker b's requests to go through again", func() bool { return acquire(bw, 3*time.Second) == nil })
	time.Sleep(12 * time.Second) // ample time for B's watch to notice the restart

	a.Throttled(3 * time.Second) // a 429 with Retry-After: 3 at worker A
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := acquire(bw, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("after a NATS restart that A's Recreate repaired, worker B went on after %v during the fleet's 3s pause", took.Round(time.Millisecond))
	}
}
