package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

type pipelineBench struct {
	jobs, e2eJobs, concurrency, workers int
}

func newBenchPipelineCmd() *cobra.Command {
	o := pipelineBench{}
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "bcsync's overhead over raw JetStream, and end-to-end jobs/s and latency",
		Long: `Two measurements on an embedded broker, in one run:

(a) overhead: --jobs jobs through bcsync's consume loop with a handler that
    does nothing, beside a raw JetStream consume-and-ack loop over as many
    messages; both acknowledge with a server confirmation (DoubleAck).
(b) end to end: --e2e-jobs customer jobs through --workers workers against
    the BC and iPaaS.com simulators on loopback (fleet-wide token, budgets,
    record locks and all), with jobs/s, p50/p99 latency from enqueue to ack,
    and the process's peak RSS (broker, simulators and workers together).`,
		Example: "  bcsync bench pipeline --jobs 20000 --e2e-jobs 5000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.jobs < 1 || o.e2eJobs < 0 || o.concurrency < 1 || o.workers < 1 {
				return errors.New("need --jobs >= 1, --e2e-jobs >= 0, --concurrency >= 1, --workers >= 1")
			}
			return runPipelineBench(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.jobs, "jobs", 20000, "jobs for the overhead measurement")
	f.IntVar(&o.e2eJobs, "e2e-jobs", 5000, "customer jobs for the end-to-end measurement (0: skip)")
	f.IntVar(&o.concurrency, "concurrency", 64, "jobs at once in (a)")
	f.IntVar(&o.workers, "workers", 2, "workers in (b)")
	return cmd
}

func runPipelineBench(ctx context.Context, o pipelineBench, out io.Writer) error {
	dir, err := os.MkdirTemp("", "bcsync-bench-pipeline-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := broker.Connect(ctx, broker.Options{DataDir: dir, Name: "bcsync-bench", Log: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{}); err != nil {
		return err
	}

	raw, err := benchRaw(ctx, b, o)
	if err != nil {
		return fmt.Errorf("raw loop: %w", err)
	}
	loop, err := benchLoop(ctx, b, o)
	if err != nil {
		return fmt.Errorf("bcsync loop: %w", err)
	}
	fmt.Fprintf(out, "(a) %d jobs, %d at once, instant handler, DoubleAck\n", o.jobs, o.concurrency)
	fmt.Fprintf(out, "  raw JetStream consume+ack   %8.0f msgs/s\n", float64(o.jobs)/raw.Seconds())
	fmt.Fprintf(out, "  bcsync consume loop         %8.0f jobs/s (%.0f%% of raw)\n", float64(o.jobs)/loop.Seconds(), 100*raw.Seconds()/loop.Seconds())
	if o.e2eJobs == 0 {
		return nil
	}
	return benchE2E(ctx, b, o, out)
}

// fill publishes n jobs for subscription sub.
func fill(ctx context.Context, js jetstream.JetStream, sub string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, _, err := messages.Publish(ctx, js, messages.Job{Subscription: sub, Type: messages.TypeLocation, Op: messages.OpUpsert, Key: fmt.Sprintf("L%07d", i)}); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// benchRaw times a plain consume-and-DoubleAck loop over o.jobs messages.
func benchRaw(ctx context.Context, b *broker.Broker, o pipelineBench) (time.Duration, error) {
	if err := fill(ctx, b.JS, "raw", o.jobs); err != nil {
		return 0, err
	}
	cons, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{Subscription: "raw", MaxDeliver: 5, AckWait: time.Minute, MaxAckPending: 10000})
	if err != nil {
		return 0, err
	}
	var done atomic.Int64
	finished := make(chan struct{})
	sem := make(chan struct{}, o.concurrency)
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := m.DoubleAck(ctx); err == nil && done.Add(1) == int64(o.jobs) {
				close(finished)
			}
		}()
	}, jetstream.PullMaxMessages(o.concurrency))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case <-finished:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return time.Since(start), nil
}

// benchLoop times bcsync's consume loop, with a handler that does nothing,
// over o.jobs jobs (decoded, validated, locked per record, settled).
func benchLoop(ctx context.Context, b *broker.Broker, o pipelineBench) (time.Duration, error) {
	if err := fill(ctx, b.JS, "loop", o.jobs); err != nil {
		return 0, err
	}
	kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{})
	if err != nil {
		return 0, err
	}
	cons, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{Subscription: "loop", MaxDeliver: 5, AckWait: time.Minute, MaxAckPending: 10000})
	if err != nil {
		return 0, err
	}
	stats := &worker.Stats{}
	l, err := worker.NewLoop(worker.LoopConfig{
		Subscription: "loop", Consumer: cons, JS: b.JS, MaxDeliver: 5, Concurrency: o.concurrency, Stats: stats,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil }),
		Locks:   worker.NewRecordLocks(kvs[broker.BucketRecords], time.Minute),
	})
	if err != nil {
		return 0, err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	go func() { _ = l.Run(lctx) }()
	for stats.Acked.Load() < int64(o.jobs) {
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// benchE2E runs o.e2eJobs customer jobs through o.workers workers against
// the simulators.
func benchE2E(ctx context.Context, b *broker.Broker, o pipelineBench, out io.Writer) error {
	bc := bctest.NewServer(bctest.Options{Customers: o.e2eJobs, Budget: -1})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	sc := newSimConfig("bench", bc, bc.URL(), ip, ip.URL())
	cfg, err := config.Parse([]byte(renderSimConfig(sc)), config.MapEnv(map[string]string{sc.SecretEnv: bc.ClientSecret(), sc.KeyEnv: ip.APIKey()}))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var lat []time.Duration
	observe := func(job *messages.Job, outcome string) {
		if job == nil || outcome != "acked" {
			return
		}
		d := time.Since(job.EnqueuedAt)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range o.workers {
		wb, err := broker.Connect(ctx, broker.Options{URL: b.ClientURL(), Log: zerolog.Nop()})
		if err != nil {
			cancel()
			return err
		}
		defer wb.Close()
		wg.Go(func() {
			_ = worker.Run(wctx, cfg, worker.Options{Broker: wb, ID: fmt.Sprintf("bench-%d", i+1), PollWait: 200 * time.Millisecond, Log: zerolog.Nop(), Observe: observe})
		})
	}
	defer func() { cancel(); wg.Wait() }()
	// Warm up: the token, the company, the streams and consumers.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	for _, k := range bc.CustomerNumbers() {
		if _, _, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: "bench", Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: k}); err != nil {
			return err
		}
	}
	for {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= o.e2eJobs {
			break
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("%d of %d jobs done: %w", n, o.e2eJobs, err)
		}
	}
	elapsed := time.Since(start)
	mu.Lock()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	mu.Unlock()
	fmt.Fprintf(out, "(b) %d customer jobs, %d workers, BC and iPaaS.com simulators on loopback\n", o.e2eJobs, o.workers)
	fmt.Fprintf(out, "  end to end                  %8.0f jobs/s (all enqueued at once)\n", float64(o.e2eJobs)/elapsed.Seconds())
	fmt.Fprintf(out, "  latency, enqueue to ack     p50 %v, p99 %v\n", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if rss := peakRSS(); rss > 0 {
		fmt.Fprintf(out, "  peak RSS of this process    %d MiB (broker, simulators and %d workers)\n", rss>>20, o.workers)
	}
	return nil
}

// peakRSS is the process's peak resident set size in bytes (Linux), or 0.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
