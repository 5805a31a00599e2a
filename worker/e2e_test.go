package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
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
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// e2e is one subscription wired to the strict fakes over a real JetStream.
type e2e struct {
	t     *testing.T
	bc    *bctest.Server
	ip    *ipaastest.Server
	b     *broker.Broker
	cfg   *config.Config
	stats *worker.Stats
	// tune, when set, adjusts each worker's options.
	tune func(*worker.Options)
}

type e2eOptions struct {
	bc         bctest.Options
	maxDeliver int
	// wrongSecret and wrongKey configure bad credentials.
	wrongSecret, wrongKey string
	// subscription is the name served. Default "contoso".
	subscription string
	// budget per window is the BC throttling setting. Default 100000 per 1m.
	budget int
	window string
}

func newE2E(t *testing.T, o e2eOptions) *e2e {
	t.Helper()
	bc := bctest.NewServer(o.bc)
	t.Cleanup(bc.Close)
	ip := ipaastest.NewServer(ipaastest.Options{})
	t.Cleanup(ip.Close)
	if o.maxDeliver == 0 {
		o.maxDeliver = 5
	}
	if o.subscription == "" {
		o.subscription = "contoso"
	}
	if o.budget == 0 {
		o.budget, o.window = 100000, "1m"
	}
	yaml := "subscriptions:\n" + subscriptionYAML(o.subscription, bc, ip, o.budget, o.window, o.maxDeliver)
	secret, key := bc.ClientSecret(), ip.APIKey()
	if o.wrongSecret != "" {
		secret = o.wrongSecret
	}
	if o.wrongKey != "" {
		key = o.wrongKey
	}
	cfg, err := config.Parse([]byte(yaml), config.MapEnv(map[string]string{
		config.EnvPrefix(o.subscription) + "CLIENT_SECRET": secret,
		config.EnvPrefix(o.subscription) + "IPAAS_API_KEY": key,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return &e2e{t: t, bc: bc, ip: ip, b: brokertest.New(t), cfg: cfg, stats: &worker.Stats{}}
}

// subscriptionYAML is one subscription of a configuration file that points
// at the fakes bc and ip, with a BC budget of budget per window.
func subscriptionYAML(name string, bc *bctest.Server, ip *ipaastest.Server, budget int, window string, maxDeliver int) string {
	return fmt.Sprintf(`  - name: %s
    company_name: %q
    tenant_id: %s
    client_id: %s
    environment: %s
    api_url: %s
    authority_url: %s
    page_size: 7
    throttling: {requests_per_window: %d, window: %s, max_concurrency: 5}
    ipaas:
      base_url: %s
      system_id: %d
      throttling: {requests_per_window: 100000, window: 1m, max_concurrency: 10}
    worker:
      concurrency: 8
      max_deliver: %d
      ack_wait: 10s
      backoff_initial: 20ms
      backoff_max: 200ms
    poll: {interval: 0s}
`, name, bc.CompanyName(), bc.TenantID(), bc.ClientID(), bc.Environment(), bc.URL(), bc.URL(),
		budget, window, ip.URL(), ip.SystemID(), maxDeliver)
}

// startWorker runs a worker with its own NATS connection, as a separate
// process would. stop cancels it and waits for it to exit.
func (e *e2e) startWorker(id string, log zerolog.Logger, hc *http.Client) (stop func()) {
	e.t.Helper()
	wb, err := broker.Connect(context.Background(), broker.Options{URL: e.b.ClientURL(), Log: zerolog.Nop()})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := worker.Options{Broker: wb, ID: id, Grace: 2 * time.Second, PollWait: 200 * time.Millisecond, Log: log, Stats: e.stats, HTTPClient: hc}
	if e.tune != nil {
		e.tune(&opts)
	}
	go func() { done <- worker.Run(ctx, e.cfg, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("worker %s: %v", id, err)
			}
			wb.Close()
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *e2e) publish(typ messages.Type, keys ...string) {
	e.t.Helper()
	for _, k := range keys {
		if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: typ, Op: messages.OpUpsert, Key: k}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// consumerPaused reports whether the subscription's consumer is paused.
func (e *e2e) consumerPaused() bool {
	e.t.Helper()
	c, err := e.b.JS.Consumer(context.Background(), messages.StreamJobs, broker.ConsumerName("contoso"))
	if err != nil {
		e.t.Fatal(err)
	}
	return c.CachedInfo().Paused
}

func (e *e2e) streamMsgs(name string) uint64 {
	e.t.Helper()
	s, err := e.b.JS.Stream(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func TestE2ENJobsGiveNRecordsAndNAcks(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 40, ShipmentMethods: 15, PriceGroups: 12, Customers: 60}})
	e.startWorker("w1", zerolog.Nop(), nil)
	e.startWorker("w2", zerolog.Nop(), nil)
	e.publish(messages.TypeCustomerCategory, e.bc.PriceGroupCodes()...)
	e.publish(messages.TypeLocation, e.bc.LocationCodes()...)
	e.publish(messages.TypeShippingMethod, e.bc.ShipmentMethodCodes()...)
	e.publish(messages.TypeCustomer, e.bc.CustomerNumbers()...)
	const n = 40 + 15 + 12 + 60
	waitFor(t, 30*time.Second, "all jobs acked", func() bool { return e.stats.Acked.Load() == n })
	for table, want := range map[string]int{"customer category": 12, "location": 40, "shipping method": 15, "customer": 60} {
		if got := e.ip.Count(table); got != want {
			t.Errorf("iPaaS.com holds %d %s records, want %d", got, table, want)
		}
	}
	if got := e.streamMsgs(messages.StreamJobs); got != 0 {
		t.Errorf("%d jobs left in the stream", got)
	}
	if d := e.stats.DeadLettered.Load(); d != 0 || e.streamMsgs(messages.StreamDLQ) != 0 {
		t.Errorf("%d dead letters", d)
	}
	// Spot-check a mapped record against BC.
	loc, _ := e.bc.Record(bctest.SetLocations, e.bc.LocationCodes()[3])
	got, ok := e.ip.Lookup("location", e.bc.LocationCodes()[3])
	if !ok || got["name"] != loc["code"] || got["description"] != loc["displayName"] || got["city"] != loc["city"] {
		t.Errorf("location %v mapped to %v", loc, got)
	}
}

func TestE2ETransientIPaaSFailureIsRetriedThenAcked(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3}})
	e.ip.FailNext(2, http.StatusServiceUnavailable, "INTL-1000", 0)
	e.startWorker("w1", zerolog.Nop(), nil)
	e.publish(messages.TypeLocation, e.bc.LocationCodes()[0])
	waitFor(t, 20*time.Second, "job acked", func() bool { return e.stats.Acked.Load() == 1 })
	if e.stats.Retried.Load() != 2 || e.ip.Count("location") != 1 || e.stats.DeadLettered.Load() != 0 {
		t.Errorf("retried=%d records=%d dead=%d, want 2/1/0", e.stats.Retried.Load(), e.ip.Count("location"), e.stats.DeadLettered.Load())
	}
}

func TestE2EBCThrottlingIsRetriedWithRetryAfter(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3}})
	e.bc.FailNext(1, http.StatusTooManyRequests, time.Second)
	e.startWorker("w1", zerolog.Nop(), nil)
	start := time.Now()
	e.publish(messages.TypeLocation, e.bc.LocationCodes()[0])
	waitFor(t, 20*time.Second, "job acked", func() bool { return e.stats.Acked.Load() == 1 })
	// The backoff is configured at 20ms; only Retry-After explains a wait of a second.
	if time.Since(start) < time.Second {
		t.Errorf("job finished %v after a 429 with Retry-After: 1", time.Since(start))
	}
}

func TestE2ESameJobPublishedTwiceCreatesOneRecord(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3}})
	ctx := context.Background()
	job := messages.Job{ID: "retry-me", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: e.bc.LocationCodes()[0]}
	ack1, _, err := messages.Publish(ctx, e.b.JS, job)
	if err != nil {
		t.Fatal(err)
	}
	ack2, _, err := messages.Publish(ctx, e.b.JS, job)
	if err != nil {
		t.Fatal(err)
	}
	if ack1.Duplicate || !ack2.Duplicate {
		t.Errorf("dedupe: first duplicate=%v second duplicate=%v", ack1.Duplicate, ack2.Duplicate)
	}
	// A distinct job for the same record (another id) is not deduplicated,
	// but the idempotent write still leaves one record.
	job.ID = "another"
	if _, _, err := messages.Publish(ctx, e.b.JS, job); err != nil {
		t.Fatal(err)
	}
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "both jobs acked", func() bool { return e.stats.Acked.Load() == 2 })
	if got := e.ip.Count("location"); got != 1 {
		t.Errorf("iPaaS.com holds %d locations, want 1", got)
	}
}

// readmeNATSPub extracts the "nats pub" example from the README: its
// subject, its body exactly as the shell passes it, and its headers.
func readmeNATSPub(t *testing.T) (subject string, body []byte, headers map[string]string) {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)nats pub (\S+) \\\n\s*'([^']*)'(?: \\\n\s*((?:-H \S+ ?)+))?`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no `nats pub <subject> \\ '<json>'` example")
	}
	headers = map[string]string{}
	for _, h := range strings.Fields(strings.ReplaceAll(string(m[3]), "-H", "")) {
		k, v, _ := strings.Cut(h, ":")
		headers[k] = v
	}
	return string(m[1]), m[2], headers
}

func TestE2ERawPublishAsInTheREADME(t *testing.T) {
	t.Parallel()
	subject, body, headers := readmeNATSPub(t)
	var job messages.Job
	if err := json.Unmarshal(body, &job); err != nil {
		t.Fatalf("README example body is not JSON: %v", err)
	}
	// Serve the README's subscription, and a BC company holding its key.
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3}, subscription: job.Subscription})
	if !e.bc.Rename(bctest.SetLocations, e.bc.LocationCodes()[0], job.Key) {
		t.Fatal("could not give a BC location the README's key")
	}
	for _, withHeaders := range []bool{false, true} {
		m := nats.NewMsg(subject)
		m.Data = body
		if withHeaders {
			for k, v := range headers {
				m.Header.Set(k, v)
			}
		} else {
			m.Header = nil // plain "nats pub" sets no header
		}
		if err := e.b.NC.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "raw jobs settled", func() bool { return e.stats.Acked.Load()+e.stats.DeadLettered.Load() == 2 })
	if got, ok := e.ip.Lookup("location", job.Key); !ok || got["name"] != job.Key {
		t.Errorf("the README's job did not create location %s: %v", job.Key, got)
	}
	if e.ip.Count("location") != 1 || e.stats.DeadLettered.Load() != 0 {
		t.Errorf("locations=%d dead=%d, want 1/0", e.ip.Count("location"), e.stats.DeadLettered.Load())
	}
}

func TestE2EWorkerStoppedMidRunLosesNoJob(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Customers: 150}})
	e.bc.SetLatency(20 * time.Millisecond)
	e.publish(messages.TypeCustomer, e.bc.CustomerNumbers()...)
	stop1 := e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "some jobs done", func() bool { return e.stats.Acked.Load() >= 20 })
	stop1()
	if e.stats.Acked.Load() == 150 {
		t.Fatal("the first worker finished everything before it was stopped; the test proves nothing")
	}
	e.startWorker("w2", zerolog.Nop(), nil)
	waitFor(t, 30*time.Second, "every job done", func() bool { return e.ip.Count("customer") == 150 })
	waitFor(t, 10*time.Second, "stream empty", func() bool { return e.streamMsgs(messages.StreamJobs) == 0 })
	if d := e.stats.DeadLettered.Load(); d != 0 {
		t.Errorf("%d dead letters", d)
	}
}

func TestE2EMalformedJobIsDeadLetteredWithReason(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3}})
	body := `{"v":1,"id":"bad-1","subscription":"contoso","type":"location","op":"upsert","key":"lower"}`
	if err := e.b.NC.Publish("bcsync.jobs.contoso.location.lower", []byte(body)); err != nil {
		t.Fatal(err)
	}
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "dead letter", func() bool { return e.stats.DeadLettered.Load() == 1 })
	dl := readDLQ(t, e.b.JS, 1)[0]
	if string(dl.Body) != body || dl.Subject != "bcsync.jobs.contoso.location.lower" || !strings.Contains(dl.Reason, "upper-case") {
		t.Errorf("dead letter %+v", dl)
	}
}

// recordingTransport remembers the bearer tokens the clients send.
type recordingTransport struct {
	mu     sync.Mutex
	tokens map[string]bool
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		rt.mu.Lock()
		rt.tokens[tok] = true
		rt.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestE2ENoSecretInLogsOrDeadLetters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    e2eOptions
	}{
		{"good credentials", e2eOptions{}},
		{"wrong client secret", e2eOptions{wrongSecret: "Wrong~Secret.Value_987654321"}},
		{"wrong api key", e2eOptions{wrongKey: "wrong-ipaas-api-key-0123456789"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.o.bc = bctest.Options{Locations: 5, Customers: 5}
			tc.o.maxDeliver = 2
			e := newE2E(t, tc.o)
			logs := &syncBuffer{}
			rt := &recordingTransport{tokens: map[string]bool{}}
			e.startWorker("w1", zerolog.New(logs).Level(zerolog.DebugLevel), &http.Client{Transport: rt, Timeout: 10 * time.Second})
			// A customer snapshot that cannot be mapped: dead-lettered at once.
			if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{
				Subscription: "contoso", Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: "C999",
				Data: []byte(`{"number":"C999","displayName":"","type":"Person"}`),
			}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the malformed job dead-lettered", func() bool { return e.stats.DeadLettered.Load() == 1 })
			e.publish(messages.TypeLocation, e.bc.LocationCodes()...)
			if tc.o.wrongSecret == "" && tc.o.wrongKey == "" {
				waitFor(t, 30*time.Second, "every job acked", func() bool { return e.stats.Acked.Load() == 5 })
			} else {
				// Refused credentials hold the jobs and pause the subscription.
				waitFor(t, 30*time.Second, "the jobs held", func() bool { return e.stats.Held.Load() >= 1 })
				waitFor(t, 10*time.Second, "the subscription paused", func() bool { return e.consumerPaused() })
				time.Sleep(200 * time.Millisecond) // in-flight jobs settle
				if n := e.stats.DeadLettered.Load(); n != 1 {
					t.Errorf("%d dead letters, want only the malformed job's", n)
				}
			}
			var dead []string
			for _, dl := range readDLQ(t, e.b.JS, int(e.stats.DeadLettered.Load())) {
				dead = append(dead, dl.Reason, string(dl.Body), fmt.Sprint(dl.Headers))
			}
			all := logs.String() + strings.Join(dead, "\n")
			if !strings.Contains(logs.String(), `"level":"debug"`) && tc.o.wrongSecret == "" && tc.o.wrongKey == "" {
				t.Error("no debug line was logged; the test would prove nothing")
			}
			secrets := []string{e.bc.ClientSecret(), e.ip.APIKey(), tc.o.wrongSecret, tc.o.wrongKey}
			rt.mu.Lock()
			for tok := range rt.tokens {
				secrets = append(secrets, tok)
			}
			rt.mu.Unlock()
			if tc.o.wrongSecret == "" && len(rt.tokens) < 2 { // a BC token and the iPaaS.com key
				t.Errorf("recorded %d bearer tokens; the test would prove nothing", len(rt.tokens))
			}
			for _, s := range secrets {
				if s != "" && strings.Contains(all, s) {
					t.Errorf("secret %.6s… appears in logs or dead letters", s)
				}
			}
			if tc.o.wrongSecret != "" && (!strings.Contains(all, "7000215") || !strings.Contains(all, "fix:")) {
				t.Errorf("the wrong-secret failure is not explained (no AADSTS7000215) in:\n%s", all)
			}
		})
	}
}

func TestE2EPermanentFailuresAreDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inject func(e *e2e)
		class  string
		reason string
	}{
		{"BC 400", func(e *e2e) { e.bc.FailNext(1, http.StatusBadRequest, 0) }, "permanent", "400"},
		{"iPaaS.com validation", func(e *e2e) { e.ip.FailNext(1, http.StatusBadRequest, "VALD-1049", 0) }, "permanent", "VALD-1049"},
		{"BC record gone", func(e *e2e) {}, "not_found", "L9999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 2}})
			key := e.bc.LocationCodes()[0]
			if tc.class == "not_found" {
				key = "L9999"
			}
			tc.inject(e)
			e.publish(messages.TypeLocation, key)
			e.startWorker("w1", zerolog.Nop(), nil)
			waitFor(t, 20*time.Second, "dead letter", func() bool { return e.stats.DeadLettered.Load() == 1 })
			dl := readDLQ(t, e.b.JS, 1)[0]
			if dl.Attempts != 1 || dl.ErrorClass != tc.class || !strings.Contains(dl.Reason, tc.reason) || dl.Key != key {
				t.Errorf("dead letter %+v, want class %s after 1 attempt with %q in the reason", dl, tc.class, tc.reason)
			}
			if e.stats.Retried.Load() != 0 || e.ip.Count("location") != 0 {
				t.Errorf("retried=%d records=%d, want 0/0", e.stats.Retried.Load(), e.ip.Count("location"))
			}
			if got := e.streamMsgs(messages.StreamJobs); got != 0 {
				t.Errorf("%d jobs left in the stream after dead-lettering", got)
			}
		})
	}
}

func TestE2ESnapshotSkipsTheBCRead(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3}})
	ctx := context.Background()
	snap := `{"id":"5d115c9c-44e3-ea11-bb43-000d3a2feca1","code":"SNAP","displayName":"From the snapshot","city":"Oslo","@odata.etag":"W/\"x\""}`
	for _, j := range []messages.Job{
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "SNAP", Data: []byte(snap)},
		// A snapshot of another record than the key names: refused.
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "OTHER", Data: []byte(snap)},
		// A snapshot whose fields have the wrong types: refused.
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "BAD", Data: []byte(`{"code":7}`)},
	} {
		if _, _, err := messages.Publish(ctx, e.b.JS, j); err != nil {
			t.Fatal(err)
		}
	}
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "jobs settled", func() bool { return e.stats.Acked.Load()+e.stats.DeadLettered.Load() == 3 })
	if e.stats.Acked.Load() != 1 || e.stats.DeadLettered.Load() != 2 {
		t.Errorf("acked=%d dead=%d, want 1/2", e.stats.Acked.Load(), e.stats.DeadLettered.Load())
	}
	if got, ok := e.ip.Lookup("location", "SNAP"); !ok || got["description"] != "From the snapshot" || got["city"] != "Oslo" {
		t.Errorf("snapshot record at iPaaS.com: %v", got)
	}
	if n := e.bc.Stats().DataRequests[bctest.SetLocations]; n != 0 {
		t.Errorf("%d BC location reads for jobs that carried snapshots", n)
	}
	for _, dl := range readDLQ(t, e.b.JS, 2) {
		if dl.ErrorClass != "permanent" || !strings.Contains(dl.Reason, "job data") {
			t.Errorf("dead letter %s: %s %q", dl.Key, dl.ErrorClass, dl.Reason)
		}
	}
}

func TestE2EDeleteDeactivatesTheLinkedRecord(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 3, PriceGroups: 2}})
	ctx := context.Background()
	loc, loc2, cat := e.bc.LocationCodes()[0], e.bc.LocationCodes()[1], e.bc.PriceGroupCodes()[0]
	row, _ := e.bc.Record(bctest.SetLocations, loc2)
	guid2, _ := row["id"].(string)
	e.publish(messages.TypeLocation, loc, loc2)
	e.publish(messages.TypeCustomerCategory, cat)
	e.startWorker("w1", zerolog.Nop(), nil)
	waitFor(t, 20*time.Second, "records created", func() bool { return e.stats.Acked.Load() == 3 })
	for _, j := range []messages.Job{
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelete, Key: loc},
		// BC's deleted notifications name the record by its id only.
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelete, Key: strings.ToUpper(guid2)},
		{Subscription: "contoso", Type: messages.TypeCustomerCategory, Op: messages.OpDelete, Key: cat},                            // never deleted
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelete, Key: "NEVERSEEN"},                            // no-op
		{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelete, Key: "5d115c9c-44e3-ea11-bb43-000d3a2feca1"}, // never synced: no-op
	} {
		if _, _, err := messages.Publish(ctx, e.b.JS, j); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "deletes settled", func() bool { return e.stats.Acked.Load()+e.stats.DeadLettered.Load() == 8 })
	for _, code := range []string{loc, loc2} {
		if _, ok := e.ip.Lookup("location", code); ok {
			t.Errorf("location %s still active after its delete job", code)
		}
	}
	if n := e.ip.Count("location"); n != 0 {
		t.Errorf("%d active locations, want 0", n)
	}
	if _, ok := e.ip.Lookup("customer category", cat); !ok {
		t.Errorf("customer category %s was deleted; the BC connection never deletes categories", cat)
	}
	if n := e.stats.DeadLettered.Load(); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

func TestE2ETwoSubscriptionsUseTheirOwnCompanies(t *testing.T) {
	t.Parallel()
	a := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 4, Seed: 1}})
	b := bctest.NewServer(bctest.Options{Locations: 6, Seed: 2, ClientSecret: "Fabrikam~Secret.Value_0123456789", CompanyName: "Fabrikam O'Brien & Co."})
	t.Cleanup(b.Close)
	ip2 := ipaastest.NewServer(ipaastest.Options{APIKey: "fabrikam-ipaas-key-0123456789abcdef", SystemID: 2002})
	t.Cleanup(ip2.Close)
	yaml := "subscriptions:\n" + subscriptionYAML("contoso", a.bc, a.ip, 100000, "1m", 5) +
		subscriptionYAML("fabrikam", b, ip2, 100000, "1m", 5)
	cfg, err := config.Parse([]byte(yaml), config.MapEnv(map[string]string{
		"BCSYNC_CONTOSO_CLIENT_SECRET": a.bc.ClientSecret(), "BCSYNC_CONTOSO_IPAAS_API_KEY": a.ip.APIKey(),
		"BCSYNC_FABRIKAM_CLIENT_SECRET": b.ClientSecret(), "BCSYNC_FABRIKAM_IPAAS_API_KEY": ip2.APIKey(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	a.cfg = cfg
	a.startWorker("w1", zerolog.Nop(), nil)
	a.publish(messages.TypeLocation, a.bc.LocationCodes()...)
	for _, k := range b.LocationCodes() {
		if _, _, err := messages.Publish(context.Background(), a.b.JS, messages.Job{Subscription: "fabrikam", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "both subscriptions synced", func() bool { return a.stats.Acked.Load() == 10 })
	if a.ip.Count("location") != 4 || ip2.Count("location") != 6 {
		t.Errorf("contoso's iPaaS.com holds %d locations (want 4), fabrikam's %d (want 6)", a.ip.Count("location"), ip2.Count("location"))
	}
	if a.bc.Stats().TokensIssued == 0 || b.Stats().TokensIssued == 0 {
		t.Error("each subscription should have used its own app registration")
	}
}

// TestE2EConcurrentJobsReadBCInBatches: jobs of one type running at once
// read their BC records together (one request for many), so a burst costs
// far fewer requests from BC's budget than jobs; every record still lands.
func TestE2EConcurrentJobsReadBCInBatches(t *testing.T) {
	t.Parallel()
	const n = 120
	e := newE2E(t, e2eOptions{bc: bctest.Options{Customers: n}})
	// A slow BC: while one read runs, the other jobs' reads gather.
	e.bc.SetLatency(30 * time.Millisecond)
	e.startWorker("w1", zerolog.Nop(), nil)
	e.publish(messages.TypeCustomer, e.bc.CustomerNumbers()...)
	waitFor(t, 60*time.Second, "all jobs acked", func() bool { return e.stats.Acked.Load() == n })
	if got := e.ip.Count("customer"); got != n {
		t.Errorf("iPaaS.com holds %d customers, want %d", got, n)
	}
	reads := e.bc.Stats().APIRequests // the company's look-up included
	t.Logf("%d customer jobs read BC in %d requests (pages of 7 rows)", n, reads)
	// One request per job without batching; batches of up to 8 (the
	// worker's concurrency) take at least two pages of 7 each.
	if reads >= n*2/3 {
		t.Errorf("%d BC requests for %d jobs: reads not batched", reads, n)
	}
}

// Product jobs (the receiver makes them of BC's items webhooks) are synced
// like the other types: read from BC, batched, written, and deactivated by
// a delete. They were all dead-lettered: "not synced by this worker version".
func TestE2EProductsAreSynced(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Items: 12}})
	e.startWorker("w1", zerolog.Nop(), nil)
	numbers := e.bc.ItemNumbers()
	e.publish(messages.TypeProduct, numbers...)
	waitFor(t, 30*time.Second, "all product jobs acked", func() bool { return e.stats.Acked.Load() == int64(len(numbers)) })
	if got := e.ip.Count("product"); got != len(numbers) || e.stats.DeadLettered.Load() != 0 {
		t.Fatalf("iPaaS.com holds %d products (want %d), %d dead letters", got, len(numbers), e.stats.DeadLettered.Load())
	}
	item, _ := e.bc.Record(bctest.SetItems, numbers[2])
	got, ok := e.ip.Lookup("product", numbers[2])
	if !ok || got["sku"] != item["number"] || got["name"] != item["displayName"] || got["type"] != item["type"] {
		t.Errorf("item %v mapped to %v", item, got)
	}
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeProduct,
		Op: messages.OpDelete, Key: numbers[2]}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the delete acked", func() bool { return e.stats.Acked.Load() == int64(len(numbers))+1 })
	if _, ok := e.ip.Lookup("product", numbers[2]); ok {
		t.Error("the product is still live after its delete job")
	}
}
