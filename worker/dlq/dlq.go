// Package dlq reads and acts on the dead-letter stream (messages.StreamDLQ):
// it lists and fetches dead letters without consuming them, replays a letter's
// original job to messages.StreamJobs, and purges letters. It prints nothing.
//
// A letter is removed from the stream only after what replaces it (the
// replayed job) is stored: a failed replay leaves the letter in place.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// HeaderReplayOf names, on a replayed job, the dead-letter sequence it came from.
const HeaderReplayOf = "Bcsync-Replay-Of"

// ReplayMsgID is the Nats-Msg-Id of the replay of the dead letter l, so
// that a replay retried within the duplicate window is stored once: its
// sequence in the DLQ and a digest of the job it holds. The digest keeps
// apart the replays of two letters that share a sequence because the DLQ
// stream was made anew; the second would otherwise be dropped as a
// duplicate of the first, and its letter deleted.
func ReplayMsgID(l Letter) string {
	var subject string
	var body []byte
	if l.DL != nil {
		subject, body = l.DL.Subject, l.DL.Body
	}
	return "bcsync-replay-" + strconv.FormatUint(l.Seq, 10) + "-" + messages.ContentDigest(subject, body)
}

// Filter selects dead letters. Zero fields match everything.
type Filter struct {
	Subscription string
	Type         messages.Type
	// Class is the error class (e.g. "permanent"), compared exactly.
	Class string
	// Since and Until bound the time the letter was stored (inclusive).
	Since, Until time.Time
	// Text is a case-insensitive substring of the reason, key, job id or
	// original subject.
	Text string
}

// Match reports whether the letter d, stored at storedAt, passes the filter.
func (f Filter) Match(d *messages.DeadLetter, storedAt time.Time) bool {
	if d == nil {
		return false
	}
	if f.Subscription != "" && d.Subscription != f.Subscription {
		return false
	}
	if f.Type != "" && d.Type != f.Type && string(f.Type) != messages.DLQTypeToken(d.Type) {
		// Neither the type the letter names nor, for a type this version
		// does not know, the "_unknown" it is filed under.
		return false
	}
	if f.Class != "" && d.ErrorClass != f.Class {
		return false
	}
	if !f.Since.IsZero() && storedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && storedAt.After(f.Until) {
		return false
	}
	if f.Text != "" {
		t := strings.ToLower(f.Text)
		found := false
		for _, s := range []string{d.Reason, d.Key, d.JobID, d.Subject} {
			if strings.Contains(strings.ToLower(s), t) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// subject is the narrowest DLQ subject filter for f.
func (f Filter) subject() string {
	sub, typ := "*", "*"
	if f.Subscription != "" {
		sub = f.Subscription
	}
	if f.Type != "" {
		// A type this version does not know is filed under "_unknown".
		typ = messages.DLQTypeToken(f.Type)
	}
	if sub == "*" && typ == "*" {
		return messages.DLQPrefix + ".>"
	}
	return messages.DLQPrefix + "." + sub + "." + typ
}

// Letter is one dead letter as stored in the stream.
type Letter struct {
	// Seq is its sequence in messages.StreamDLQ.
	Seq uint64
	// Stored is when JetStream stored it.
	Stored time.Time
	DL     *messages.DeadLetter
}

// UndecodableError reports records of the DLQ stream that List skipped
// because they are not dead-letter records. List returns it (after visiting
// every other letter) when it skipped any; callers may treat it as a warning.
type UndecodableError struct {
	Seqs []uint64
}

func (e *UndecodableError) Error() string {
	return fmt.Sprintf("dlq: %d record(s) are not dead letters and were skipped (seq %v); `bcsync dlq purge <seq>` removes one", len(e.Seqs), e.Seqs)
}

// List calls fn, in stream order, for every letter of messages.StreamDLQ that
// matches f. It reads the stream by sequence (deleted sequences are skipped)
// and consumes nothing. Records that do not decode are skipped and reported
// at the end as an *UndecodableError. An error from fn stops List and is
// returned.
func List(ctx context.Context, js jetstream.JetStream, f Filter, fn func(Letter) error) error {
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", messages.StreamDLQ, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", messages.StreamDLQ, err)
	}
	last := info.State.LastSeq
	subj := f.subject()
	var bad []uint64
	for seq := info.State.FirstSeq; seq != 0 && seq <= last; {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("dlq: read seq %d: %w", seq, err)
		}
		if raw.Sequence > last {
			break // stored after List started
		}
		seq = raw.Sequence + 1
		d, err := messages.DecodeDeadLetter(raw.Data)
		if err != nil {
			bad = append(bad, raw.Sequence)
			continue
		}
		if !f.Match(d, raw.Time) {
			continue
		}
		if err := fn(Letter{Seq: raw.Sequence, Stored: raw.Time, DL: d}); err != nil {
			return err
		}
	}
	if len(bad) > 0 {
		return &UndecodableError{Seqs: bad}
	}
	return nil
}

// ErrNotFound is returned by Get for a sequence the stream does not hold.
var ErrNotFound = errors.New("dlq: no dead letter at that sequence")

// Get returns the letter at seq.
func Get(ctx context.Context, js jetstream.JetStream, seq uint64) (Letter, error) {
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return Letter{}, fmt.Errorf("dlq: stream %s: %w", messages.StreamDLQ, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Letter{}, fmt.Errorf("%w: %d", ErrNotFound, seq)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("dlq: read seq %d: %w", seq, err)
	}
	d, err := messages.DecodeDeadLetter(raw.Data)
	if err != nil {
		return Letter{}, fmt.Errorf("dlq: seq %d: %w (%w)", seq, err, &UndecodableError{Seqs: []uint64{seq}})
	}
	return Letter{Seq: raw.Sequence, Stored: raw.Time, DL: d}, nil
}

// ReplayMsg builds the message Replay publishes: the original subject, body
// and headers, without Nats-Msg-Id and Nats-Expected-* headers, and without
// the failures a requeued copy carried (a replay starts afresh: its own
// failures, deliveries and first failure), with a new Nats-Msg-Id
// (ReplayMsgID) and HeaderReplayOf.
func ReplayMsg(l Letter) (*nats.Msg, error) {
	if l.DL == nil || l.DL.Subject == "" {
		return nil, fmt.Errorf("dlq: seq %d: no original message to replay", l.Seq)
	}
	msg := nats.NewMsg(l.DL.Subject)
	msg.Data = l.DL.Body
	for k, vs := range l.DL.OriginalHeaders() {
		name := k
		if strings.EqualFold(name, messages.HeaderMsgID) || strings.HasPrefix(strings.ToLower(name), "nats-expected-") || strings.EqualFold(name, HeaderReplayOf) ||
			strings.EqualFold(name, messages.HeaderFailures) || strings.EqualFold(name, messages.HeaderDeliveries) || strings.EqualFold(name, messages.HeaderFirstFailure) {
			continue
		}
		for _, v := range vs {
			msg.Header.Add(k, v)
		}
	}
	msg.Header.Set(messages.HeaderMsgID, ReplayMsgID(l))
	msg.Header.Set(HeaderReplayOf, strconv.FormatUint(l.Seq, 10))
	return msg, nil
}

// Replay republishes the letter's original job to messages.StreamJobs, waits
// for JetStream to store it, and only then deletes the letter. If the publish
// fails, the letter stays. A replay repeated within the jobs stream's
// duplicate window (e.g. after a crash between the publish and the delete)
// is deduplicated.
func Replay(ctx context.Context, js jetstream.JetStream, l Letter) error {
	msg, err := ReplayMsg(l)
	if err != nil {
		return err
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream(messages.StreamJobs)); err != nil {
		return fmt.Errorf("dlq: replay seq %d: publish to %s: %w (the dead letter is kept)", l.Seq, messages.StreamJobs, err)
	}
	if err := Purge(ctx, js, l); err != nil {
		return fmt.Errorf("dlq: replay seq %d: job republished, but the dead letter could not be deleted (a new replay is deduplicated): %w", l.Seq, err)
	}
	return nil
}

// Purge deletes the letter from messages.StreamDLQ. A letter already gone is
// not an error.
func Purge(ctx context.Context, js jetstream.JetStream, l Letter) error {
	s, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", messages.StreamDLQ, err)
	}
	if err := s.DeleteMsg(ctx, l.Seq); err != nil && !gone(err) {
		return fmt.Errorf("dlq: delete seq %d: %w", l.Seq, err)
	}
	return nil
}

// gone reports whether err says the message does not exist (any more).
func gone(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode {
		case jetstream.JSErrCodeMessageNotFound, 10043 /* sequence not found */, 10057 /* no message found */ :
			return true
		}
	}
	// DeleteMsg does not wrap the API error: match its text.
	msg := err.Error()
	return strings.Contains(msg, "err_code=10043") || strings.Contains(msg, "err_code=10057")
}
