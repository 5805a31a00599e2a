package messages

import (
	"encoding/json"
	"fmt"
	"time"
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
	// Subject, Headers and Body are the original message.
	Subject string              `json:"subject"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    []byte              `json:"body"`
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

// DLQMsgID is the Nats-Msg-Id of the dead letter of the job at StreamSeq in
// StreamJobs, so that a dead letter copied twice (a worker died between the
// copy and the Term) is stored once.
func DLQMsgID(streamSeq uint64) string {
	return fmt.Sprintf("bcsync-dlq-%d", streamSeq)
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
