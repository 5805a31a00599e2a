package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The real worker serves /healthz, /readyz and Prometheus /metrics on its
// admin port: jobs by outcome, requests by service and status, the
// consumer's backlog and the pause state, and no secret.
func TestWorkerBinaryServesMetricsAndProbes(t *testing.T) {
	t.Parallel()
	bc := bctest.NewServer(bctest.Options{Locations: 5})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	b := brokertest.New(t)
	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	sc.NATSURL = b.NC.ConnectedUrl()
	cfgPath := filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderSimConfig(sc)), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	w := startProc(t, "worker", testEnv(sc.SecretEnv+"="+bc.ClientSecret(), sc.KeyEnv+"="+ip.APIKey()), []string{bc.ClientSecret(), ip.APIKey()},
		"worker", "--config", cfgPath, "--admin-listen", admin)
	for _, k := range bc.LocationCodes() {
		if _, _, err := messages.Publish(context.Background(), b.JS, messages.Job{Subscription: "demo", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 30*time.Second, "the locations synced", func() bool { return ip.Count("location") == 5 })
	waitUntil(t, 10*time.Second, "the worker ready", func() bool { code, _ := httpGet("http://" + admin + "/readyz"); return code == 200 })
	if code, body := httpGet("http://" + admin + "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := httpGet("http://" + admin + "/lag"); code != 200 || !strings.Contains(body, `"demo":{"pending":0,"ack_pending":0,"lag":0}`) {
		t.Errorf("/lag once every job is settled: %d %s", code, body)
	}
	var metrics string
	waitUntil(t, 10*time.Second, "5 acked jobs in /metrics", func() bool {
		_, metrics = httpGet("http://" + admin + "/metrics")
		return strings.Contains(metrics, `bcsync_jobs_total{outcome="acked",subscription="demo",type="location"} 5`)
	})
	for _, want := range []string{
		`bcsync_http_requests_total{service="bc",status="200",subscription="demo"}`,
		`bcsync_http_requests_total{service="entra",status="200",subscription="demo"} 1`,
		`bcsync_http_requests_total{service="ipaas",status="`,
		`bcsync_job_duration_seconds_bucket{subscription="demo",type="location",le="`,
		`bcsync_consumer_pending_jobs{subscription="demo"} 0`,
		`bcsync_subscription_paused{subscription="demo"} 0`,
		`bcsync_token_fetches_total 1`,
		`bcsync_throttle_permits_total`,
		`bcsync_throttle_leases_created_total`,
		`bcsync_throttle_leases_reused_total`,
		`go_goroutines`,
		"go_gc_gogc_percent 400", // the worker's default (testEnv drops GOGC)
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Every request holds a lease, taken from the bucket or kept from the
	// worker's previous request: together at least one per BC and iPaaS.com
	// request.
	if created, reused := metricValue(t, metrics, "bcsync_throttle_leases_created_total"), metricValue(t, metrics, "bcsync_throttle_leases_reused_total"); created < 1 || created+reused < 6 {
		t.Errorf("leases created %v, reused %v: want at least one lease per request (5 location jobs, each a BC read and an iPaaS.com write)", created, reused)
	}
	for _, secret := range []string{bc.ClientSecret(), ip.APIKey()} {
		if strings.Contains(metrics, secret) {
			t.Error("a secret is in /metrics")
		}
	}
	w.stop(t, syscall.SIGTERM, 30*time.Second)
}

// /readyz answers 503 when NATS is gone.
func TestReadyzWithoutNATS(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	stop, err := serveAdmin(ctx, addr, prometheus.NewRegistry(), b, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if code, body := httpGet("http://" + addr + "/readyz"); code != 200 {
		t.Fatalf("/readyz with NATS: %d %s", code, body)
	}
	b.NC.Close()
	if code, body := httpGet("http://" + addr + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS") {
		t.Errorf("/readyz without NATS: %d %s", code, body)
	}
	if code, _ := httpGet("http://" + addr + "/healthz"); code != 200 {
		t.Errorf("/healthz without NATS: %d", code)
	}
}

// /lag answers each subscription's backlog, read from its consumer, as
// KEDA's metrics-api scaler reads it (valueLocation
// subscriptions.<name>.lag); 503 when a consumer cannot be read.
func TestLagEndpoint(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	for _, sub := range []string{"contoso", "fabrikam"} {
		if _, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{Subscription: sub, MaxDeliver: 5, AckWait: time.Minute, MaxAckPending: 100}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 7 {
		if _, _, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: fmt.Sprintf("L%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Two delivered and not settled: they count too.
	cons, err := b.JS.Consumer(ctx, messages.StreamJobs, broker.ConsumerName("contoso"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}
	addr := freeAddr(t)
	stop, err := serveAdmin(ctx, addr, prometheus.NewRegistry(), b, []string{"contoso", "fabrikam"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	code, body := httpGet("http://" + addr + "/lag")
	var got lagJSON
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("/lag: %d %s", code, body)
	}
	if c := got.Subscriptions["contoso"]; c.Pending != 5 || c.AckPending != 2 || c.Lag != 7 {
		t.Errorf("contoso: %+v, want 5 pending, 2 unsettled, lag 7", c)
	}
	if f, ok := got.Subscriptions["fabrikam"]; !ok || f.Lag != 0 {
		t.Errorf("fabrikam: %+v (present %v), want lag 0", f, ok)
	}
	// A subscription whose consumer is missing: no number to scale on.
	addr2 := freeAddr(t)
	stop2, err := serveAdmin(ctx, addr2, prometheus.NewRegistry(), b, []string{"nobody"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	if code, body := httpGet("http://" + addr2 + "/lag"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nobody") {
		t.Errorf("/lag of a subscription without a consumer: %d %s, want 503 naming it", code, body)
	}
}

// metricValue is the value of the unlabelled metric name in a Prometheus
// text exposition.
func metricValue(t *testing.T, exposition, name string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}

// GOGC in the environment wins over the worker's default.
func TestWorkerGCPercent(t *testing.T) {
	t.Parallel()
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	if pct, ok := workerGCPercent(env(nil)); !ok || pct != defaultWorkerGCPercent {
		t.Errorf("without GOGC: %d, %v; want %d, true", pct, ok, defaultWorkerGCPercent)
	}
	for _, v := range []string{"150", "off", ""} {
		if _, ok := workerGCPercent(env(map[string]string{"GOGC": v})); ok {
			t.Errorf("GOGC=%q: the worker overrode it", v)
		}
	}
}
