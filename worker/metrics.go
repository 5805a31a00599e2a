package worker

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus metrics. Labels never carry a secret or
// a record key (keys are unbounded): subscription, type, outcome, service,
// status.
type Metrics struct {
	jobs      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	requests  *prometheus.CounterVec
	reqTime   *prometheus.HistogramVec
	reg       prometheus.Registerer
	mu        sync.Mutex
	collected map[string]bool
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bcsync_jobs_total",
			Help: "Jobs settled, by subscription, type and outcome (acked, retried, held, requeued, dead_lettered, returned).",
		}, []string{"subscription", "type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bcsync_job_duration_seconds",
			Help:    "Time from a job's delivery to its settlement, by subscription and type.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"subscription", "type"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bcsync_http_requests_total",
			Help: "Requests to Business Central (bc), Entra (entra) and iPaaS.com (ipaas), by subscription and HTTP status (error: no answer). 429s are status=\"429\".",
		}, []string{"subscription", "service", "status"}),
		reqTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bcsync_http_request_duration_seconds",
			Help:    "Request latency by service.",
			Buckets: prometheus.DefBuckets,
		}, []string{"subscription", "service"}),
		reg:       reg,
		collected: map[string]bool{},
	}
	reg.MustRegister(m.jobs, m.duration, m.requests, m.reqTime)
	return m
}

// job records one settled job.
func (m *Metrics) job(subscription string, t messages.Type, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.jobs.WithLabelValues(subscription, string(t), outcome).Inc()
	if took > 0 {
		m.duration.WithLabelValues(subscription, string(t)).Observe(took.Seconds())
	}
}

// transport counts the requests of one subscription's clients by service.
type transport struct {
	next         http.RoundTripper
	m            *Metrics
	subscription string
	bcHost       string
	entraHost    string
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	service := "ipaas"
	switch host := strings.ToLower(r.URL.Host); {
	case host == t.entraHost && strings.Contains(r.URL.Path, "/oauth2/"):
		service = "entra"
	case host == t.bcHost:
		service = "bc"
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(t.subscription, service, status).Inc()
	t.m.reqTime.WithLabelValues(t.subscription, service).Observe(time.Since(start).Seconds())
	return resp, err
}

// httpClient wraps base (nil: a default client) so that sub's requests are
// counted.
func (m *Metrics) httpClient(base *http.Client, sub *config.Subscription) *http.Client {
	if m == nil {
		return base
	}
	c := &http.Client{Timeout: 60 * time.Second}
	if base != nil {
		cp := *base
		c = &cp
	}
	c.Transport = &transport{next: pooled(c).Transport, m: m, subscription: sub.Name, bcHost: hostOf(sub.APIURL), entraHost: hostOf(sub.AuthorityURL)}
	return c
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

// subscription adds the gauges of one subscription: its consumer's pending
// jobs and its breaker's state.
func (m *Metrics) subscription(js jetstream.JetStream, name string, br *Breaker) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.collected[name] {
		return
	}
	m.collected[name] = true
	labels := prometheus.Labels{"subscription": name}
	pending := func(f func(*jetstream.ConsumerInfo) float64) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := js.Consumer(ctx, messages.StreamJobs, broker.ConsumerName(name))
			if err != nil {
				return -1
			}
			info, err := c.Info(ctx)
			if err != nil {
				return -1
			}
			return f(info)
		}
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bcsync_consumer_pending_jobs", ConstLabels: labels,
			Help: "Jobs waiting for delivery in the subscription's consumer (-1: NATS unreachable)."},
			pending(func(i *jetstream.ConsumerInfo) float64 { return float64(i.NumPending) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bcsync_consumer_ack_pending_jobs", ConstLabels: labels,
			Help: "Jobs delivered and not yet settled, fleet-wide (-1: NATS unreachable)."},
			pending(func(i *jetstream.ConsumerInfo) float64 { return float64(i.NumAckPending) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bcsync_subscription_paused", ConstLabels: labels,
			Help: "This worker's view of the subscription: 0 flowing, 1 paused for a dependency outage, 2 paused for refused credentials."},
			func() float64 { return float64(br.Stats().State.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bcsync_subscription_pauses_total", ConstLabels: labels,
			Help: "Pauses of the subscription by this worker for dependency outages."},
			func() float64 { return float64(br.Stats().Trips.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bcsync_subscription_auth_pauses_total", ConstLabels: labels,
			Help: "Pauses of the subscription by this worker for refused credentials or permissions."},
			func() float64 { return float64(br.Stats().AuthPauses.Load()) }),
	)
}

// shared adds the counters of the fleet-wide tokens and budgets.
func (m *Metrics) shared(s *Shared) {
	if m == nil || s == nil {
		return
	}
	c := func(name, help string, f func(SharedStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(s.Stats())) })
	}
	m.reg.MustRegister(
		c("bcsync_token_fetches_total", "Token requests this worker made to Entra for the fleet's shared tokens.", func(st SharedStats) int64 { return st.TokenFetches }),
		c("bcsync_throttle_permits_total", "Requests the fleet-wide budgets let through from this worker.", func(st SharedStats) int64 { return st.Granted }),
		c("bcsync_throttle_rate_waits_total", "Requests that waited for the request budget.", func(st SharedStats) int64 { return st.RateWaits }),
		c("bcsync_throttle_lease_waits_total", "Requests that waited for a concurrency lease.", func(st SharedStats) int64 { return st.LeaseWaits }),
		c("bcsync_throttle_pauses_total", "429s or Retry-After answers that paused the fleet.", func(st SharedStats) int64 { return st.Pauses }),
		c("bcsync_throttle_leases_created_total", "Concurrency leases this worker took from the fleet's bucket.", func(st SharedStats) int64 { return st.LeasesCreated }),
		c("bcsync_throttle_leases_reused_total", "Requests served by a concurrency lease this worker already held.", func(st SharedStats) int64 { return st.LeasesReused }),
		c("bcsync_throttle_leases_deleted_total", "Concurrency leases this worker gave back to the fleet.", func(st SharedStats) int64 { return st.LeasesDeleted }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bcsync_throttle_wait_seconds_total", Help: "Time requests spent waiting for the budgets."},
			func() float64 { return time.Duration(s.Stats().Waited).Seconds() }),
	)
}
