package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/webhook"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

func newWebhookCmd(g *globalFlags) *cobra.Command {
	var (
		listen, embeddedListen string
		noManage               bool
		interval               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Receive Business Central webhook notifications as sync jobs, and keep BC's webhook subscriptions",
		Long: `Serves POST /webhook/<subscription> for every subscription whose webhook is
enabled: it answers BC's validation handshake, checks the clientState of every
notification and publishes one job per change to JetStream (a collection
becomes one delta job), answering 202 only once JetStream stored them (503 when
it cannot, which BC retries).

Unless --no-manage, it also creates BC's webhook subscriptions of the
configured resources, renews them before they expire and recreates those BC
dropped, at start and every --manage-interval.

Without nats.url (or NATS_URL) it starts an embedded NATS server, for
development only. On SIGTERM or Ctrl-C it finishes the requests in progress
and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.loadConfig(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			endpoints := webhook.EndpointsFromConfig(cfg)
			if len(endpoints) == 0 {
				return errors.New("no subscription has its webhook enabled: set webhook.enabled: true, webhook.notification_url " +
					"and the clientState (env BCSYNC_<NAME>_WEBHOOK_CLIENT_STATE) of at least one subscription")
			}
			if !noManage {
				for _, s := range cfg.Subscriptions {
					if s.Webhook.Enabled && (interval <= 0 || interval >= s.Webhook.RenewBefore) {
						return fmt.Errorf("--manage-interval %s: must be positive and shorter than webhook.renew_before (%s of subscription %s), or subscriptions could expire between two checks",
							interval, s.Webhook.RenewBefore, s.Name)
					}
				}
			}
			ctx := cmd.Context()
			b, err := connectFromConfig(ctx, cfg, embeddedListen, "bcsync-webhook", log)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{DuplicateWindow: cfg.NATS.DuplicateWindow, Replicas: cfg.NATS.Replicas, CreateOnly: true}); err != nil {
				return err
			}
			recv, err := webhook.NewReceiver(webhook.ReceiverConfig{
				JS: b.JS, Endpoints: endpoints, MaxBodyBytes: cfg.Webhook.MaxBodyBytes, Log: log,
			})
			if err != nil {
				return err
			}
			return serveWebhooks(ctx, cfg, recv, firstNonEmpty(listen, cfg.Webhook.Listen), !noManage, interval, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to serve the webhooks on (default: the config's webhook.listen, :8080)")
	f.BoolVar(&noManage, "no-manage", false, "only receive: do not create, renew or delete BC's webhook subscriptions")
	f.DurationVar(&interval, "manage-interval", webhook.DefaultInterval, "time between two checks of BC's webhook subscriptions")
	f.StringVar(&embeddedListen, "embedded-listen", "127.0.0.1:4222", "address of the embedded NATS server (used only without a NATS URL)")
	return cmd
}

// serveWebhooks serves recv on addr, with the Manager unless manage is
// false, until ctx ends; then it lets the requests in progress finish.
func serveWebhooks(ctx context.Context, cfg *config.Config, recv http.Handler, addr string, manage bool, interval time.Duration, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("webhook receiver: %w", err)
	}
	srv := &http.Server{
		Handler:           recv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var paths []string
	for _, e := range webhook.EndpointsFromConfig(cfg) {
		paths = append(paths, webhook.PathPrefix+e.Subscription)
	}
	log.Info().Str("addr", ln.Addr().String()).Strs("paths", paths).Bool("manage", manage).Msg("webhook receiver listening")

	mctx, stopManager := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if manage {
		// The receiver serves first: BC validates the URL of every
		// subscription the Manager creates.
		if m := newManager(mctx, cfg, interval, log); m != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = m.Run(mctx)
			}()
		}
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	stopManager()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn().Err(err).Msg("webhook receiver: requests still in progress at shutdown were cut")
	}
	wg.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("webhook receiver: %w", serveErr)
	}
	log.Info().Msg("webhook receiver stopped")
	return nil
}

// newManager returns the Manager of every subscription whose webhook is
// enabled, or nil (logged) when none can be managed. Its failures never
// stop the receiver.
func newManager(ctx context.Context, cfg *config.Config, interval time.Duration, log zerolog.Logger) *webhook.Manager {
	var managed []webhook.Managed
	for i := range cfg.Subscriptions {
		sub := &cfg.Subscriptions[i]
		if !sub.Webhook.Enabled {
			continue
		}
		bc, _, err := worker.Clients(ctx, sub, nil, nil)
		if err != nil {
			log.Error().Err(err).Str("subscription", sub.Name).Msg("webhook subscriptions not managed: no BC client")
			continue
		}
		managed = append(managed, webhook.ManagedFromConfig(sub, bc))
	}
	if len(managed) == 0 {
		return nil
	}
	m, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: managed, Interval: interval, Log: log})
	if err != nil {
		log.Error().Err(err).Msg("webhook subscriptions not managed")
		return nil
	}
	return m
}
