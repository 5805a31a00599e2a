package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
)

// BC answers 503 to everything for 30 s in the middle of a run: nothing is
// dead-lettered, every job is done after the recovery, and a second
// subscription, on a healthy BC, keeps its pace meanwhile.
func TestE2EBCOutageDeadLettersNothingAndSparesOtherSubscriptions(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s outage")
	}
	t.Parallel()
	const nA, nB, outage = 300, 1000, 30 * time.Second
	// Both subscriptions are paced by their BC budget (20 requests/s), far
	// below what even a loaded CI machine does, so that B's pace is the
	// budget's.
	e := newE2E(t, e2eOptions{bc: bctest.Options{Customers: nA, Budget: -1}, maxDeliver: 3, budget: 40, window: "2s"})
	bcB := bctest.NewServer(bctest.Options{Customers: nB, Budget: -1})
	t.Cleanup(bcB.Close)
	ipB := ipaastest.NewServer(ipaastest.Options{})
	t.Cleanup(ipB.Close)
	yaml := "subscriptions:\n" + subscriptionYAML("contoso", e.bc, e.ip, 40, "2s", 3) + subscriptionYAML("fabrikam", bcB, ipB, 40, "2s", 3)
	cfg, err := config.Parse([]byte(yaml), config.MapEnv(map[string]string{
		config.EnvPrefix("contoso") + "CLIENT_SECRET": e.bc.ClientSecret(), config.EnvPrefix("contoso") + "IPAAS_API_KEY": e.ip.APIKey(),
		config.EnvPrefix("fabrikam") + "CLIENT_SECRET": bcB.ClientSecret(), config.EnvPrefix("fabrikam") + "IPAAS_API_KEY": ipB.APIKey(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	breakers := map[string]*worker.BreakerStats{"contoso": {}, "fabrikam": {}}
	e.tune = func(o *worker.Options) {
		o.Breaker = worker.BreakerConfig{MinPause: time.Second, MaxPause: 4 * time.Second}
		o.BreakerStats = breakers
	}
	// Keyed by GUID: one BC request per job, so that the budget paces the
	// jobs (jobs keyed by number read BC many at a time).
	e.publish(messages.TypeCustomer, recordIDs(t, e.bc, bctest.SetCustomers, e.bc.CustomerNumbers())...)
	for _, k := range recordIDs(t, bcB, bctest.SetCustomers, bcB.CustomerNumbers()) {
		if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "fabrikam", Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	e.startWorker("w1", zerolog.Nop(), nil)
	e.startWorker("w2", zerolog.Nop(), nil)

	// rate is B's records per second over d, after a settling second.
	rate := func(d time.Duration) float64 {
		time.Sleep(time.Second)
		from, start := ipB.Count("customer"), time.Now()
		time.Sleep(d)
		return float64(ipB.Count("customer")-from) / time.Since(start).Seconds()
	}
	waitFor(t, 30*time.Second, "both subscriptions flowing", func() bool { return e.ip.Count("customer") >= 40 && ipB.Count("customer") >= 40 })
	before := rate(5 * time.Second)

	e.bc.SetOutage(503)
	outageStart := time.Now()
	tripped := make(chan time.Duration, 1)
	go func() {
		for breakers["contoso"].Trips.Load() == 0 && time.Since(outageStart) < outage {
			time.Sleep(50 * time.Millisecond)
		}
		tripped <- time.Since(outageStart)
	}()
	doneA := e.ip.Count("customer")
	during := rate(outage - 3*time.Second)
	time.Sleep(time.Until(outageStart.Add(outage)))
	e.bc.SetOutage(0)
	t.Logf("subscription A: %d of %d done when BC went down; B: %.1f records/s before, %.1f during the outage", doneA, nA, before, during)
	if doneA >= nA {
		t.Fatal("A finished before the outage: the test proves nothing")
	}
	if ipB.Count("customer") >= nB {
		t.Fatal("B ran out of jobs during the outage: its pace was not measured")
	}
	// The breaker learns of the outage once the BC client's own retries
	// of a request give up (10 s in a worker; the client's default 30 s
	// outlasted this outage).
	if took := <-tripped; took > 20*time.Second {
		t.Errorf("A's breaker tripped %v after BC went down, want within 20 s", took)
	} else {
		t.Logf("A's breaker tripped %v after BC went down", took.Round(100*time.Millisecond))
	}
	if during < 0.8*before {
		t.Errorf("B slowed to %.1f records/s during A's outage, from %.1f (want at least 80%%)", during, before)
	}

	waitFor(t, 90*time.Second, "every job of A done after the recovery", func() bool { return e.ip.Count("customer") == nA })
	waitFor(t, 60*time.Second, "every job of B done", func() bool { return ipB.Count("customer") == nB })
	waitFor(t, 10*time.Second, "the job stream empty", func() bool { return e.streamMsgs(messages.StreamJobs) == 0 })
	if n := e.streamMsgs(messages.StreamDLQ); n != 0 {
		t.Errorf("%d dead letters after a 30 s BC outage", n)
	}
	if breakers["contoso"].Trips.Load() == 0 {
		t.Error("A's breaker never tripped")
	}
	if breakers["fabrikam"].Trips.Load() != 0 {
		t.Error("B's breaker tripped although B's BC was healthy")
	}
	t.Logf("held %d, requeued %d, A's breaker tripped %d times", e.stats.Held.Load(), e.stats.Requeued.Load(), breakers["contoso"].Trips.Load())
}

// A revoked client secret dead-letters nothing: the subscription pauses with
// an error that names the fix, and once the configuration holds the new
// secret it resumes, without a restart.
func TestE2ERevokedSecretPausesThenResumesWithTheNewSecret(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 40}, maxDeliver: 3})
	yaml := "subscriptions:\n" + subscriptionYAML("contoso", e.bc, e.ip, 100000, "1m", 3)
	var secret atomic.Value
	secret.Store(e.bc.ClientSecret())
	breakers := map[string]*worker.BreakerStats{"contoso": {}}
	var reloads atomic.Int32
	e.tune = func(o *worker.Options) {
		o.Breaker = worker.BreakerConfig{ProbeMin: 100 * time.Millisecond, ProbeMax: 300 * time.Millisecond}
		o.BreakerStats = breakers
		o.Reload = func() (*config.Config, error) {
			reloads.Add(1)
			return config.Parse([]byte(yaml), config.MapEnv(map[string]string{
				config.EnvPrefix("contoso") + "CLIENT_SECRET": secret.Load().(string),
				config.EnvPrefix("contoso") + "IPAAS_API_KEY": e.ip.APIKey(),
			}))
		}
	}
	logs := &syncBuffer{}
	e.startWorker("w1", zerolog.New(logs), nil)
	codes := e.bc.LocationCodes()
	e.publish(messages.TypeLocation, codes[:20]...)
	waitFor(t, 20*time.Second, "the first 20 jobs acked", func() bool { return e.stats.Acked.Load() == 20 })

	// An admin deletes the secret and makes a new one; tokens issued with
	// the old one end.
	const newSecret = "Rotated~Secret.Value_0123456789abcdef"
	e.bc.SetClientSecret(newSecret)
	e.bc.ExpireTokens()
	e.publish(messages.TypeLocation, codes[20:]...)
	waitFor(t, 20*time.Second, "the subscription paused for its credentials", func() bool {
		return breakers["contoso"].State.Load() == worker.StateAuth && e.consumerPaused()
	})
	time.Sleep(500 * time.Millisecond) // probes with the old secret fail
	if got := e.stats.Acked.Load(); got != 20 {
		t.Errorf("%d jobs acked with a revoked secret", got-20)
	}
	if reloads.Load() == 0 {
		t.Error("the configuration was never re-read while paused")
	}
	line := ""
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "subscription paused") {
			line = l
		}
	}
	if !strings.Contains(line, "7000215") || !strings.Contains(line, "fix:") {
		t.Errorf("the pause is not explained with its fix: %q", line)
	}

	secret.Store(newSecret)
	waitFor(t, 20*time.Second, "every job acked with the new secret", func() bool { return e.stats.Acked.Load() == 40 })
	if n := e.streamMsgs(messages.StreamDLQ); n != 0 {
		t.Errorf("%d dead letters for a revoked secret", n)
	}
	if e.consumerPaused() || breakers["contoso"].Resumes.Load() != 1 {
		t.Errorf("paused=%v resumes=%d after the fix", e.consumerPaused(), breakers["contoso"].Resumes.Load())
	}
	if strings.Contains(logs.String(), newSecret) || strings.Contains(logs.String(), e.ip.APIKey()) {
		t.Error("a secret is in the logs")
	}
}

// Held deliveries (throttled: not the job's fault) are counted by
// JetStream, but not toward dead-lettering: a job throttled twice, then
// failing once, on JetStream's third and last delivery, was dead-lettered
// as "gave up after 3 attempts"; it is now requeued and runs again.
func TestThrottledDeliveriesDoNotCountTowardDeadLettering(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 1)
	stats := &worker.Stats{}
	var calls atomic.Int32
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Failures: brokertest.KV(t, e.b, broker.BucketRecords),
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			switch calls.Add(1) {
			case 1, 2: // BC's per-app budget: 429, not the job's fault (held)
				return &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
			case 3: // one blip: the job's first failure that counts
				return &bcclient.APIError{Status: 503, Code: "Internal_ServiceUnavailable", Message: "blip"}
			}
			return nil
		})})
	waitFor(t, 15*time.Second, "the job settled", func() bool {
		return stats.Acked.Load()+stats.DeadLettered.Load() > 0
	})
	if stats.DeadLettered.Load() > 0 {
		dl := readDLQ(t, e.b.JS, 1)[0]
		t.Errorf("dead-lettered after 2 held (throttled) deliveries and 1 counted failure: class %q attempts %d reason %q",
			dl.ErrorClass, dl.Attempts, dl.Reason)
	}
}

// After an outage, a job held meanwhile has used up JetStream's deliveries,
// not its own: a blip while the dependency recovers once dead-lettered it
// (invariant 4).
func TestOutageHoldsDoNotDeadLetterAfterRecovery(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 2) // L0000, L0001: two jobs failing trip the breaker
	stats := &worker.Stats{}
	br := e.breaker(t, worker.BreakerConfig{Threshold: 2, MinPause: 100 * time.Millisecond, MaxPause: 100 * time.Millisecond})
	var recovered atomic.Bool
	var xCalls atomic.Int32
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Breaker: br, Concurrency: 1, Failures: brokertest.KV(t, e.b, broker.BucketRecords),
		Backoff: worker.Backoff{Initial: time.Second, Max: time.Second, Jitter: 0.01},
		Handler: worker.HandlerFunc(func(_ context.Context, j *messages.Job) error {
			down := &bcclient.APIError{Status: 503, Code: "Internal_ServiceUnavailable", Message: "down"}
			switch j.Key {
			case "X":
				switch xCalls.Add(1) {
				case 1:
					return down
				case 2:
					recovered.Store(true)
					// BC comes back; a job succeeding closes the breaker.
					if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{ID: "ok", Subscription: "contoso",
						Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "OK"}); err != nil {
						t.Error(err)
					}
					return down
				case 3:
					return down // one blip while BC recovers: X's first failure that counts
				}
				return nil
			}
			if recovered.Load() {
				return nil
			}
			return down
		})})
	waitFor(t, 10*time.Second, "the breaker tripped", func() bool { return br.Stats().Trips.Load() >= 1 })
	// A job arriving during the outage: held, never its fault.
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{ID: "x", Subscription: "contoso",
		Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "X"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "X settled", func() bool { return xCalls.Load() >= 4 || stats.DeadLettered.Load() > 0 })
	if n := stats.DeadLettered.Load(); n > 0 {
		dl := readDLQ(t, e.b.JS, 1)[0]
		t.Errorf("dead-lettered after an outage: key %s class %q attempts %d reason %q (held=%d)",
			dl.Key, dl.ErrorClass, dl.Attempts, dl.Reason, stats.Held.Load())
	}
}

// A job's own failures add up across the copies it is requeued as, so that
// a job failing by its own fault between holds is still dead-lettered,
// after maxDeliver of its own failures, and not requeued for ever.
func TestOwnFailuresAddUpAcrossRequeuedCopies(t *testing.T) {
	t.Parallel()
	e := newLoopEnv(t, 3)
	e.publish(t, 1)
	stats := &worker.Stats{}
	var calls atomic.Int32
	throttled := &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests", Message: "slow down"}
	blip := &bcclient.APIError{Status: 503, Code: "Internal_ServiceUnavailable", Message: "blip"}
	e.run(t, worker.LoopConfig{MaxDeliver: 3, Stats: stats, Failures: brokertest.KV(t, e.b, broker.BucketRecords),
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error {
			if calls.Add(1)%2 == 1 {
				return throttled // held: JetStream's delivery, not the job's failure
			}
			return blip
		})})
	waitFor(t, 20*time.Second, "the job dead-lettered", func() bool { return stats.DeadLettered.Load() == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	// Deliveries: hold, fail, hold (JetStream's last: requeued with 1
	// failure), then the copy: fail, hold, fail: the third own failure.
	if n := calls.Load(); n != 6 || stats.Requeued.Load() != 1 || !strings.HasPrefix(dl.Reason, "gave up after 3 attempts") || dl.Attempts != 6 {
		t.Errorf("%d handler calls, %d requeued; letter %q with %d attempts; want 6 calls, 1 requeue, gave up after 3 attempts of 6 deliveries",
			n, stats.Requeued.Load(), dl.Reason, dl.Attempts)
	}
}
