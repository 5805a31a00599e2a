package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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

type initBench struct {
	locations, pageSize, killAfter, workers int
	timeout                                 time.Duration
}

func newBenchInitCmd() *cobra.Command {
	o := initBench{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialize many locations, killing the initializing worker half way",
		Long: `Initializes --locations locations from the BC simulator into the iPaaS.com
simulator on an embedded broker. The worker that pages BC is stopped at once
(no grace) after --kill-after pages; a second worker takes the job over at
its checkpoint. Prints the pages, the BC location reads (pages read again
show as the difference), the iPaaS.com records and links, and the rate, and
fails unless every location arrived exactly once.`,
		Example: "  bcsync bench init --locations 100000 --page-size 1000 --kill-after 50",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.locations < 1 || o.pageSize < 1 || o.pageSize > 20000 || o.killAfter < 0 || o.workers < 1 {
				return errors.New("need --locations >= 1, --page-size 1..20000, --kill-after >= 0, --workers >= 1")
			}
			return runInitBench(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.locations, "locations", 100000, "locations in the simulated BC company")
	f.IntVar(&o.pageSize, "page-size", 1000, "BC page size (odata.maxpagesize)")
	f.IntVar(&o.killAfter, "kill-after", 50, "pages after which the first worker is stopped without grace (0: never)")
	f.IntVar(&o.workers, "workers", 2, "workers syncing the records after the takeover")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	return cmd
}

func runInitBench(ctx context.Context, o initBench, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	log := zerolog.Nop()
	bc := bctest.NewServer(bctest.Options{Locations: o.locations, Budget: -1})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	dir, err := os.MkdirTemp("", "bcsync-bench-init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := broker.Connect(ctx, broker.Options{DataDir: dir, Name: "bcsync-bench", Log: log})
	if err != nil {
		return err
	}
	defer b.Close()
	sc := newSimConfig("bench", bc, bc.URL(), ip, ip.URL())
	cfg, err := config.Parse([]byte(renderSimConfig(sc)), config.MapEnv(map[string]string{sc.SecretEnv: bc.ClientSecret(), sc.KeyEnv: ip.APIKey()}))
	if err != nil {
		return err
	}
	cfg.Subscriptions[0].PageSize = o.pageSize
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		return err
	}
	kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{})
	if err != nil {
		return err
	}
	startWorker := func(id string) (stop func(), err error) {
		wb, err := broker.Connect(ctx, broker.Options{URL: b.ClientURL(), Name: id, Log: log})
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = worker.Run(wctx, cfg, worker.Options{Broker: wb, ID: id, Grace: time.Millisecond, PollWait: 200 * time.Millisecond, Log: log})
		}()
		return func() { cancel(); <-done; wb.Close() }, nil
	}

	start := time.Now()
	_, job, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: "bench", Type: messages.TypeLocation, Op: messages.OpInitialize, Source: "bench"})
	if err != nil {
		return err
	}
	progress := func() worker.Progress {
		var p worker.Progress
		if e, err := kvs[broker.BucketProgress].Get(ctx, worker.ProgressKey("bench", job.ID)); err == nil {
			_ = json.Unmarshal(e.Value(), &p)
		}
		return p
	}
	stop1, err := startWorker("bench-worker-1")
	if err != nil {
		return err
	}
	killedAt := -1
	if o.killAfter > 0 {
		for p := progress(); p.Pages < o.killAfter && !p.Done; p = progress() {
			if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
				return fmt.Errorf("waiting for %d pages: %w", o.killAfter, err)
			}
		}
		stop1()
		killedAt = progress().Pages
	}
	var stops []func()
	if killedAt < 0 {
		stops = append(stops, stop1)
	}
	for i := range o.workers {
		stop, err := startWorker(fmt.Sprintf("bench-worker-%d", i+2))
		if err != nil {
			return err
		}
		stops = append(stops, stop)
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	for ip.Count("location") < o.locations {
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("%d of %d locations after %v: %w", ip.Count("location"), o.locations, time.Since(start).Round(time.Second), err)
		}
	}
	elapsed := time.Since(start)
	p := progress()
	pages := (o.locations + o.pageSize - 1) / o.pageSize
	reads := bc.Stats().DataRequests[bctest.SetLocations]
	fmt.Fprintf(out, "initialized %d locations in pages of %d (%d pages)\n", o.locations, o.pageSize, pages)
	if killedAt >= 0 {
		fmt.Fprintf(out, "  first worker stopped without grace after %d pages; the successor resumed at the checkpoint\n", killedAt)
	}
	fmt.Fprintf(out, "  BC location reads     %d (pages read again: %d)\n", reads, reads-int64(pages))
	fmt.Fprintf(out, "  checkpoint            %d pages, %d jobs enqueued, done=%v\n", p.Pages, p.Enqueued, p.Done)
	fmt.Fprintf(out, "  iPaaS.com locations   %d records, %d links\n", ip.Count("location"), ip.Links("location"))
	fmt.Fprintf(out, "  elapsed               %.1fs (%.0f records/s)\n", elapsed.Seconds(), float64(o.locations)/elapsed.Seconds())
	if ip.Count("location") != o.locations || ip.Links("location") != o.locations || !p.Done {
		return fmt.Errorf("bench init: %d records and %d links for %d locations", ip.Count("location"), ip.Links("location"), o.locations)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
