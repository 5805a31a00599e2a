package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

func newBenchCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure bcsync against the simulators",
		Args:  subcommandArgs,
		RunE:  showHelp,
	}
	cmd.AddCommand(newBenchThrottleCmd(g), newBenchInitCmd(), newBenchPipelineCmd())
	return cmd
}

type throttleBench struct {
	workers     int
	budget      int
	window      time.Duration
	concurrency int
	duration    time.Duration
	lifetime    time.Duration
}

func newBenchThrottleCmd(g *globalFlags) *cobra.Command {
	o := throttleBench{}
	cmd := &cobra.Command{
		Use:   "throttle",
		Short: "Fleet-wide budget and token versus per-worker limiters, side by side",
		Long: `Runs N workers against the BC simulator limited like BC (a sliding-window
request budget, a concurrency limit, short-lived tokens) with a backlog of jobs,
three times: sharing one budget and one token through NATS KV (how bcsync
runs); with a limiter of budget/N and a token per worker; with the whole
budget and a token per worker. Prints, for each, the share of BC's budget
used, the 429s, the peak concurrency BC saw and the token requests.`,
		Example: "  bcsync bench throttle --workers 3 --budget 120 --window 10s --duration 30s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.workers < 1 || o.budget < o.workers || o.window <= 0 || o.concurrency < 1 || o.duration <= 0 || o.lifetime < time.Second {
				return errors.New("need --workers >= 1, --budget >= --workers, and positive --window, --concurrency, --duration, --token-lifetime (>= 1s)")
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(cmd.OutOrStdout(), "%d workers, BC budget %d per %v, %d at once, %v tokens, %v run\n\n",
				o.workers, o.budget, o.window, o.concurrency, o.lifetime, o.duration)
			fmt.Fprintln(w, "mode\tBC requests\tbudget used\t429s\tpeak concurrency\ttoken requests\t")
			for _, m := range []benchMode{modeFleet, modeSplit, modeFull} {
				r, err := runThrottleBench(cmd.Context(), o, m, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				mode := map[benchMode]string{
					modeFleet: "fleet (one budget and token via NATS KV)",
					modeSplit: fmt.Sprintf("per worker, budget/%d each", o.workers),
					modeFull:  "per worker, whole budget each",
				}[m]
				fmt.Fprintf(w, "%s\t%d\t%.1f%%\t%d\t%d\t%d\t\n", mode, r.served, r.used, r.throttled, r.peak, r.tokens)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.workers, "workers", 3, "workers")
	f.IntVar(&o.budget, "budget", 120, "BC requests per window (the simulator's limit and the fleet's budget)")
	f.DurationVar(&o.window, "window", 10*time.Second, "BC's sliding window")
	f.IntVar(&o.concurrency, "concurrency", 5, "requests BC serves at once")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "how long each mode runs")
	f.DurationVar(&o.lifetime, "token-lifetime", 5*time.Second, "lifetime of the simulator's tokens")
	return cmd
}

type benchMode int

const (
	modeFleet benchMode = iota // shared through NATS KV
	modeSplit                  // per worker, budget/N each
	modeFull                   // per worker, the whole budget each
)

type throttleResult struct {
	served, throttled, peak, tokens int64
	used                            float64
}

func runThrottleBench(ctx context.Context, o throttleBench, mode benchMode, progress io.Writer) (throttleResult, error) {
	local := mode != modeFleet
	log := zerolog.Nop()
	// Enough jobs for twice what the budget allows in the run.
	jobs := 2 * o.budget * int(o.duration/o.window+1)
	bc := bctest.NewServer(bctest.Options{Locations: jobs, Budget: o.budget, BudgetWindow: o.window,
		MaxConcurrent: o.concurrency, TokenLifetime: o.lifetime})
	defer bc.Close()
	bc.SetLatency(10 * time.Millisecond)
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	dir, err := os.MkdirTemp("", "bcsync-bench-")
	if err != nil {
		return throttleResult{}, err
	}
	defer os.RemoveAll(dir)
	b, err := broker.Connect(ctx, broker.Options{DataDir: dir, Log: log})
	if err != nil {
		return throttleResult{}, err
	}
	defer b.Close()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		return throttleResult{}, err
	}
	sc := newSimConfig("bench", bc, bc.URL(), ip, ip.URL())
	sc.Requests, sc.Window, sc.Concurrency = o.budget, o.window.String(), o.concurrency
	if mode == modeSplit {
		// Each worker gets its share of the budget; the concurrency is
		// shared out likewise, at least 1 each.
		sc.Requests, sc.Concurrency = o.budget/o.workers, max(1, o.concurrency/o.workers)
	}
	cfg, err := config.Parse([]byte(renderSimConfig(sc)), config.MapEnv(map[string]string{sc.SecretEnv: bc.ClientSecret(), sc.KeyEnv: ip.APIKey()}))
	if err != nil {
		return throttleResult{}, err
	}
	// Jobs keyed by BC id (GUID) read BC one request each, as this
	// benchmark of the request budget needs; jobs keyed by code would read
	// many locations per request.
	for _, code := range bc.LocationCodes() {
		r, _ := bc.Record(bctest.SetLocations, code)
		id, _ := r["id"].(string)
		if _, _, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: "bench", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: id}); err != nil {
			return throttleResult{}, err
		}
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range o.workers {
		wb, err := broker.Connect(ctx, broker.Options{URL: b.ClientURL(), Log: log})
		if err != nil {
			stop()
			return throttleResult{}, err
		}
		defer wb.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = worker.Run(wctx, cfg, worker.Options{Broker: wb, ID: fmt.Sprintf("bench-%d", i+1), Local: local, Grace: time.Second, Log: log})
		}()
	}
	defer func() { stop(); wg.Wait() }()
	// Measure from the fleet's first BC request.
	for bc.Stats().APIRequests == 0 {
		select {
		case <-ctx.Done():
			return throttleResult{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	tokensBefore := bc.Stats().TokenRequests
	bc.ResetStats()
	fmt.Fprintf(progress, "running mode %d of 3 for %v ...\n", mode+1, o.duration)
	select {
	case <-ctx.Done():
		return throttleResult{}, ctx.Err()
	case <-time.After(o.duration):
	}
	st := bc.Stats()
	served := st.APIRequests - st.Throttled - st.Unauthorized
	allowed := float64(o.budget) * o.duration.Seconds() / o.window.Seconds()
	return throttleResult{
		served: served, throttled: st.Throttled, peak: st.PeakConcurrent, tokens: tokensBefore + st.TokenRequests,
		used: 100 * float64(served) / allowed,
	}, nil
}
