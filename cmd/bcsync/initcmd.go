package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// initOrder is `bcsync init all`: the types the iPaaS.com BC connection
// initializes, parents first (customer categories before anything that
// refers to them).
var initOrder = []messages.Type{messages.TypeCustomerCategory, messages.TypeLocation, messages.TypeShippingMethod}

func newInitCmd(g *globalFlags) *cobra.Command {
	var (
		natsURL, creds, sub string
		noWait, progress    bool
		timeout             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "init <customer_category|location|shipping_method|customer|all> --subscription NAME",
		Short: "Copy every record of a type from Business Central to iPaaS.com",
		Long: `Publishes an initialize job; a worker pages Business Central and enqueues one
upsert job per record, with the record as its snapshot, checkpointing after
each page (a worker that dies is resumed by another at its checkpoint).
"all" initializes customer categories, locations and shipping methods, in
that order, each once the one before is done.

Follows the progress (pages read, jobs enqueued, dead letters) until every
job it enqueued is settled, whatever else the subscription's queue holds,
and exits non-zero if anything was dead-lettered; --no-wait returns once the
job is queued. Workers must be running.`,
		Example: `  bcsync init location --subscription contoso
  bcsync init all --subscription contoso --nats-url nats://nats:4222`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			types := initOrder
			if args[0] != "all" {
				t := messages.Type(args[0])
				if !t.Valid() {
					return fmt.Errorf("init: %q is not a type: use customer_category, location, shipping_method, customer or all", args[0])
				}
				types = []messages.Type{t}
			}
			if !messages.ValidSubscription(sub) {
				return fmt.Errorf("init: --subscription %q: name the bcsync subscription ([a-z0-9_-])", sub)
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			b, err := broker.Connect(ctx, broker.Options{URL: natsURL, CredsFile: creds, Name: "bcsync-init", Log: zerolog.Nop()})
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
			dead := 0
			for _, t := range types {
				ack, job, err := messages.Publish(ctx, b.JS, messages.Job{Subscription: sub, Type: t, Op: messages.OpInitialize, Source: "bcsync init"})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "initialize %s: job %s queued\n", t, job.ID)
				if noWait {
					continue
				}
				f := follower{js: b.JS, progress: kvs[broker.BucketProgress], sub: sub, t: t, jobID: job.ID, seq: ack.Sequence, bar: progress, w: errw}
				p, d, err := f.follow(ctx)
				if err != nil {
					return err
				}
				dead += d
				fmt.Fprintf(out, "initialize %s: %d pages read, %d jobs enqueued, %d dead-lettered\n", t, p.Pages, p.Enqueued, d)
			}
			if dead > 0 {
				return fmt.Errorf("init: %d jobs dead-lettered: see bcsync dlq list --subscription %s", dead, sub)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsURL, "nats-url", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS server (env NATS_URL; default: a worker's embedded server)")
	f.StringVar(&creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials file (env NATS_CREDS)")
	f.StringVar(&sub, "subscription", "", "bcsync subscription name (required)")
	f.BoolVar(&noWait, "no-wait", false, "return once the initialize jobs are queued")
	f.BoolVar(&progress, "progress", true, "show a progress bar on stderr")
	f.DurationVar(&timeout, "timeout", 0, "give up following after this long (0: no limit); the initialization goes on")
	_ = cmd.MarkFlagRequired("subscription")
	return cmd
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
}

// follow returns the job's final progress and the dead letters of its type
// stored meanwhile. Done means every page read, every record job published,
// and none of them left in the job stream (settled: acknowledged, or
// dead-lettered and terminated). Other jobs of the subscription, before or
// after, are not waited for.
func (f follower) follow(ctx context.Context) (worker.Progress, int, error) {
	deadBefore, err := f.dead(ctx)
	if err != nil {
		return worker.Progress{}, 0, err
	}
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
		deadNow, err := f.dead(ctx)
		if err != nil {
			return p, 0, err
		}
		dead := deadNow - deadBefore
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
func (f follower) left(ctx context.Context, p worker.Progress) (bool, error) {
	requeued, _, err := worker.RequeuedSeq(ctx, f.progress, f.sub, f.jobID)
	if err != nil {
		return false, fmt.Errorf("init: %w", err)
	}
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
	return m.Sequence <= max(p.LastSeq, requeued, f.seq), nil
}

// dead counts the dead letters of the type.
func (f follower) dead(ctx context.Context) (int, error) {
	return subjectCount(ctx, f.js, messages.StreamDLQ, messages.DLQSubject(f.sub, f.t))
}

// subjectCount is the number of messages of stream on subjects matching
// filter.
func subjectCount(ctx context.Context, js jetstream.JetStream, stream, filter string) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("init: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("init: stream %s: %w", stream, err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}
