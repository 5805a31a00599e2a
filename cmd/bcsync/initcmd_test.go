package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// initEnv is a broker, the simulators and a running worker for "demo".
type initEnv struct {
	b  *broker.Broker
	bc *bctest.Server
	ip *ipaastest.Server
}

func newInitEnv(t *testing.T, opts bctest.Options) *initEnv {
	t.Helper()
	bc := bctest.NewServer(opts)
	t.Cleanup(bc.Close)
	ip := ipaastest.NewServer(ipaastest.Options{})
	t.Cleanup(ip.Close)
	b := brokertest.New(t)
	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	cfg, err := config.Parse([]byte(renderSimConfig(sc)), config.MapEnv(map[string]string{sc.SecretEnv: bc.ClientSecret(), sc.KeyEnv: ip.APIKey()}))
	if err != nil {
		t.Fatal(err)
	}
	wb, err := broker.Connect(context.Background(), broker.Options{URL: b.ClientURL(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = worker.Run(ctx, cfg, worker.Options{Broker: wb, ID: "w1", Grace: time.Second, PollWait: 200 * time.Millisecond, Log: zerolog.Nop()})
	}()
	t.Cleanup(func() { cancel(); <-done; wb.Close() })
	return &initEnv{b: b, bc: bc, ip: ip}
}

func TestInitAllCopiesEveryTypeParentsFirst(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Locations: 25, ShipmentMethods: 8, PriceGroups: 5, Customers: 3, Budget: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, out, errOut := runCmd(t, ctx, "", "init", "all", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false")
	if code != 0 {
		t.Fatalf("init all exited %d\n%s\n%s", code, out, errOut)
	}
	for table, want := range map[string]int{"customer category": 5, "location": 25, "shipping method": 8, "customer": 0} {
		if got := e.ip.Count(table); got != want {
			t.Errorf("%d %s records at iPaaS.com, want %d", got, table, want)
		}
	}
	// Parents first, each done before the next starts.
	cat, loc, ship := strings.Index(out, "initialize customer_category: 1 pages read, 5 jobs enqueued, 0 dead-lettered"),
		strings.Index(out, "initialize location: 1 pages read, 25 jobs enqueued"), strings.Index(out, "initialize shipping_method: 1 pages read, 8 jobs enqueued")
	if cat < 0 || loc < cat || ship < loc {
		t.Errorf("init all did not report the three types in order:\n%s", out)
	}
}

func TestInitExitsNonZeroWhenARecordDeadLetters(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Customers: 12, Budget: -1})
	bad := e.bc.CustomerNumbers()[4]
	e.bc.Update(bctest.SetCustomers, bad, func(f map[string]any) { f["displayName"] = "" }) // cannot be mapped
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, out, errOut := runCmd(t, ctx, "", "init", "customer", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false")
	if code == 0 {
		t.Fatalf("init exited 0 although a customer was dead-lettered\n%s", out)
	}
	if !strings.Contains(out, "12 jobs enqueued, 1 dead-lettered") || !strings.Contains(errOut, "1 jobs dead-lettered: see bcsync dlq list --subscription demo") {
		t.Errorf("the failure is not reported:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	if got := e.ip.Count("customer"); got != 11 {
		t.Errorf("%d customers at iPaaS.com, want 11", got)
	}
}

// init waits for the jobs it enqueued, not for the rest of the
// subscription's queue: here a customer job waits for its record's lock for
// the whole run. Waiting for the queue to drain, init never returned.
func TestInitDoesNotWaitForOtherJobs(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Locations: 10, Customers: 3, Budget: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stuck := e.bc.CustomerNumbers()[0]
	locks := worker.NewRecordLocks(e.b.JS, brokertest.KV(t, e.b, broker.BucketRecords), time.Hour)
	held, err := locks.Lock(ctx, "demo", messages.TypeCustomer, stuck, "the test")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(context.Background())
	if _, _, err := messages.Publish(ctx, e.b.JS, messages.Job{Subscription: "demo", Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: stuck}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, ctx, "", "init", "location", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false")
	if code != 0 {
		t.Fatalf("init exited %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "10 jobs enqueued, 0 dead-lettered") {
		t.Errorf("init reported:\n%s", out)
	}
	if got := e.ip.Count("location"); got != 10 {
		t.Errorf("init returned with %d of 10 locations at iPaaS.com", got)
	}
	// The customer job is still queued: init did not wait for it.
	c, err := e.b.JS.Consumer(ctx, messages.StreamJobs, broker.ConsumerName("demo"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	} else if info.NumPending+uint64(info.NumAckPending) != 1 {
		t.Errorf("%d jobs pending, %d in flight: want the stuck customer job alone", info.NumPending, info.NumAckPending)
	}
	if got := e.ip.Count("customer"); got != 0 {
		t.Errorf("%d customers at iPaaS.com: the lock did not hold the job", got)
	}
}

func TestInitArguments(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	if code, out, _ := runCmd(t, ctx, "", "init", "location", "--subscription", "demo", "--nats-url", b.ClientURL(), "--no-wait"); code != 0 || !strings.Contains(out, "initialize location: job ") {
		t.Errorf("--no-wait: exit %d, %q", code, out)
	}
	for _, args := range [][]string{
		{"init", "vendor", "--subscription", "demo"},
		{"init", "location", "--subscription", "Demo!"},
		{"init", "location"},
		{"init"},
	} {
		if code, _, errOut := runCmd(t, ctx, "", append(args, "--nats-url", b.ClientURL())...); code == 0 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	// A type init does not take names the ones it does.
	code, _, errOut := runCmd(t, ctx, "", "init", "vendor", "--subscription", "demo", "--nats-url", b.ClientURL(), "--no-wait")
	if code == 0 || !strings.Contains(errOut, `"vendor" is not a type init supports`) || !strings.Contains(errOut, "customer_category, location, shipping_method, customer or product") {
		t.Errorf("init vendor: exit %d, stderr %q", code, errOut)
	}
}

// Products are initialized like the other types (they were refused while
// no worker synced them).
func TestInitProducts(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Items: 7, Budget: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, out, errOut := runCmd(t, ctx, "", "init", "product", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false")
	if got := e.ip.Count("product"); code != 0 || got != 7 || !strings.Contains(out, "7 jobs enqueued, 0 dead-lettered") {
		t.Errorf("init product: exit %d, %d of 7 products at iPaaS.com\nstdout:\n%s\nstderr:\n%s", code, got, out, errOut)
	}
}

// An initialize job that is dead-lettered (here BC answers 400 to every
// request, a permanent failure) is never taken up again: init must report
// the dead letter and exit non-zero at once. It followed for ever instead,
// waiting for a progress record that no worker would write.
func TestInitReturnsWhenTheInitializeJobIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Locations: 3, Budget: -1})
	e.bc.SetOutage(http.StatusBadRequest)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	code, out, errOut := runCmd(t, ctx, "", "init", "location", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false", "--timeout", "20s")
	t.Logf("init location: exit %d after %v\nstdout:\n%s\nstderr:\n%s", code, time.Since(start).Round(time.Millisecond), out, errOut)
	if dead := streamMsgs(t, e.b, messages.StreamDLQ); dead == 0 {
		t.Fatalf("the initialize job was not dead-lettered: the test proves nothing")
	}
	if code == 0 {
		t.Fatal("init exited 0 although its initialize job was dead-lettered")
	}
	if strings.Contains(errOut, "stopped following") {
		t.Fatalf("init never noticed that its initialize job was dead-lettered: it followed until --timeout")
	}
	seq := 0
	for _, want := range []string{"the initialize job of location", "was dead-lettered", "permanent", "bcsync dlq show "} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error lacks %q: %s", want, errOut)
		}
	}
	if _, after, ok := strings.Cut(errOut, "bcsync dlq show "); ok {
		seq, _ = strconv.Atoi(strings.TrimSpace(after))
	}
	// The command it names shows the initialize job's letter.
	code, show, showErr := runCmd(t, ctx, "", "dlq", "show", strconv.Itoa(seq), "--nats-url", e.b.ClientURL())
	if code != 0 || !strings.Contains(show, "initialize") {
		t.Errorf("bcsync dlq show %d: exit %d\n%s%s", seq, code, show, showErr)
	}
}

// init for a subscription that no worker serves (a typo: no consumer
// bcsync-<name> exists) followed for ever, with no hint; with --timeout it
// ended saying "the initialization goes on", which it did not. It must fail
// naming the subscription, and the ones workers serve.
func TestInitUnknownSubscriptionIsReported(t *testing.T) {
	t.Parallel()
	e := newInitEnv(t, bctest.Options{Locations: 3, Budget: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The worker serves "demo"; wait until its consumer exists.
	waitUntil(t, 30*time.Second, "consumer of demo", func() bool {
		_, err := e.b.JS.Consumer(ctx, messages.StreamJobs, "bcsync-demo")
		return err == nil
	})
	code, out, errOut := runCmd(t, ctx, "", "init", "location", "--subscription", "dmeo", "--nats-url", e.b.ClientURL(), "--progress=false", "--timeout", "30s")
	t.Logf("init --subscription dmeo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	if code == 0 {
		t.Fatal("init exited 0")
	}
	if strings.Contains(errOut, "stopped following") {
		t.Errorf("init followed a job no worker will ever take until --timeout, and says the initialization goes on; want an error naming the unknown subscription")
	}
	for _, want := range []string{`no worker has served subscription "dmeo"`, "check the spelling", "workers serve: demo"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error lacks %q: %s", want, errOut)
		}
	}
	if strings.Contains(out, "queued") {
		t.Errorf("init queued a job for a subscription no worker serves:\n%s", out)
	}
}

// `init all` runs the types "in that order, each once the one before is
// done" (--help, README). With --no-wait it queued all three initialize
// jobs at once, so workers ran them side by side: the combination is
// refused, saying what to run instead, and nothing is queued.
func TestInitAllNoWaitIsRefused(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	code, out, errOut := runCmd(t, ctx, "", "init", "all", "--subscription", "demo", "--nats-url", b.ClientURL(), "--no-wait")
	if code == 0 {
		t.Errorf("init all --no-wait exited 0\n%s\n%s", out, errOut)
	}
	for _, want := range []string{"drop --no-wait", "bcsync init customer_category --subscription demo --no-wait`, then `bcsync init location"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error lacks %q: %s", want, errOut)
		}
	}
	s, err := b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range initOrder {
		if _, err := s.GetLastMsgForSubject(ctx, messages.TypeFilter("demo", typ)); err == nil {
			t.Errorf("init all --no-wait queued %s:\n%s", typ, out)
		}
	}
}

// bench init, small: the first worker stopped half way, the successor
// resumes at the checkpoint, every location arrives once.
func TestBenchInitResumesAfterTheKill(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := runCmd(t, ctx, "", "bench", "init", "--locations", "300", "--page-size", "10", "--kill-after", "10")
	if code != 0 {
		t.Fatalf("bench init exited %d\n%s\n%s", code, out, errOut)
	}
	t.Log(out)
	for _, want := range []string{"(30 pages)", "stopped without grace after 1", "300 records, 300 links", "30 pages, 300 jobs enqueued, done=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// bench pipeline, small, from the real binary (its end-to-end part runs
// the binary's worker command as separate processes): both measurements run
// and report, every job is written, and each worker's RSS is reported.
func TestBenchPipelineReports(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "bench", "pipeline", "--jobs", "300", "--rounds", "2", "--e2e-jobs", "50").CombinedOutput()
	if err != nil {
		t.Fatalf("bench pipeline: %v\n%s", err, out)
	}
	for _, want := range []string{"raw JetStream consume+ack", "bcsync consume loop", "% of raw;", "over the rounds)", "medians of 2 rounds", "end to end", "p50", "p99",
		"(50 writes)", "ms in the workers", "ms in this process", "peak RSS of worker 1", "peak RSS of worker 2", "peak RSS of this process"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// cpuTime reads a process's CPU time from /proc: it grows as the process
// works, and is 0 for a process that does not exist.
func TestCPUTime(t *testing.T) {
	// Busy until it shows 30 ms more (a loaded machine gives this process
	// less than the wall time), or for 10 s, which means it does not grow.
	before := cpuTime(os.Getpid())
	start := time.Now()
	for cpuTime(os.Getpid()) < before+30*time.Millisecond {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("CPU time still %v after 10 s of busy loop (from %v)", cpuTime(os.Getpid()), before)
		}
	}
	if d := cpuTime(1 << 30); d != 0 {
		t.Errorf("CPU time of no process: %v", d)
	}
}

// A worker of bench pipeline that exits before its time fails the run at
// once, with the worker's own words: here every worker refuses a setting
// it inherits from the environment.
func TestBenchPipelineReportsAWorkerThatExited(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "bench", "pipeline", "--jobs", "10", "--e2e-jobs", "10")
	cmd.Env = append(os.Environ(), "BCSYNC_NATS_DUPLICATE_WINDOW=banana")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("bench pipeline: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"a worker exited (exit status 1)", "BCSYNC_NATS_DUPLICATE_WINDOW", "not a duration"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A record job requeued on its last delivery lands past the bulk's
// LastSeq: init waits for it once the worker marked it, and is done once
// it is settled.
func TestInitWaitsForRequeuedCopies(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	progress := brokertest.KV(t, b, broker.BucketProgress)
	seqs, s := publishLocations(t, b.JS, 4) // the initialize job, two record jobs, a requeued copy
	for _, seq := range seqs[:3] {          // settled
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	f := follower{js: b.JS, progress: progress, sub: "demo", t: messages.TypeLocation, jobID: "init-1", seq: seqs[0]}
	p := worker.Progress{Done: true, LastSeq: seqs[2]}
	check := func(want bool, when string) {
		t.Helper()
		if left, err := f.left(ctx, p); err != nil || left != want {
			t.Errorf("%s: left = %v (%v), want %v", when, left, err, want)
		}
	}
	check(false, "the copy not marked") // as before workers marked copies
	if _, err := progress.Create(ctx, worker.RequeuedKey("demo", "init-1"), []byte(strconv.FormatUint(seqs[3], 10))); err != nil {
		t.Fatal(err)
	}
	check(true, "the copy marked and queued")
	if err := s.DeleteMsg(ctx, seqs[3]); err != nil {
		t.Fatal(err)
	}
	check(false, "the copy settled")
}

// interleavedKV runs after, once, right after the first read of the
// requeued mark: what a worker requeueing a record job does between
// follower.left's read of the mark and its look at the job stream.
type interleavedKV struct {
	jetstream.KeyValue
	key   string
	once  sync.Once
	after func()
}

func (k *interleavedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := k.KeyValue.Get(ctx, key)
	if key == k.key {
		k.once.Do(k.after)
	}
	return e, err
}

// A worker requeues a record job on its last delivery as the docs say:
// copy published (past LastSeq), mark raised, original settled. left reads
// the mark before it looks at the stream, so a requeue that lands between
// the two is missed: left reports nothing left while the copy is queued,
// and init exits 0 before the job ran (if it is then dead-lettered, init
// never says so).
func TestLeftSeesACopyRequeuedBetweenItsTwoReads(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	progress := brokertest.KV(t, b, broker.BucketProgress)
	seqs, s := publishLocations(t, b.JS, 3)           // the initialize job, one record job, and (below) its requeued copy
	if err := s.DeleteMsg(ctx, seqs[0]); err != nil { // the initialize job is settled
		t.Fatal(err)
	}
	// seqs[1] is the record job on its last delivery; seqs[2] its copy,
	// published already. The worker now raises the mark, then settles seqs[1].
	kv := &interleavedKV{KeyValue: progress, key: worker.RequeuedKey("demo", "init-1"), after: func() {
		if _, err := progress.Create(ctx, worker.RequeuedKey("demo", "init-1"), []byte(strconv.FormatUint(seqs[2], 10))); err != nil {
			t.Error(err)
		}
		if err := s.DeleteMsg(ctx, seqs[1]); err != nil {
			t.Error(err)
		}
	}}
	f := follower{js: b.JS, progress: kv, sub: "demo", t: messages.TypeLocation, jobID: "init-1", seq: seqs[0]}
	left, err := f.left(ctx, worker.Progress{Done: true, LastSeq: seqs[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !left {
		t.Errorf("left = false while the requeued copy (seq %d) is still queued: init reports the initialization done", seqs[2])
	}
}

// A code BC upper-cased but that keeps a letter with no upper-case form
// ("GROßHANDEL") is a valid job key: the record is synced like the others.
// A record that cannot travel as a job is named by init, which fails: it
// once counted it as enqueued and exited 0.
func TestInitReportsTheRecordsItCannotEnqueue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   string
		synced int
		exit   int
	}{
		{"GROßHANDEL", 5, 0},
		{"BAD\tCODE", 4, 1},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			e := newInitEnv(t, bctest.Options{Locations: 5, Budget: -1})
			if !e.bc.Rename(bctest.SetLocations, e.bc.LocationCodes()[2], tc.code) {
				t.Fatal("rename refused")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code, out, errOut := runCmd(t, ctx, "", "init", "location", "--subscription", "demo", "--nats-url", e.b.ClientURL(), "--progress=false")
			if got := e.ip.Count("location"); code != tc.exit || got != tc.synced {
				t.Fatalf("exit %d with %d of 5 locations at iPaaS.com, want exit %d with %d\nstdout:\n%s\nstderr:\n%s", code, got, tc.exit, tc.synced, out, errOut)
			}
			if tc.exit == 0 {
				return
			}
			for _, want := range []string{"4 jobs enqueued", "1 BC records skipped", `"BAD\tCODE"`, "non-printable"} {
				if !strings.Contains(out, want) {
					t.Errorf("stdout does not say %q:\n%s", want, out)
				}
			}
			if !strings.Contains(errOut, "1 BC records were not synced") {
				t.Errorf("stderr does not say why init failed:\n%s", errOut)
			}
		})
	}
}

// publishLocations publishes n location jobs of subscription demo (keys L0,
// L1, ...) and returns their sequences and the job stream.
func publishLocations(t *testing.T, js jetstream.JetStream, n int) ([]uint64, jetstream.Stream) {
	t.Helper()
	ctx := context.Background()
	var seqs []uint64
	for i := range n {
		ack, _, err := messages.Publish(ctx, js, messages.Job{Subscription: "demo", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: fmt.Sprintf("L%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	s, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	return seqs, s
}
