package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/throttle"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Options configures a worker process.
type Options struct {
	// JS and the streams: a connected broker (required).
	Broker *broker.Broker
	// Subscriptions limits the worker to these subscriptions. Default: all.
	Subscriptions []string
	// ID names the worker in logs and dead letters. Default hostname-pid.
	ID string
	// Grace is how long in-flight jobs may finish after the context ends.
	// Default 25s (keep Kubernetes' terminationGracePeriodSeconds longer).
	Grace time.Duration
	// PollWait is how long one pull waits for a job on an empty queue, and
	// so how long a stop may wait for the pull in progress. Default 2s.
	PollWait time.Duration
	// HTTPClient is the base HTTP client of the BC and iPaaS.com clients.
	// Default: one whose transport keeps enough idle connections per host
	// for the configured concurrency (http.DefaultTransport keeps 2).
	HTTPClient *http.Client
	// Log is the worker's logger.
	Log zerolog.Logger
	// Stats, when set, counts job outcomes across subscriptions.
	Stats *Stats
	// Local keeps tokens and request budgets in this process instead of
	// sharing them with the fleet through NATS KV (each worker then needs
	// its own share of BC's budget in its configuration).
	Local bool
	// SharedStats, when set, receives the shared tokens' and budgets'
	// counters when Run returns.
	SharedStats *SharedStats
	// Reload re-reads the configuration: a subscription paused for refused
	// credentials is probed with what it returns, so that a corrected
	// secret (a file, e.g. a Kubernetes Secret) resumes it without a
	// restart. Nil: probes use the configuration Run started with.
	Reload func() (*config.Config, error)
	// Breaker tunes the subscriptions' breakers (Subscription, JS,
	// Consumer, Probe, Log and Stats are set per subscription).
	Breaker BreakerConfig
	// BreakerStats, when set, receives each subscription's breaker
	// counters, by subscription name, as the loops are made.
	BreakerStats map[string]*BreakerStats
	// Pollers, when set, receives each subscription's poller, by
	// subscription name.
	Pollers map[string]*Poller
	// Metrics, when set, receives the worker's Prometheus metrics.
	Metrics *Metrics
	// Observe, when set, is called with each settled job and its outcome.
	Observe func(job *messages.Job, outcome string)
	// DeltaOverlap, when positive, replaces the package's DeltaOverlap:
	// how far behind its start a delta leaves the watermark.
	DeltaOverlap time.Duration

	shared            *Shared
	records, progress jetstream.KeyValue
}

// Run starts one consume loop per subscription of cfg and blocks until ctx
// ends and every loop drained (see Loop.Run). Streams and consumers are
// created or updated first.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	err := run(ctx, cfg, opts)
	if err != nil && ctx.Err() != nil {
		// Stopped (SIGTERM) while setting up: no job was taken yet, and
		// stopping is what was asked.
		opts.Log.Info().Err(err).Msg("worker stopped while starting")
		return nil
	}
	return err
}

func run(ctx context.Context, cfg *config.Config, opts Options) error {
	if opts.Broker == nil {
		return errors.New("worker: a broker is required")
	}
	if opts.ID == "" {
		host, _ := os.Hostname()
		opts.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if opts.Stats == nil {
		opts.Stats = &Stats{}
	}
	log := opts.Log.With().Str("component", "worker").Str("worker_id", opts.ID).Logger()
	subs, err := selectSubscriptions(cfg, opts.Subscriptions)
	if err != nil {
		return err
	}
	// Workers starting together on a fresh cluster race to create the
	// replicated streams and buckets; the loser's request may time out
	// while the winner's is in progress. Try again for a while.
	var kvs map[string]jetstream.KeyValue
	err = retrySetup(ctx, log, func(ctx context.Context) error {
		if err := broker.EnsureStreams(ctx, opts.Broker.JS, broker.StreamOptions{DuplicateWindow: cfg.NATS.DuplicateWindow, Replicas: cfg.NATS.Replicas}); err != nil {
			return err
		}
		kvs, err = broker.EnsureKV(ctx, opts.Broker.JS, broker.KVOptions{Replicas: cfg.NATS.Replicas})
		return err
	})
	if err != nil {
		return err
	}
	opts.records, opts.progress = kvs[broker.BucketRecords], kvs[broker.BucketProgress]
	if !opts.Local {
		sh, err := NewShared(ctx, opts.Broker.JS, cfg.NATS.Replicas, log)
		if err != nil {
			return err
		}
		defer sh.Close()
		opts.shared = sh
		opts.Metrics.shared(sh)
		defer func() {
			st := sh.Stats()
			log.Info().Int64("token_fetches", st.TokenFetches).Int64("permits_granted", st.Granted).
				Int64("rate_waits", st.RateWaits).Int64("lease_waits", st.LeaseWaits).
				Dur("time_waited", time.Duration(st.Waited)).Int64("throttled_429", st.Pauses).Int64("restamped_permits", st.Restamped).
				Int64("stale_permits", st.Stale).
				Msg("shared token and request budgets")
			if opts.SharedStats != nil {
				*opts.SharedStats = st
			}
		}()
	}
	loops := make([]*Loop, 0, len(subs))
	for _, sub := range subs {
		l, err := newSubscriptionLoop(ctx, sub, opts, log)
		if err != nil {
			return fmt.Errorf("worker: subscription %s: %w", sub.Name, err)
		}
		loops = append(loops, l)
	}
	stopNet, err := SafetyNet(ctx, opts.Broker.JS, SafetyNetConfig{
		Failures: opts.records, WorkerID: opts.ID, Log: log, Stats: opts.Stats, Metrics: opts.Metrics})
	if err != nil {
		return err
	}
	defer stopNet()
	log.Info().Int("subscriptions", len(loops)).Msg("worker started")
	var wg sync.WaitGroup
	for _, sub := range subs {
		var types []messages.Type
		for _, t := range sub.Poll.Types {
			types = append(types, messages.Type(t))
		}
		p := &Poller{JS: opts.Broker.JS, KV: opts.progress, Subscription: sub.Name, Types: types,
			Interval: sub.Poll.Interval, WorkerID: opts.ID, Log: log.With().Str("subscription", sub.Name).Logger()}
		if opts.Pollers != nil {
			opts.Pollers[sub.Name] = p
		}
		wg.Go(func() { p.Run(ctx) })
	}
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.Run(ctx)
		}()
	}
	wg.Wait()
	log.Info().Int64("acked", opts.Stats.Acked.Load()).Int64("dead_lettered", opts.Stats.DeadLettered.Load()).
		Int64("returned", opts.Stats.Returned.Load()).Msg("worker stopped")
	return nil
}

// retrySetup runs fn until it succeeds, for up to a minute, with backoff.
func retrySetup(ctx context.Context, log zerolog.Logger, fn func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		delay := Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt, 0)
		log.Warn().Err(err).Dur("retry_in", delay).Msg("could not set up the streams and buckets; trying again")
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func selectSubscriptions(cfg *config.Config, names []string) ([]*config.Subscription, error) {
	if len(names) == 0 {
		out := make([]*config.Subscription, len(cfg.Subscriptions))
		for i := range cfg.Subscriptions {
			out[i] = &cfg.Subscriptions[i]
		}
		return out, nil
	}
	var out []*config.Subscription
	for _, n := range names {
		s, ok := cfg.Subscription(n)
		if !ok {
			return nil, fmt.Errorf("worker: no subscription %q in the configuration (have %v)", n, cfg.Names())
		}
		out = append(out, s)
	}
	return out, nil
}

// Credentials are the Entra client credentials of a subscription, sent
// through base (nil: a default client).
func Credentials(sub *config.Subscription, base *http.Client) bcclient.Credentials {
	return bcclient.Credentials{
		AuthorityURL: sub.AuthorityURL,
		TenantID:     sub.TenantID,
		ClientID:     sub.ClientID,
		ClientSecret: sub.ClientSecret.Reveal(),
		Scope:        sub.Scope,
		HTTPClient:   base,
	}
}

// Clients builds the BC and iPaaS.com clients of one subscription. With a
// Shared, the token and the request budgets are the fleet's (NATS KV);
// without, they belong to this process. The token source lives as long as ctx.
func Clients(ctx context.Context, sub *config.Subscription, base *http.Client, shared *Shared) (*bcclient.Client, *ipaasclient.Client, error) {
	base = pooled(base)
	creds := Credentials(sub, base)
	var (
		ts           oauth2.TokenSource
		bcLim, ipLim interface {
			Acquire(context.Context) (func(), error)
		}
	)
	if shared != nil {
		var err error
		if ts, err = shared.tokenSource(sub, creds); err != nil {
			return nil, nil, err
		}
		if bcLim, err = shared.budget(bcBudget(sub), sub.Throttling); err != nil {
			return nil, nil, err
		}
		if ipLim, err = shared.budget(ipaasBudget(sub), sub.IPaaS.Throttling); err != nil {
			return nil, nil, err
		}
	} else {
		ts = bcclient.NewTokenSource(ctx, creds)
		bcLim = throttle.NewLocal(sub.Throttling.RequestsPerWindow, sub.Throttling.Window, sub.Throttling.MaxConcurrency)
		ipLim = throttle.NewLocal(sub.IPaaS.Throttling.RequestsPerWindow, sub.IPaaS.Throttling.Window, sub.IPaaS.Throttling.MaxConcurrency)
	}
	bc, err := bcclient.New(bcclient.Config{
		APIURL:            sub.APIURL,
		TenantID:          sub.TenantID,
		Environment:       sub.Environment,
		CompanyName:       sub.CompanyName,
		TokenSource:       ts,
		Limiter:           bcLim,
		HTTPClient:        base,
		PageSize:          sub.PageSize,
		PriceGroupService: sub.PriceGroupService,
		Retry:             bcclient.RetryPolicy{MaxElapsed: bcRetryWindow},
	})
	if err != nil {
		return nil, nil, err
	}
	ip, err := ipaasclient.New(ipaasclient.Config{
		BaseURL:    sub.IPaaS.BaseURL,
		APIKey:     sub.IPaaS.APIKey.Reveal(),
		ClientID:   sub.IPaaS.ClientID,
		SystemID:   sub.IPaaS.SystemID,
		HTTPClient: base,
		Limiter:    ipLim,
	})
	if err != nil {
		return nil, nil, err
	}
	return bc, ip, nil
}

// bcRetryWindow bounds the BC client's own retries of one request: enough
// for a blip, short enough that a BC outage reaches the breaker, which
// pauses the subscription, within seconds rather than after the client's
// default 30 s with every job slot stuck in retries. A job's longer
// troubles are the queue's: up to max_deliver deliveries, backing off to
// minutes.
const bcRetryWindow = 10 * time.Second

func newSubscriptionLoop(ctx context.Context, sub *config.Subscription, opts Options, log zerolog.Logger) (*Loop, error) {
	opts.HTTPClient = opts.Metrics.httpClient(opts.HTTPClient, sub)
	bc, ip, err := Clients(context.WithoutCancel(ctx), sub, opts.HTTPClient, opts.shared)
	if err != nil {
		return nil, err
	}
	consOpts := broker.ConsumerOptions{
		Subscription:  sub.Name,
		MaxDeliver:    sub.Worker.MaxDeliver,
		AckWait:       sub.Worker.AckWait,
		MaxAckPending: sub.Worker.MaxAckPending,
	}
	cons, err := broker.EnsureConsumer(ctx, opts.Broker.JS, consOpts)
	if err != nil {
		return nil, err
	}
	recreate := func(ctx context.Context) error {
		_, err := broker.EnsureConsumer(ctx, opts.Broker.JS, consOpts)
		return err
	}
	// One job per record at a time, fleet-wide, and versions that only move
	// forward (DESIGN invariant 2).
	records := NewRecordLocks(opts.Broker.JS, opts.records, sub.Worker.AckWait)
	var loop *Loop
	bcfg := opts.Breaker
	bcfg.Subscription, bcfg.JS, bcfg.Consumer, bcfg.Log = sub.Name, opts.Broker.JS, broker.ConsumerName(sub.Name), log
	if st, ok := opts.BreakerStats[sub.Name]; ok {
		bcfg.Stats = st
	}
	bcfg.Probe = func(ctx context.Context) error {
		h, r, err := probe(ctx, sub, opts)
		if err != nil {
			return err
		}
		h.Versions, h.Subscription, h.Bulk = records, sub.Name, &Bulk{BC: h.BC, JS: opts.Broker.JS, Progress: opts.progress, Subscription: sub.Name, Overlap: opts.DeltaOverlap}
		loop.SetHandler(h, r)
		return nil
	}
	breaker, err := NewBreaker(bcfg)
	if err != nil {
		return nil, err
	}
	opts.Metrics.subscription(opts.Broker.JS, sub.Name, breaker)
	loop, err = NewLoop(LoopConfig{
		Subscription: sub.Name,
		Consumer:     cons,
		Recreate:     recreate,
		JS:           opts.Broker.JS,
		Handler: &Syncer{BC: bc, IPaaS: ip, Versions: records, Subscription: sub.Name,
			Bulk: &Bulk{BC: bc, JS: opts.Broker.JS, Progress: opts.progress, Subscription: sub.Name, Overlap: opts.DeltaOverlap}},
		Concurrency: sub.Worker.Concurrency,
		MaxDeliver:  sub.Worker.MaxDeliver,
		Backoff:     Backoff{Initial: sub.Worker.BackoffInitial, Max: sub.Worker.BackoffMax},
		Grace:       opts.Grace,
		PollWait:    opts.PollWait,
		WorkerID:    opts.ID,
		Redactor:    NewRedactor(sub.ClientSecret.Reveal(), sub.IPaaS.APIKey.Reveal()),
		Log:         log,
		Stats:       opts.Stats,
		Breaker:     breaker,
		Locks:       records,
		Failures:    opts.records,
		Progress:    opts.progress,
		Metrics:     opts.Metrics,
		Observe:     opts.Observe,
	})
	return loop, err
}

// probe checks a subscription's credentials with the configuration as it is
// now: a BC token and the company, and the iPaaS.com key. On success it
// returns a handler built with them and a redactor that knows the secrets.
func probe(ctx context.Context, sub *config.Subscription, opts Options) (*Syncer, *Redactor, error) {
	if opts.Reload != nil {
		cfg, err := opts.Reload()
		if err != nil {
			return nil, nil, fmt.Errorf("re-read the configuration: %w", err)
		}
		s, ok := cfg.Subscription(sub.Name)
		if !ok {
			return nil, nil, fmt.Errorf("subscription %q is no longer in the configuration", sub.Name)
		}
		sub = s
	}
	bc, ip, err := Clients(context.WithoutCancel(ctx), sub, opts.HTTPClient, opts.shared)
	if err != nil {
		return nil, nil, err
	}
	if _, err := bc.CompanyID(ctx); err != nil {
		return nil, nil, err
	}
	if err := ip.Ping(ctx); err != nil {
		return nil, nil, err
	}
	return &Syncer{BC: bc, IPaaS: ip}, NewRedactor(sub.ClientSecret.Reveal(), sub.IPaaS.APIKey.Reveal()), nil
}
