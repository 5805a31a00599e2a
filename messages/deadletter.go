package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Header names bcsync sets on a copy of a job it requeues (a job held on
// its last delivery): the story of the jobs it replaces, which its dead
// letter tells, if it comes to one. A replay from the DLQ starts afresh
// without them.
const (
	// HeaderFirstFailure: when the job first failed (RFC 3339).
	HeaderFirstFailure = "Bcsync-First-Failure"
	// HeaderDeliveries: the deliveries of the copies it replaces.
	HeaderDeliveries = "Bcsync-Deliveries"
	// HeaderFailures: how many of those failed by the job's own fault (not
	// held): they count toward dead-lettering the copy too.
	HeaderFailures = "Bcsync-Failures"
)

// Header names bcsync sets on dead-letter messages, so that they can be
// filtered without decoding the body.
const (
	HeaderDLQClass   = "Bcsync-Error-Class"
	HeaderDLQSubject = "Bcsync-Original-Subject"
)

// DeadLetter is the record kept in StreamDLQ for a job that could not be
// synced. It holds everything needed to inspect and replay the job: the
// original subject, headers and body, byte for byte.
type DeadLetter struct {
	// Subject, Headers and Body are the original message. Set the headers
	// with SetHeaders and read them with OriginalHeaders.
	Subject string              `json:"subject"`
	Headers map[string][]string `json:"headers,omitempty"`
	// RawHeaders repeats the headers as bytes (base64 in JSON) when one of
	// them is not valid UTF-8, which a JSON string would change.
	RawHeaders []RawHeader `json:"raw_headers,omitempty"`
	Body       []byte      `json:"body"`
	// Stream and StreamSeq locate the original message in StreamJobs.
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"stream_seq"`
	// Subscription, Type, Key and JobID are copied from the job when it
	// could be decoded, else from its subject where possible.
	Subscription string `json:"subscription,omitempty"`
	Type         Type   `json:"type,omitempty"`
	Key          string `json:"key,omitempty"`
	JobID        string `json:"job_id,omitempty"`
	// ErrorClass is the failure class (e.g. "permanent", "transient").
	ErrorClass string `json:"error_class"`
	// Reason is the failure, with secrets redacted.
	Reason string `json:"reason"`
	// Attempts is the number of deliveries the job had.
	Attempts int `json:"attempts"`
	// FirstFailure and LastFailure bracket the failures seen. The workers
	// keep a failing job's first failure time across its deliveries (and
	// requeued copies); when that record was lost, FirstFailure is the
	// job's stored time.
	FirstFailure time.Time `json:"first_failure"`
	LastFailure  time.Time `json:"last_failure"`
	// WorkerID names the worker that dead-lettered the job.
	WorkerID string `json:"worker_id"`
}

// RawHeader is one header line of the original message, byte for byte.
type RawHeader struct {
	Name  []byte `json:"name"`
	Value []byte `json:"value"`
}

// SetHeaders records the original message's headers: in Headers, and in
// RawHeaders as well when a name or value is not valid UTF-8.
func (d *DeadLetter) SetHeaders(h map[string][]string) {
	d.Headers, d.RawHeaders = h, nil
	valid := true
	for k, vs := range h {
		valid = valid && utf8.ValidString(k)
		for _, v := range vs {
			valid = valid && utf8.ValidString(v)
		}
	}
	if valid {
		return
	}
	for k, vs := range h {
		for _, v := range vs {
			d.RawHeaders = append(d.RawHeaders, RawHeader{Name: []byte(k), Value: []byte(v)})
		}
	}
}

// OriginalHeaders returns the original message's headers byte for byte:
// from RawHeaders when set, else Headers.
func (d *DeadLetter) OriginalHeaders() map[string][]string {
	if len(d.RawHeaders) == 0 {
		return d.Headers
	}
	h := make(map[string][]string, len(d.RawHeaders))
	for _, r := range d.RawHeaders {
		h[string(r.Name)] = append(h[string(r.Name)], string(r.Value))
	}
	return h
}

// MsgID is the Nats-Msg-Id of the dead letter, so that a letter copied
// twice (a worker died between the copy and the Term; the loop and the
// safety net both at work) is stored once: the job's sequence in StreamJobs
// and a digest of its subject and body. The digest keeps apart two jobs
// that share a sequence because StreamJobs was made anew, whose letters
// would otherwise be taken for one.
func (d *DeadLetter) MsgID() string {
	return fmt.Sprintf("bcsync-dlq-%d-%s", d.StreamSeq, ContentDigest(d.Subject, d.Body))
}

// ContentDigest is a short digest of a message's subject and body, for
// message ids that must differ between different messages given the same
// sequence number.
func ContentDigest(subject string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(subject))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// DecodeDeadLetter parses a dead-letter record.
func DecodeDeadLetter(b []byte) (*DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("messages: decode dead letter: %w", err)
	}
	if d.Subject == "" {
		return nil, fmt.Errorf("messages: decode dead letter: %w: subject", ErrMissingField)
	}
	return &d, nil
}
