package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// initOrder is `bcsync init all`: the types the iPaaS.com BC connection
// initializes, parents first (customer categories before anything that
// refers to them).
var initOrder = []messages.Type{messages.TypeCustomerCategory, messages.TypeLocation, messages.TypeShippingMethod}

// initTypes are the types init accepts: those a worker initializes
// (worker.Bulk).
var initTypes = append(slices.Clone(initOrder), messages.TypeCustomer, messages.TypeProduct)

// workerWait is how long init waits for a worker to serve the subscription
// (its consumer on the job stream) before it publishes: a worker started
// together with init creates it within moments.
const workerWait = 10 * time.Second

func newInitCmd(g *globalFlags) *cobra.Command {
	var (
		conn             natsConn
		sub              string
		noWait, progress bool
		timeout          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "init <customer_category|location|shipping_method|customer|product|all> --subscription NAME",
		Short: "Copy every record of a type from Business Central to iPaaS.com",
		Long: `Publishes an initialize job; a worker pages Business Central and enqueues one
upsert job per record, with the record as its snapshot, checkpointing after
each page (a worker that dies is resumed by another at its checkpoint).
"all" initializes customer categories, locations and shipping methods, in
that order, each once the one before is done; customers and products are
not part of it: run "init customer" and "init product" after it.

Follows the progress (pages read, jobs enqueued, dead letters) until every
job it enqueued is settled (and jobs of the same type published meanwhile),
and exits non-zero if anything was dead-lettered, at once if the initialize
job itself was, or if a BC record could not travel as a job (it names them). --no-wait returns once the job is queued; it does not go
with "all", which waits for each type before the next: run the types one
by one with --no-wait instead, each once the one before is done.

Workers must be running: init fails if no worker serves the subscription
(no consumer bcsync-<subscription> on ` + messages.StreamJobs + `) within ` + workerWait.String() + `; with
--no-wait it warns and queues the job for the first worker that does.`,
		Example: `  bcsync init location --subscription contoso
  bcsync init all --subscription contoso --nats-url nats://nats:4222`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			types := initOrder
			if args[0] != "all" {
				t := messages.Type(args[0])
				if !slices.Contains(initTypes, t) {
					return fmt.Errorf("init: %q is not a type init supports: use %s or all", args[0], typeList(initTypes))
				}
				types = []messages.Type{t}
			} else if noWait {
				return fmt.Errorf("init: all runs each type once the one before is done, which --no-wait cannot wait for: drop --no-wait, or run %s, each once the one before is done", allNoWait(sub))
			}
			if !messages.ValidSubscription(sub) {
				return fmt.Errorf("init: --subscription %q: name the bcsync subscription ([a-z0-9_-])", sub)
			}
			if err := conn.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			b, err := conn.connect(ctx, "bcsync-init")
			if err != nil {
				return err
			}
			defer b.Close()
			if err := broker.EnsureStreams(ctx, b.JS, broker.StreamOptions{CreateOnly: true}); err != nil {
				return err
			}
			kvs, err := broker.EnsureKV(ctx, b.JS, broker.KVOptions{CreateOnly: true})
			if err != nil {
				return err
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := waitForWorker(ctx, b.JS, sub, noWait, errw); err != nil {
				return err
			}
			dead, skipped := 0, 0
			for _, t := range types {
				f := follower{js: b.JS, progress: kvs[broker.BucketProgress], sub: sub, t: t, bar: progress, w: errw}
				if !noWait {
					// Before publishing: a worker may dead-letter the
					// job before the first look at the progress.
					if err := f.mark(ctx); err != nil {
						return err
					}
				}
				ack, job, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: sub, Type: t, Op: messages.OpInitialize, Source: "bcsync init"})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "initialize %s: job %s queued\n", t, job.ID)
				if noWait {
					continue
				}
				f.jobID, f.seq = job.ID, ack.Sequence
				p, d, err := f.follow(ctx)
				if err != nil {
					return err
				}
				dead += d
				skipped += p.Skipped
				fmt.Fprintf(out, "initialize %s: %d pages read, %d jobs enqueued, %d dead-lettered", t, p.Pages, p.Enqueued, d)
				if p.Skipped > 0 {
					fmt.Fprintf(out, ", %d BC records skipped: they cannot travel as a job", p.Skipped)
				}
				fmt.Fprintln(out)
				for _, k := range p.SkippedKeys {
					fmt.Fprintf(out, "  skipped: %s\n", k)
				}
				if more := p.Skipped - len(p.SkippedKeys); more > 0 {
					fmt.Fprintf(out, "  and %d more (see the worker's log)\n", more)
				}
			}
			var errs []error
			if dead > 0 {
				errs = append(errs, fmt.Errorf("init: %d jobs dead-lettered: see bcsync dlq list --subscription %s", dead, sub))
			}
			if skipped > 0 {
				errs = append(errs, fmt.Errorf("init: %d BC records were not synced: they cannot travel as a job (listed above)", skipped))
			}
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	conn.flags(f)
	f.StringVar(&sub, "subscription", "", "bcsync subscription name (required)")
	f.BoolVar(&noWait, "no-wait", false, "return once the initialize job is queued (one type, not all)")
	f.BoolVar(&progress, "progress", true, "show a progress bar on stderr")
	f.DurationVar(&timeout, "timeout", 0, "give up following after this long (0: no limit); the initialization goes on")
	_ = cmd.MarkFlagRequired("subscription")
	return cmd
}

// typeList is "a, b or c".
func typeList(types []messages.Type) string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// allNoWait is what to run instead of init all --no-wait.
func allNoWait(sub string) string {
	if sub == "" {
		sub = "NAME"
	}
	steps := make([]string, len(initOrder))
	for i, t := range initOrder {
		steps[i] = fmt.Sprintf("`bcsync init %s --subscription %s --no-wait`", t, sub)
	}
	return strings.Join(steps, ", then ")
}

// waitForWorker makes sure that a worker serves sub, i.e. that its durable
// consumer exists on the job stream, waiting up to workerWait for one that
// is starting; else an initialize job would wait for ever, and init with
// it. With noWait it only warns: the job waits in the stream for the first
// worker that serves the subscription.
func waitForWorker(ctx context.Context, js jetstream.JetStream, sub string, noWait bool, w io.Writer) error {
	name := broker.ConsumerName(sub)
	served := func() (bool, error) {
		_, err := js.Consumer(ctx, messages.StreamJobs, name)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			return false, nil
		case ctx.Err() != nil:
			return false, nil // reported below as not served
		}
		return false, fmt.Errorf("init: look for the consumer %s on %s: %w", name, messages.StreamJobs, err)
	}
	ok, err := served()
	if ok || err != nil {
		return err
	}
	if noWait {
		fmt.Fprintf(w, "warning: no worker has served subscription %q yet (no consumer %s on %s): the job waits for a worker whose configuration has it%s\n",
			sub, name, messages.StreamJobs, servedHint(ctx, js))
		return nil
	}
	fmt.Fprintf(w, "waiting up to %v for a worker of subscription %q ...\n", workerWait, sub)
	deadline := time.Now().Add(workerWait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		ok, err := served()
		if ok || err != nil {
			return err
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
	}
	// A context of its own: ctx may be what ended the wait.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return fmt.Errorf("init: no worker has served subscription %q: there is no consumer %s on %s; start a worker whose configuration has subscription %q, or check the spelling of --subscription%s",
		sub, name, messages.StreamJobs, sub, servedHint(hctx, js))
}

// servedHint names the subscriptions that workers serve, for a typo.
func servedHint(ctx context.Context, js jetstream.JetStream) string {
	s, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return ""
	}
	var subs []string
	names := s.ConsumerNames(ctx)
	for n := range names.Name() {
		if sub, ok := strings.CutPrefix(n, broker.ConsumerName("")); ok && messages.ValidSubscription(sub) {
			subs = append(subs, sub)
		}
	}
	if names.Err() != nil || len(subs) == 0 {
		return ""
	}
	slices.Sort(subs)
	return " (workers serve: " + strings.Join(subs, ", ") + ")"
}

// follower watches one initialize job until it and its record jobs are done.
type follower struct {
	js       jetstream.JetStream
	progress jetstream.KeyValue
	sub      string
	t        messages.Type
	jobID    string
	seq      uint64 // the initialize job's stream sequence
	bar      bool
	w        io.Writer

	// Set by mark before the job is published.
	dlqSeq uint64 // the last sequence of the dead-letter stream
}

// mark notes, before the initialize job is published, where the
// dead-letter stream ends: follow reads the letters stored after, counting
// those of the initialization's record jobs and looking for the initialize
// job's own.
func (f *follower) mark(ctx context.Context) error {
	s, err := f.js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return fmt.Errorf("init: stream %s: %w", messages.StreamDLQ, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("init: stream %s: %w", messages.StreamDLQ, err)
	}
	f.dlqSeq = info.State.LastSeq
	return nil
}

// follow returns the job's final progress and the number of its record
// jobs dead-lettered since mark (letters of other jobs, and letters purged
// or replayed meanwhile, do not change it). Done means every page read, every record job
// published, and none of them left in the job stream (settled:
// acknowledged, or dead-lettered and terminated). Other jobs of the
// subscription, before or after, are not waited for. The initialize job
// itself dead-lettered (a permanent failure, such as a type the worker
// cannot initialize) is an error at once: no worker will take it up again.
func (f follower) follow(ctx context.Context) (worker.Progress, int, error) {
	dlqStream, err := f.js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return worker.Progress{}, 0, fmt.Errorf("init: stream %s: %w", messages.StreamDLQ, err)
	}
	cursor, dead := f.dlqSeq, 0
	var bar *progressbar.ProgressBar
	if f.bar {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(f.w), progressbar.OptionSetDescription("initialize "+string(f.t)),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish(), progressbar.OptionSpinnerType(14))
		defer func() { _ = bar.Finish() }()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := f.read(ctx)
		if err != nil {
			return p, 0, err
		}
		left, err := f.left(ctx, p)
		if err != nil {
			return p, 0, err
		}
		if l, seq, err := f.letters(ctx, dlqStream, &cursor, &dead); err != nil {
			return p, dead, err
		} else if l != nil {
			if bar != nil {
				_ = bar.Clear()
			}
			return p, dead, fmt.Errorf("init: the initialize job of %s (job %s) was dead-lettered after %d pages, %d jobs enqueued (%s): %s; see bcsync dlq show %d",
				f.t, f.jobID, p.Pages, p.Enqueued, l.ErrorClass, strings.TrimRight(l.Reason, ". "), seq)
		}
		if bar != nil {
			state := "reading BC"
			if p.Done {
				state = "syncing the last jobs"
			}
			bar.Describe(fmt.Sprintf("initialize %s: %d pages, %d enqueued, %d dead-lettered; %s", f.t, p.Pages, p.Enqueued, dead, state))
			_ = bar.Add(1)
		}
		if p.Done && !left {
			return p, dead, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return p, dead, fmt.Errorf("init: stopped following %s after %d pages, %d jobs enqueued (the initialization goes on): %w", f.t, p.Pages, p.Enqueued, ctx.Err())
		}
	}
}

func (f follower) read(ctx context.Context) (worker.Progress, error) {
	var p worker.Progress
	e, err := f.progress.Get(ctx, worker.ProgressKey(f.sub, f.jobID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return p, nil // no worker took it yet
	}
	if err != nil {
		return p, fmt.Errorf("init: read progress: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return p, fmt.Errorf("init: read progress: %w", err)
	}
	return p, nil
}

// left reports whether a job of the initialize job is still in the job
// stream: the initialize job itself, or one of the record jobs it published
// (stream sequences from its own to p.LastSeq, or to the newest copy of one
// that a worker requeued; the stream keeps a job until it is settled). A
// job of the same type published meanwhile by someone else, in that range,
// is waited for too.
//
// The stream is read before the requeued mark: a worker requeueing a job
// publishes the copy, raises the mark, then settles the original, so a
// stream read that no longer finds the original is followed by a mark read
// that finds the copy. (Read the other way round, a requeue between the two
// reads was missed.)
func (f follower) left(ctx context.Context, p worker.Progress) (bool, error) {
	s, err := f.js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return false, fmt.Errorf("init: stream %s: %w", messages.StreamJobs, err)
	}
	m, err := s.GetMsg(ctx, f.seq, jetstream.WithGetMsgSubject(messages.TypeFilter(f.sub, f.t)))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("init: look for the jobs left: %w", err)
	}
	requeued, _, err := worker.RequeuedSeq(ctx, f.progress, f.sub, f.jobID)
	if err != nil {
		return false, fmt.Errorf("init: %w", err)
	}
	return m.Sequence <= max(p.LastSeq, requeued, f.seq), nil
}

// letters reads the letters of the type stored after *cursor, moving it:
// it adds to *dead those of the initialization's record jobs (their source
// is "initialize:<job id>"), and returns the initialize job's own letter,
// and its sequence, when it finds it.
func (f follower) letters(ctx context.Context, s jetstream.Stream, cursor *uint64, dead *int) (*messages.DeadLetter, uint64, error) {
	source := string(messages.OpInitialize) + ":" + f.jobID
	for {
		m, err := s.GetMsg(ctx, *cursor+1, jetstream.WithGetMsgSubject(messages.DLQSubject(f.sub, f.t)))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, 0, nil
		case err != nil:
			return nil, 0, fmt.Errorf("init: read the dead letters of %s: %w", f.t, err)
		}
		*cursor = m.Sequence
		l, err := messages.DecodeDeadLetter(m.Data)
		if err != nil {
			continue // not a dead letter
		}
		if l.JobID == f.jobID {
			return l, m.Sequence, nil
		}
		if j, err := messages.Decode(l.Body); err == nil && j.Source == source {
			*dead++
		}
	}
}
