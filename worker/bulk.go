package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/internal/errtext"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Progress is the checkpoint of one bulk job (initialize or delta), kept in
// the progress bucket under ProgressKey: a worker that takes the job over
// after its first one died resumes at Next instead of reading BC again from
// the first page, and `bcsync init` follows it.
type Progress struct {
	JobID string        `json:"job_id"`
	Type  messages.Type `json:"type"`
	Op    messages.Op   `json:"op"`
	// Next is the link of the next page to read; empty before the first
	// page and after the last.
	Next string `json:"next,omitempty"`
	// Pages and Enqueued count the pages read and the jobs published.
	Pages    int `json:"pages"`
	Enqueued int `json:"enqueued"`
	// Skipped counts the BC records that cannot travel as a job (a code
	// no job key can carry, a record too large), never enqueued;
	// SkippedKeys names the first MaxSkippedKeys of them, with the reason.
	Skipped     int      `json:"skipped,omitempty"`
	SkippedKeys []string `json:"skipped_keys,omitempty"`
	// LastSeq is the highest BCSYNC_JOBS sequence of the jobs published:
	// once no job of the type is left in the stream between the bulk job's
	// own sequence and this one, its records are all settled (bcsync init
	// waits for that).
	LastSeq uint64 `json:"last_seq,omitempty"`
	// Since is the watermark a delta started from; Newest the latest
	// lastModifiedDateTime seen. The next watermark is Newest, but no later
	// than DeltaOverlap before Started.
	Since  time.Time `json:"since,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
	// Done is set once every page was read and its jobs published.
	Done    bool      `json:"done"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// ProgressKey is the progress bucket's key of a bulk job.
func ProgressKey(subscription, jobID string) string {
	return "bulk." + subscription + "." + recordToken(jobID)
}

// RequeuedKey is the progress bucket's key of the newest job stream
// sequence of a requeued copy of a record job that bulk job jobID published
// (a held job is copied to the end of the stream on its last delivery,
// past the bulk's LastSeq): `bcsync init` waits for the jobs up to it too.
func RequeuedKey(subscription, jobID string) string {
	return "requeued." + subscription + "." + recordToken(jobID)
}

// RequeuedSeq reads the sequence kept under RequeuedKey (0: none).
func RequeuedSeq(ctx context.Context, kv jetstream.KeyValue, subscription, jobID string) (uint64, uint64, error) {
	e, err := kv.Get(ctx, RequeuedKey(subscription, jobID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, 0, nil
	case err != nil:
		return 0, 0, fmt.Errorf("read the requeued jobs' mark: %w", err)
	}
	seq, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, e.Revision(), nil // unreadable: raised by the next requeue
	}
	return seq, e.Revision(), nil
}

// bulkOf names the bulk job that published job, as its Source says
// ("initialize:<id>" or "delta:<id>"), or "".
func bulkOf(job *messages.Job) string {
	if job == nil {
		return ""
	}
	op, id, ok := strings.Cut(job.Source, ":")
	if !ok || id == "" || !messages.Op(op).Bulk() {
		return ""
	}
	return id
}

// noteRequeued raises the mark of bulk job jobID's requeued copies to seq.
func noteRequeued(ctx context.Context, kv jetstream.KeyValue, subscription, jobID string, seq uint64) error {
	key := RequeuedKey(subscription, jobID)
	val := []byte(strconv.FormatUint(seq, 10))
	// Each lost race is another worker's raise: at most one per worker.
	for range 100 {
		cur, rev, err := RequeuedSeq(ctx, kv, subscription, jobID)
		if err != nil {
			return err
		}
		if cur >= seq {
			return nil
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, val)
		} else {
			_, err = kv.Update(ctx, key, val, rev)
		}
		if err == nil || !broker.IsConflict(err) {
			return err
		}
	}
	return fmt.Errorf("raise %s: other workers kept changing it", key)
}

// WatermarkKey is the progress bucket's key of the watermark of a type: the
// newest lastModifiedDateTime a delta has read.
func WatermarkKey(subscription string, t messages.Type) string {
	return "watermark." + subscription + "." + string(t)
}

// Bulk handles the jobs that work on every record of a type: initialize
// copies them all, delta those changed since the type's watermark. It pages
// BC and publishes one upsert job per record, carrying the record as its
// snapshot (so no second BC read per record), and checkpoints the next
// page's link after each page.
type Bulk struct {
	BC           *bcclient.Client
	JS           messages.Publisher
	Progress     jetstream.KeyValue
	Subscription string
	// Now, when set, is the clock a bulk job's start is taken from (a
	// test's BC clock); default time.Now.
	Now func() time.Time
	// Overlap, when positive, replaces DeltaOverlap.
	Overlap time.Duration
}

// DeltaOverlap is how far behind its start a delta leaves the watermark,
// at the latest. A delta's listing does not see every change made while
// it runs: a record changed behind the page it reached, or stamped before
// its transaction committed, may carry a lastModifiedDateTime older than
// the newest one the delta read. The next delta reads those minutes again
// (a record written twice is only rewritten, never duplicated), so that a
// change is lost only if BC commits it more than DeltaOverlap after
// stamping it, or the workers' clocks run that far ahead of BC's.
const DeltaOverlap = 2 * time.Minute

// Handle pages the job's type and publishes its records' jobs.
func (b *Bulk) Handle(ctx context.Context, job *messages.Job) error {
	key := ProgressKey(b.Subscription, job.ID)
	p, rev, err := b.load(ctx, key)
	if err != nil {
		return err
	}
	log := zerolog.Ctx(ctx)
	if p.Done {
		log.Info().Int("pages", p.Pages).Int("enqueued", p.Enqueued).Msg("bulk job already done")
		return b.finish(ctx, job, p)
	}
	if p.JobID == "" {
		now := time.Now
		if b.Now != nil {
			now = b.Now
		}
		p = Progress{JobID: job.ID, Type: job.Type, Op: job.Op, Started: now().UTC()}
		if job.Op == messages.OpDelta {
			if p.Since, err = b.watermark(ctx, job.Type); err != nil {
				return err
			}
		}
	} else {
		log.Info().Int("pages", p.Pages).Int("enqueued", p.Enqueued).Msg("resuming a bulk job at its checkpoint")
	}
	// AfterPage first: opts[:1] is the listing without its checkpoint.
	opts := []bcclient.ListOption{bcclient.AfterPage(func(next string) error {
		p.Next, p.Pages, p.Done, p.Updated = next, p.Pages+1, next == "", time.Now().UTC()
		rev, err = b.save(ctx, key, p, rev)
		return err
	})}
	if p.Next != "" {
		opts = append(opts, bcclient.ResumeAt(p.Next))
	}
	page := func(recs []snapshot) error {
		last, skipped, err := b.publish(ctx, job, recs)
		if err != nil {
			return err
		}
		p.Enqueued += len(recs) - len(skipped)
		p.Skipped += len(skipped)
		for _, e := range skipped {
			if len(p.SkippedKeys) < MaxSkippedKeys {
				p.SkippedKeys = append(p.SkippedKeys, errtext.Truncate(e.Error(), 300))
			}
		}
		p.LastSeq = max(p.LastSeq, last)
		for _, r := range recs {
			if r.modified.After(p.Newest) {
				p.Newest = r.modified
			}
		}
		return nil
	}
	err = b.list(ctx, job.Type, p.Since, page, opts)
	if errors.Is(err, bcclient.ErrBadResumeLink) {
		// Every delivery would fail the same way: start over (the jobs
		// published again are deduplicated, or rewrite the same state).
		log.Warn().Err(err).Msg("the bulk job's checkpoint cannot be resumed (api_url changed?): starting over from the first page")
		// The pages read again are counted again: from zero. (LastSeq and
		// Newest only grow: the jobs published before may still be queued.)
		p.Next, p.Pages, p.Enqueued, p.Skipped, p.SkippedKeys = "", 0, 0, 0, nil
		err = b.list(ctx, job.Type, p.Since, page, opts[:1])
	}
	if err != nil {
		return err
	}
	return b.finish(ctx, job, p)
}

// finish moves the type's watermark after a delta: to the newest
// modification read, but no later than DeltaOverlap before the delta
// started (see DeltaOverlap).
func (b *Bulk) finish(ctx context.Context, job *messages.Job, p Progress) error {
	if job.Op != messages.OpDelta || p.Newest.IsZero() {
		return nil
	}
	w, overlap := p.Newest, DeltaOverlap
	if b.Overlap > 0 {
		overlap = b.Overlap
	}
	if limit := p.Started.Add(-overlap); !p.Started.IsZero() && limit.Before(w) {
		w = limit
	}
	return b.advance(ctx, job.Type, w)
}

// snapshot is one BC record as a job carries it.
type snapshot struct {
	key      string
	data     json.RawMessage
	modified time.Time
}

// list pages the BC records of t (modified after since, if not zero) and
// hands each page to fn as snapshots.
func (b *Bulk) list(ctx context.Context, t messages.Type, since time.Time, fn func([]snapshot) error, opts []bcclient.ListOption) error {
	switch t {
	case messages.TypeLocation:
		return pages(fn, func(f func([]bcclient.Location) error) error {
			return b.BC.DeltaLocations(ctx, since, f, opts...)
		}, func(r bcclient.Location) (string, time.Time) { return r.Code, r.LastModifiedDateTime })
	case messages.TypeShippingMethod:
		return pages(fn, func(f func([]bcclient.ShipmentMethod) error) error {
			return b.BC.DeltaShipmentMethods(ctx, since, f, opts...)
		}, func(r bcclient.ShipmentMethod) (string, time.Time) { return r.Code, r.LastModifiedDateTime })
	case messages.TypeCustomer:
		return pages(fn, func(f func([]bcclient.Customer) error) error {
			return b.BC.DeltaCustomers(ctx, since, f, opts...)
		}, func(r bcclient.Customer) (string, time.Time) { return r.Number, r.LastModifiedDateTime })
	case messages.TypeProduct:
		return pages(fn, func(f func([]bcclient.Item) error) error {
			return b.BC.DeltaItems(ctx, since, f, opts...)
		}, func(r bcclient.Item) (string, time.Time) { return r.Number, r.LastModifiedDateTime })
	case messages.TypeCustomerCategory:
		// No delta for price groups (no lastModifiedDateTime): a delta
		// lists them all, as the iPaaS.com BC connection does.
		return pages(fn, func(f func([]bcclient.CustomerPriceGroup) error) error {
			return b.BC.ListCustomerPriceGroups(ctx, f, opts...)
		}, func(r bcclient.CustomerPriceGroup) (string, time.Time) { return r.Code, time.Time{} })
	}
	return Permanent(fmt.Errorf("type %q cannot be initialized by this worker version", t))
}

// pages adapts a typed listing to snapshots.
func pages[T any](fn func([]snapshot) error, list func(func([]T) error) error, key func(T) (string, time.Time)) error {
	return list(func(rows []T) error {
		out := make([]snapshot, 0, len(rows))
		for _, r := range rows {
			data, err := json.Marshal(r)
			if err != nil {
				return Permanent(fmt.Errorf("encode a BC record: %w", err))
			}
			k, mod := key(r)
			out = append(out, snapshot{key: k, data: data, modified: mod})
		}
		return fn(out)
	})
}

// derivedID is the id of the job a bulk job publishes for one record.
func derivedID(parent, key string) string {
	sum := sha256.Sum256([]byte(parent + "\x00" + key))
	return "bulk-" + hex.EncodeToString(sum[:12])
}

// MaxSkippedKeys is how many of the records a bulk job skipped its
// progress names (Progress.SkippedKeys).
const MaxSkippedKeys = 20

// publish sends one upsert job per record and returns once JetStream stored
// them all, with the highest stream sequence among them, and why the
// records that cannot travel as a job were skipped. Their ids derive from
// the bulk job and the record, so that a page published again after a
// crash is deduplicated (its sequences are then the first copies').
func (b *Bulk) publish(ctx context.Context, job *messages.Job, recs []snapshot) (uint64, []error, error) {
	errs := make(chan error, len(recs))
	var last atomic.Uint64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, r := range recs {
		j := messages.Job{
			ID: derivedID(job.ID, r.key), Subscription: job.Subscription, Type: job.Type, Op: messages.OpUpsert,
			Key: r.key, Data: r.data, ChangedAt: r.modified, Source: string(job.Op) + ":" + job.ID,
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ack, _, err := messages.Publish(ctx, b.JS, j)
			if err != nil {
				errs <- fmt.Errorf("publish the job of %s %q: %w", j.Type, j.Key, err)
				return
			}
			for seq := last.Load(); ack.Sequence > seq && !last.CompareAndSwap(seq, ack.Sequence); seq = last.Load() {
			}
		})
	}
	wg.Wait()
	close(errs)
	var all, skipped []error
	for err := range errs {
		if errors.Is(err, messages.ErrBadKey) || errors.Is(err, messages.ErrDataTooLarge) {
			// A record that cannot travel as a job: BC's problem, not the
			// page's. It is logged and counted in the progress (bcsync init
			// reports it and fails); the others go on.
			zerolog.Ctx(ctx).Error().Err(err).Msg("a BC record cannot be enqueued")
			skipped = append(skipped, err)
			continue
		}
		all = append(all, err)
	}
	return last.Load(), skipped, errors.Join(all...)
}

func (b *Bulk) load(ctx context.Context, key string) (Progress, uint64, error) {
	var p Progress
	e, err := b.Progress.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return p, 0, nil
	case err != nil:
		return p, 0, fmt.Errorf("read the bulk job's checkpoint: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return Progress{}, e.Revision(), nil // unreadable: start afresh
	}
	return p, e.Revision(), nil
}

// save writes the checkpoint; a revision conflict means another worker
// runs the same job (it was redelivered while this one still ran): this one
// stops.
func (b *Bulk) save(ctx context.Context, key string, p Progress, rev uint64) (uint64, error) {
	v, err := json.Marshal(p)
	if err != nil {
		return rev, err
	}
	if rev == 0 {
		rev, err = b.Progress.Create(ctx, key, v)
	} else {
		rev, err = b.Progress.Update(ctx, key, v, rev)
	}
	if err != nil {
		return rev, fmt.Errorf("save the bulk job's checkpoint (another worker may run it): %w", err)
	}
	return rev, nil
}

func (b *Bulk) watermark(ctx context.Context, t messages.Type) (time.Time, error) {
	e, err := b.Progress.Get(ctx, WatermarkKey(b.Subscription, t))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("read the %s watermark: %w", t, err)
	}
	w, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, nil // unreadable: everything
	}
	return w, nil
}

// advance moves the watermark forward to w (never back).
func (b *Bulk) advance(ctx context.Context, t messages.Type, w time.Time) error {
	key := WatermarkKey(b.Subscription, t)
	for range 10 {
		e, err := b.Progress.Get(ctx, key)
		v := []byte(w.UTC().Format(time.RFC3339Nano))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = b.Progress.Create(ctx, key, v)
		case err != nil:
			return fmt.Errorf("read the %s watermark: %w", t, err)
		default:
			if cur, perr := time.Parse(time.RFC3339Nano, string(e.Value())); perr == nil && !w.After(cur) {
				return nil
			}
			_, err = b.Progress.Update(ctx, key, v, e.Revision())
		}
		if err == nil {
			return nil
		}
		if !broker.IsConflict(err) {
			return fmt.Errorf("move the %s watermark: %w", t, err)
		}
	}
	return fmt.Errorf("move the %s watermark: too many concurrent updates", t)
}
