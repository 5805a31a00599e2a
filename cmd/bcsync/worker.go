package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

func newWorkerCmd(g *globalFlags) *cobra.Command {
	var (
		subs   []string
		grace  time.Duration
		listen string
		id     string
		admin  string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Pull sync jobs and sync them from Business Central to iPaaS.com",
		Long: `Runs one consume loop per subscription of the configuration file. Without
nats.url (or NATS_URL) it starts an embedded NATS server, for development only.
On SIGTERM or Ctrl-C it stops pulling, lets in-flight jobs finish within
--grace, returns the rest to the queue, and exits 0. It runs with GOGC=400
unless GOGC is set (less CPU for about 12 MiB more memory; GOMEMLIMIT still
bounds the heap).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.loadConfig(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if pct, ok := workerGCPercent(os.LookupEnv); ok {
				debug.SetGCPercent(pct)
			}
			b, err := connectFromConfig(cmd.Context(), cfg, listen, "bcsync-worker", log)
			if err != nil {
				return err
			}
			defer b.Close()
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			metrics := worker.NewMetrics(reg)
			if admin != "" {
				names := subs
				if len(names) == 0 {
					names = cfg.Names()
				}
				stop, err := serveAdmin(cmd.Context(), admin, reg, b, names, log)
				if err != nil {
					return err
				}
				defer stop()
			}
			return worker.Run(cmd.Context(), cfg, worker.Options{
				Metrics:       metrics,
				Broker:        b,
				Subscriptions: subs,
				ID:            id,
				Grace:         grace,
				Log:           log,
				// Credentials refused? The subscription pauses and its
				// probes re-read the file and the secrets.
				Reload: func() (*config.Config, error) { return config.Load(g.configPath, nil) },
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&subs, "subscription", nil, "serve only these subscriptions (default: all in the file)")
	f.DurationVar(&grace, "grace", 25*time.Second, "how long in-flight jobs may finish after SIGTERM")
	f.StringVar(&listen, "embedded-listen", "127.0.0.1:4222", "address of the embedded NATS server (used only without a NATS URL)")
	f.StringVar(&id, "id", "", "worker id in logs and dead letters (default hostname-pid)")
	f.StringVar(&admin, "admin-listen", ":9090", "address of /metrics (Prometheus), /healthz, /readyz and /lag; empty: none")
	return cmd
}

// serveAdmin serves /metrics, /healthz (the process runs), /readyz (NATS
// is connected and the job streams answer) and /lag (the backlog of the
// subscriptions subs, for KEDA) on addr until stop.
func serveAdmin(ctx context.Context, addr string, reg *prometheus.Registry, b *broker.Broker, subs []string, log zerolog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /lag", func(w http.ResponseWriter, r *http.Request) { serveLag(w, r, b, subs) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if !b.NC.IsConnected() {
			http.Error(w, "not ready: NATS is not connected", http.StatusServiceUnavailable)
			return
		}
		for _, name := range []string{messages.StreamJobs, messages.StreamDLQ} {
			if _, err := b.JS.Stream(rctx, name); err != nil {
				http.Error(w, "not ready: stream "+name+": "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("admin endpoints: /metrics, /healthz, /readyz, /lag")
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

// lagJSON is what /lag answers: per subscription, its consumer's jobs
// waiting for delivery, those delivered and not yet settled, and their sum
// (the backlog KEDA scales the workers on).
type lagJSON struct {
	Subscriptions map[string]subscriptionLag `json:"subscriptions"`
}

type subscriptionLag struct {
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	Lag        uint64 `json:"lag"`
}

// serveLag answers the backlog of every subscription in subs, read from its
// JetStream consumer (the same from every worker: the consumer is the
// fleet's), or 503 when one cannot be read, so that KEDA keeps the fleet as
// it is rather than scale on a wrong number.
func serveLag(w http.ResponseWriter, r *http.Request, b *broker.Broker, subs []string) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	out := lagJSON{Subscriptions: map[string]subscriptionLag{}}
	for _, sub := range subs {
		c, err := b.JS.Consumer(ctx, messages.StreamJobs, broker.ConsumerName(sub))
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = c.Info(ctx)
		}
		if err != nil {
			http.Error(w, "lag of subscription "+sub+": "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		out.Subscriptions[sub] = subscriptionLag{Pending: info.NumPending, AckPending: info.NumAckPending,
			Lag: info.NumPending + uint64(max(info.NumAckPending, 0))}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// connectFromConfig connects to the NATS of the configuration, or starts the
// embedded server on listen when it names none.
func connectFromConfig(ctx context.Context, cfg *config.Config, listen, name string, log zerolog.Logger) (*broker.Broker, error) {
	return broker.Connect(ctx, broker.Options{
		URL:       cfg.NATS.URL,
		CredsFile: cfg.NATS.CredsFile,
		CAFile:    cfg.NATS.TLS.CAFile,
		CertFile:  cfg.NATS.TLS.CertFile,
		KeyFile:   cfg.NATS.TLS.KeyFile,
		DataDir:   cfg.NATS.DataDir,
		Listen:    listen,
		Name:      name,
		Log:       log,
	})
}

// defaultWorkerGCPercent is the worker's GOGC unless the environment sets
// one. A worker's live heap is small (about 10 MB), so Go's default of 100
// collects it many times a second under load. In bench pipeline (b), five
// alternating pairs of runs over 10,000 jobs: the workers' CPU per job went
// from 0.36-0.52 ms to 0.30-0.38 ms, and 2,009-2,822 jobs/s to
// 2,611-3,330, for 40 MiB of peak RSS per worker instead of 28.
// GOMEMLIMIT (set from the container's memory limit in deploy/) still
// bounds the heap.
const defaultWorkerGCPercent = 400

// workerGCPercent is the GC percent the worker sets, and false when the
// environment's GOGC is to be left alone.
func workerGCPercent(lookup func(string) (string, bool)) (int, bool) {
	if _, set := lookup("GOGC"); set {
		return 0, false
	}
	return defaultWorkerGCPercent, true
}
