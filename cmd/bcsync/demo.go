package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

type demoOptions struct {
	sizes    simSizes
	workers  int
	timeout  time.Duration
	progress bool
}

func newDemoCmd(g *globalFlags) *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Sync a simulated Business Central company to a simulated iPaaS.com, end to end",
		Long: `Starts an embedded NATS server, the Business Central and iPaaS.com simulators
and two workers in one process; enqueues a job for every location, shipping
method, customer category and customer of the simulated company; shows
progress; prints a summary. Exits 0 only when iPaaS.com holds exactly the
expected records and nothing was dead-lettered. Needs nothing installed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := g.logLevel
			if level == "" {
				level = "error"
			}
			log, err := newLogger(cmd.ErrOrStderr(), level, firstNonEmpty(g.logFormat, "console"))
			if err != nil {
				return err
			}
			_, err = runDemo(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr(), log)
			return err
		},
	}
	o.sizes.flags(cmd, simSizes{locations: 300, shipmentMethods: 50, priceGroups: 50, customers: 800})
	f := cmd.Flags()
	f.IntVar(&o.workers, "workers", 2, "workers to run")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up when the jobs are not done by then")
	f.BoolVar(&o.progress, "progress", true, "show a progress bar")
	return cmd
}

// demoSummary is what the demo measured.
type demoSummary struct {
	Jobs, Acked, DeadLetters    int64
	BCRequests, BCTokenRequests int64
	IPaaSRecords                map[string]int
	Expected                    map[string]int
	// Elapsed runs from the start (simulators, broker, listing BC and
	// enqueueing included) until every job was settled; stopping the
	// workers comes after.
	Elapsed time.Duration
}

func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer, log zerolog.Logger) (*demoSummary, error) {
	if err := o.sizes.validate(); err != nil {
		return nil, err
	}
	if o.workers < 1 || o.workers > 64 {
		return nil, fmt.Errorf("--workers %d: use 1..64", o.workers)
	}
	start := time.Now()

	// The simulators, on loopback ports.
	bc := bctest.NewServer(bcOptions(o.sizes))
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()

	// The embedded broker, in a temporary directory.
	dir, err := os.MkdirTemp("", "bcsync-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := broker.Connect(ctx, broker.Options{DataDir: dir, Name: "bcsync-demo", Log: log})
	if err != nil {
		return nil, err
	}
	defer b.Close()

	// The configuration goes through the same loader as a worker's file.
	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	cfg, err := config.Parse([]byte(renderSimConfig(sc)), config.MapEnv(map[string]string{
		sc.SecretEnv: bc.ClientSecret(),
		sc.KeyEnv:    ip.APIKey(),
	}))
	if err != nil {
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		return nil, err
	}

	// The workers, each with its own NATS connection as separate processes would have.
	stats := &worker.Stats{}
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var werrs []error
	var werrMu sync.Mutex
	for i := range o.workers {
		wb, err := broker.Connect(ctx, broker.Options{URL: b.ClientURL(), Name: fmt.Sprintf("bcsync-demo-worker-%d", i+1), Log: log})
		if err != nil {
			stopWorkers()
			return nil, err
		}
		defer wb.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A short PollWait: a stopping worker waits for the pull in
			// progress, and the demo ends with nothing left to pull.
			if err := worker.Run(wctx, cfg, worker.Options{Broker: wb, ID: fmt.Sprintf("demo-worker-%d", i+1), Grace: 5 * time.Second,
				PollWait: 250 * time.Millisecond, Log: log, Stats: stats}); err != nil {
				werrMu.Lock()
				werrs = append(werrs, err)
				werrMu.Unlock()
			}
		}()
	}
	defer func() { stopWorkers(); wg.Wait() }()

	// Enqueue one job per BC record, parents first, read through the real client.
	// It shares the fleet's token and BC budget, as a worker would.
	sub := &cfg.Subscriptions[0]
	shared, err := worker.NewShared(ctx, b.JS, 0, log)
	if err != nil {
		return nil, err
	}
	defer shared.Close()
	lister, _, err := worker.Clients(ctx, sub, nil, shared)
	if err != nil {
		return nil, err
	}
	expected, jobs, err := enqueueAll(ctx, lister, b, sub.Name)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "enqueued %d jobs: %d customer categories, %d locations, %d shipping methods, %d customers\n",
		jobs, expected["customer category"], expected["location"], expected["shipping method"], expected["customer"])

	// Follow progress until every job is settled.
	var bar *progressbar.ProgressBar
	if o.progress {
		bar = progressbar.NewOptions64(jobs, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("syncing"),
			// No rate: the bar's own, taken over its few renders of a
			// sub-second run, showed hundreds of millions of jobs/s. The
			// summary gives the measured one.
			progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	deadline := time.After(o.timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timedOut := false
	var synced time.Duration // from the start until every job was settled
wait:
	for {
		settled := stats.Acked.Load() + stats.DeadLettered.Load()
		if bar != nil {
			_ = bar.Set64(settled)
		}
		if settled >= jobs {
			synced = time.Since(start)
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			timedOut = true
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	stopWorkers()
	wg.Wait()

	sum := &demoSummary{
		Jobs: jobs, Acked: stats.Acked.Load(), DeadLetters: stats.DeadLettered.Load(),
		IPaaSRecords: map[string]int{}, Expected: expected, Elapsed: cmp.Or(synced, time.Since(start)),
	}
	bst := bc.Stats()
	sum.BCRequests, sum.BCTokenRequests = bst.APIRequests, bst.TokenRequests
	for table := range expected {
		sum.IPaaSRecords[table] = ip.Count(table)
	}
	printSummary(stdout, sum)

	var problems []error
	if timedOut {
		problems = append(problems, fmt.Errorf("timed out after %v with %d of %d jobs settled", o.timeout, sum.Acked+sum.DeadLetters, jobs))
	}
	if sum.DeadLetters > 0 {
		problems = append(problems, fmt.Errorf("%d jobs were dead-lettered", sum.DeadLetters))
	}
	for table, want := range expected {
		if got := sum.IPaaSRecords[table]; got != want {
			problems = append(problems, fmt.Errorf("iPaaS.com holds %d %s records, want %d", got, table, want))
		}
	}
	problems = append(problems, werrs...)
	if len(problems) > 0 {
		return sum, fmt.Errorf("demo failed: %w", errors.Join(problems...))
	}
	fmt.Fprintln(stdout, "OK: iPaaS.com holds exactly the records of the BC company")
	return sum, nil
}

// enqueueAll lists every record of the BC company and publishes an upsert
// job for each, parents (categories, locations, shipping methods) first. It
// returns the records expected per iPaaS.com table and the job count.
func enqueueAll(ctx context.Context, bc *bcclient.Client, b *broker.Broker, sub string) (map[string]int, int64, error) {
	expected := map[string]int{}
	var n int64
	publish := func(t messages.Type, table string, keys []string) error {
		for _, k := range keys {
			if _, _, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: sub, Type: t, Op: messages.OpUpsert, Key: k, Source: "demo"}); err != nil {
				return err
			}
			n++
		}
		expected[table] += len(keys)
		return nil
	}
	var keys []string
	steps := []struct {
		t     messages.Type
		table string
		list  func() error
	}{
		{messages.TypeCustomerCategory, "customer category", func() error {
			return bc.ListCustomerPriceGroups(ctx, func(p []bcclient.CustomerPriceGroup) error {
				for _, r := range p {
					keys = append(keys, r.Code)
				}
				return nil
			})
		}},
		{messages.TypeLocation, "location", func() error {
			return bc.ListLocations(ctx, func(p []bcclient.Location) error {
				for _, r := range p {
					keys = append(keys, r.Code)
				}
				return nil
			})
		}},
		{messages.TypeShippingMethod, "shipping method", func() error {
			return bc.ListShipmentMethods(ctx, func(p []bcclient.ShipmentMethod) error {
				for _, r := range p {
					keys = append(keys, r.Code)
				}
				return nil
			})
		}},
		{messages.TypeCustomer, "customer", func() error {
			return bc.ListCustomers(ctx, func(p []bcclient.Customer) error {
				for _, r := range p {
					keys = append(keys, r.ID)
				}
				return nil
			})
		}},
	}
	for _, s := range steps {
		keys = keys[:0]
		if err := s.list(); err != nil {
			return nil, 0, fmt.Errorf("list %s records in BC: %w", s.table, err)
		}
		if err := publish(s.t, s.table, keys); err != nil {
			return nil, 0, err
		}
	}
	return expected, n, nil
}

func printSummary(w io.Writer, s *demoSummary) {
	fmt.Fprintf(w, "\nbcsync demo summary\n")
	fmt.Fprintf(w, "  jobs enqueued        %d\n", s.Jobs)
	fmt.Fprintf(w, "  jobs done (acked)    %d\n", s.Acked)
	fmt.Fprintf(w, "  dead letters         %d\n", s.DeadLetters)
	fmt.Fprintf(w, "  BC API requests      %d\n", s.BCRequests)
	fmt.Fprintf(w, "  BC token requests    %d\n", s.BCTokenRequests)
	for _, t := range []struct{ table, label string }{
		{"customer category", "customer categories"}, {"location", "locations"},
		{"shipping method", "shipping methods"}, {"customer", "customers"},
	} {
		fmt.Fprintf(w, "  iPaaS.com %-20s %d (expected %d)\n", t.label, s.IPaaSRecords[t.table], s.Expected[t.table])
	}
	secs := s.Elapsed.Seconds()
	fmt.Fprintf(w, "  elapsed              %.2fs (%.0f jobs/s)\n", secs, float64(s.Acked)/secs)
}
