package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

type pipelineBench struct {
	jobs, rounds, e2eJobs, concurrency, workers, e2eConcurrency int
	cpuProfile                                                  string
}

// benchRequestsPerMinute is the simulators' request budget in (b).
const benchRequestsPerMinute = 10_000_000

func newBenchPipelineCmd() *cobra.Command {
	o := pipelineBench{}
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "bcsync's overhead over raw JetStream, and end-to-end jobs/s and latency",
		Long: `Two measurements on an embedded broker, in one run:

(a) overhead: --jobs jobs through bcsync's consume loop with a handler that
    does nothing, with and without the record lock, beside a raw JetStream
    consume-and-ack loop over as many messages; all acknowledge with a
    server confirmation (DoubleAck). --rounds rounds alternate the three;
    the medians are reported.
(b) end to end: --e2e-jobs customer jobs through --workers processes of this
    binary's worker command (--e2e-concurrency jobs at once each) against the
    BC and iPaaS.com simulators on loopback (fleet-wide token, budgets,
    record locks and all), with jobs/s, p50/p99 latency from enqueue to the
    iPaaS.com write, BC requests per job, CPU time per job (the workers', and
    this process's: broker, simulators, publisher), and each worker's peak RSS.`,
		Example: "  bcsync bench pipeline --jobs 20000 --e2e-jobs 5000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.jobs < 1 || o.rounds < 1 || o.e2eJobs < 0 || o.concurrency < 1 || o.workers < 1 || o.e2eConcurrency < 1 {
				return errors.New("need --jobs >= 1, --rounds >= 1, --e2e-jobs >= 0, --concurrency >= 1, --workers >= 1, --e2e-concurrency >= 1")
			}
			if o.cpuProfile != "" {
				f, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			return runPipelineBench(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.jobs, "jobs", 20000, "jobs for the overhead measurement")
	f.IntVar(&o.rounds, "rounds", 3, "rounds of the overhead measurement (medians are reported)")
	f.IntVar(&o.e2eJobs, "e2e-jobs", 5000, "customer jobs for the end-to-end measurement (0: skip)")
	f.IntVar(&o.concurrency, "concurrency", 64, "jobs at once in (a)")
	f.IntVar(&o.workers, "workers", 2, "workers in (b)")
	f.IntVar(&o.e2eConcurrency, "e2e-concurrency", 32, "jobs at once per worker in (b)")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
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

	// Rounds alternate the three loops, so that a slower moment of the
	// machine weighs on all of them; each rate varies by a third from one
	// round to the next.
	var raw, loop, bare []time.Duration
	for r := range o.rounds {
		d, err := benchRaw(ctx, b, o)
		if err != nil {
			return fmt.Errorf("raw loop: %w", err)
		}
		raw = append(raw, d)
		if d, err = benchLoop(ctx, b, o, fmt.Sprintf("loop%d", r), true); err != nil {
			return fmt.Errorf("bcsync loop: %w", err)
		}
		loop = append(loop, d)
		if d, err = benchLoop(ctx, b, o, fmt.Sprintf("bare%d", r), false); err != nil {
			return fmt.Errorf("bcsync loop without record locks: %w", err)
		}
		bare = append(bare, d)
	}
	rate := func(ds []time.Duration) float64 { return float64(o.jobs) / median(ds).Seconds() }
	// share is the loop's rate as a part of the raw loop's in the same
	// round: the median and the range over the rounds.
	share := func(ds []time.Duration) string {
		var pct []float64
		for i := range ds {
			pct = append(pct, 100*raw[i].Seconds()/ds[i].Seconds())
		}
		slices.Sort(pct)
		return fmt.Sprintf("%.0f%% of raw; %.0f-%.0f%% over the rounds", pct[len(pct)/2], pct[0], pct[len(pct)-1])
	}
	fmt.Fprintf(out, "(a) %d jobs, %d at once, instant handler, DoubleAck; medians of %d rounds\n", o.jobs, o.concurrency, o.rounds)
	fmt.Fprintf(out, "  raw JetStream consume+ack   %8.0f msgs/s\n", rate(raw))
	fmt.Fprintf(out, "  bcsync consume loop         %8.0f jobs/s (%s)\n", rate(loop), share(loop))
	fmt.Fprintf(out, "    without the record lock   %8.0f jobs/s (%s)\n", rate(bare), share(bare))
	if o.e2eJobs == 0 {
		return nil
	}
	return benchE2E(ctx, b, o, out)
}

// median is the middle of ds (the upper one of an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
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
// over o.jobs jobs of subscription sub (decoded, validated, locked per
// record when locks, settled).
func benchLoop(ctx context.Context, b *broker.Broker, o pipelineBench, sub string, locks bool) (time.Duration, error) {
	if err := fill(ctx, b.JS, sub, o.jobs); err != nil {
		return 0, err
	}
	kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{})
	if err != nil {
		return 0, err
	}
	cons, err := broker.EnsureConsumer(ctx, b.JS, broker.ConsumerOptions{Subscription: sub, MaxDeliver: 5, AckWait: time.Minute, MaxAckPending: 10000})
	if err != nil {
		return 0, err
	}
	var rl *worker.RecordLocks
	if locks {
		rl = worker.NewRecordLocks(b.JS, kvs[broker.BucketRecords], time.Minute)
	}
	stats := &worker.Stats{}
	l, err := worker.NewLoop(worker.LoopConfig{
		Subscription: sub, Consumer: cons, JS: b.JS, MaxDeliver: 5, Concurrency: o.concurrency, Stats: stats,
		Handler: worker.HandlerFunc(func(context.Context, *messages.Job) error { return nil }),
		Locks:   rl,
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

// benchE2E runs o.e2eJobs customer jobs through o.workers worker processes
// (this binary's "worker" command) against the simulators, which run in this
// process with the broker. A job's latency runs from just before its publish
// to its write at the iPaaS.com simulator; the run ends when every job is
// acknowledged.
func benchE2E(ctx context.Context, b *broker.Broker, o pipelineBench, out io.Writer) error {
	var (
		mu       sync.Mutex
		enqueued = make(map[string]time.Time, o.e2eJobs)
		lat      = make([]time.Duration, 0, o.e2eJobs)
	)
	ip := ipaastest.NewServer(ipaastest.Options{OnWrite: func(table string, ext []string) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range ext {
			if at, ok := enqueued[e]; ok && table == ipaastest.TableCustomer {
				lat = append(lat, now.Sub(at))
				delete(enqueued, e)
			}
		}
	}})
	defer ip.Close()
	bc := bctest.NewServer(bctest.Options{Customers: o.e2eJobs, Budget: -1})
	defer bc.Close()
	dir, err := os.MkdirTemp("", "bcsync-bench-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sc := newSimConfig("bench", bc, bc.URL(), ip, ip.URL())
	sc.NATSURL = b.ClientURL()
	// The simulators are neither BC nor iPaaS.com: their request budgets
	// are set so high that they never pace the run (100,000 a minute, the
	// demo's setting, capped an earlier version of this benchmark at 1,667
	// jobs/s, whatever the pipeline could do), and the fleet may run 64
	// iPaaS.com calls at once rather than the demo's 10. BC keeps its 5 at
	// once, its real limit, which the workers meet by batching reads.
	sc.Requests, sc.IPaaSRequests = benchRequestsPerMinute, benchRequestsPerMinute
	sc.IPaaSConcurrency = 64
	sc.JobConcurrency = o.e2eConcurrency
	cfgPath := filepath.Join(dir, "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderSimConfig(sc)), 0o600); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	exited := make(chan error, o.workers) // one per worker that ended
	running := 0
	defer func() {
		// SIGTERM: the workers drain and exit; a stuck one is killed.
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		kill := time.AfterFunc(30*time.Second, func() {
			for _, p := range procs {
				_ = p.Process.Kill()
			}
		})
		defer kill.Stop()
		for range running {
			<-exited
		}
	}()
	// alive fails when a worker ended before its time, with its log.
	alive := func() error {
		select {
		case err := <-exited:
			running--
			logs, _ := filepath.Glob(filepath.Join(dir, "worker-*.log"))
			var tail []byte
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				tail = append(tail, b[max(0, len(b)-2000):]...)
			}
			return fmt.Errorf("a worker exited (%v):\n%s", err, tail)
		default:
			return nil
		}
	}
	for i := range o.workers {
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.log", i+1)))
		if err != nil {
			return err
		}
		defer logf.Close()
		p := exec.CommandContext(ctx, exe, "worker", "--config", cfgPath, "--admin-listen", "", "--id", fmt.Sprintf("bench-%d", i+1), "--log-level", "warn", "--log-format", "json")
		p.Env = append(os.Environ(), sc.SecretEnv+"="+bc.ClientSecret(), sc.KeyEnv+"="+ip.APIKey())
		p.Stdout, p.Stderr = logf, logf
		dieWithParent(p)
		if err := p.Start(); err != nil {
			return err
		}
		procs = append(procs, p)
		running++
		go func() { exited <- p.Wait() }()
	}
	// Ready: every worker pulls from the subscription's consumer.
	for {
		if info, err := consumerInfo(ctx, b, "bench"); err == nil && info.NumWaiting >= o.workers {
			break
		}
		if err := cmp.Or(alive(), sleepCtx(ctx, 50*time.Millisecond)); err != nil {
			return err
		}
	}

	// CPU time is counted from here: the workers' and this process's.
	cpuStart := make([]time.Duration, len(procs)+1)
	for i, p := range procs {
		cpuStart[i] = cpuTime(p.Process.Pid)
	}
	cpuStart[len(procs)] = cpuTime(os.Getpid())
	start := time.Now()
	if err := publishEach(ctx, b.JS, bc.CustomerNumbers(), func(key string) {
		mu.Lock()
		enqueued[key] = time.Now()
		mu.Unlock()
	}); err != nil {
		return err
	}
	// Done: every job written, then acknowledged (the consumer drained).
	// The consumer alone can look drained before it counted the new jobs;
	// drained for a second with jobs unwritten, some were dead-lettered
	// (reported below).
	var drainedAt time.Time
	for {
		mu.Lock()
		written := len(lat) == o.e2eJobs
		mu.Unlock()
		info, err := consumerInfo(ctx, b, "bench")
		drained := err == nil && info.NumPending == 0 && info.NumAckPending == 0
		if !drained {
			drainedAt = time.Time{}
		} else if drainedAt.IsZero() {
			drainedAt = time.Now()
		}
		if drained && (written || time.Since(drainedAt) > time.Second) {
			break
		}
		if err := cmp.Or(alive(), sleepCtx(ctx, 5*time.Millisecond)); err != nil {
			mu.Lock()
			n := len(lat)
			mu.Unlock()
			return fmt.Errorf("%d of %d jobs written: %w", n, o.e2eJobs, err)
		}
	}
	elapsed := time.Since(start)
	var rss []int64
	var workersCPU time.Duration
	for i, p := range procs {
		rss = append(rss, peakRSS(p.Process.Pid))
		workersCPU += cpuTime(p.Process.Pid) - cpuStart[i]
	}
	ownCPU := cpuTime(os.Getpid()) - cpuStart[len(procs)]
	mu.Lock()
	slices.Sort(lat)
	n := len(lat)
	var p50, p99 time.Duration
	if n > 0 {
		p50, p99 = lat[n/2], lat[n*99/100]
	}
	mu.Unlock()
	fmt.Fprintf(out, "(b) %d customer jobs, %d worker processes (%d jobs at once each), BC and iPaaS.com simulators on loopback\n", o.e2eJobs, o.workers, o.e2eConcurrency)
	fmt.Fprintf(out, "    fleet-wide limits: BC %d requests at once, iPaaS.com %d; %d requests a minute each\n", sc.Concurrency, sc.IPaaSConcurrency, benchRequestsPerMinute)
	fmt.Fprintf(out, "  end to end                  %8.0f jobs/s (all enqueued at once, until all acknowledged)\n", float64(o.e2eJobs)/elapsed.Seconds())
	fmt.Fprintf(out, "  latency, enqueue to write   p50 %v, p99 %v (%d writes)\n", p50.Round(time.Millisecond), p99.Round(time.Millisecond), n)
	fmt.Fprintf(out, "  BC requests                 %8d (%.1f jobs per request)\n", bc.Stats().APIRequests, float64(o.e2eJobs)/float64(max(bc.Stats().APIRequests, 1)))
	perJob := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(o.e2eJobs) }
	fmt.Fprintf(out, "  CPU per job                 %.2f ms in the workers, %.2f ms in this process (broker, simulators, publishing)\n", perJob(workersCPU), perJob(ownCPU))
	for i, r := range rss {
		fmt.Fprintf(out, "  peak RSS of worker %d        %5d MiB\n", i+1, r>>20)
	}
	fmt.Fprintf(out, "  peak RSS of this process    %5d MiB (broker and simulators)\n", peakRSS(os.Getpid())>>20)
	if n != o.e2eJobs {
		return fmt.Errorf("%d of %d jobs written to iPaaS.com", n, o.e2eJobs)
	}
	return nil
}

// consumerInfo reads the consumer of subscription sub.
func consumerInfo(ctx context.Context, b *broker.Broker, sub string) (*jetstream.ConsumerInfo, error) {
	c, err := b.JS.Consumer(ctx, messages.StreamJobs, broker.ConsumerName(sub))
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// publishEach publishes an upsert job for each customer number, 64 at
// once, calling before(key) just before each publish.
func publishEach(ctx context.Context, js jetstream.JetStream, keys []string, before func(string)) error {
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	sem := make(chan struct{}, 64)
	for _, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			before(k)
			if _, _, err := messages.Publish(ctx, js, messages.Job{Subscription: "bench", Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: k}); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// cpuTime is the user and system CPU time process pid used so far (Linux),
// or 0.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which may hold spaces and ends
	// with the line's last ')': utime and stime are the 12th and 13th, in
	// clock ticks of 1/100 s.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS is process pid's peak resident set size in bytes (Linux), or 0.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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
