package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Stream and subject names.
const (
	// StreamJobs is the work-queue stream that holds jobs.
	StreamJobs = "BCSYNC_JOBS"
	// StreamDLQ is the stream that keeps dead letters.
	StreamDLQ = "BCSYNC_DLQ"
	// JobsPrefix starts every job subject: bcsync.jobs.<subscription>.<type>.<key>.
	JobsPrefix = "bcsync.jobs"
	// DLQPrefix starts every dead-letter subject: bcsync.dlq.<subscription>.<type>.
	DLQPrefix = "bcsync.dlq"
	// InitKeyToken stands for the key of an initialize job in its subject.
	InitKeyToken = "_all"
	// encodedKeyMark starts a key token that is base64url-encoded. It is not
	// a character a plain key token may hold, so the two never collide.
	encodedKeyMark = "~"
)

// Header names bcsync sets on job messages.
const (
	HeaderMsgID = "Nats-Msg-Id"
	HeaderJobID = "Bcsync-Job-Id"
)

// KeyToken encodes a record key as one subject token. Keys made only of
// [A-Za-z0-9_-] (every GUID and most codes) stay readable; any other key
// becomes "~" followed by its unpadded base64url form, which is reversible
// and free of '.', '*', '>' and spaces.
func KeyToken(key string) string {
	if key == "" {
		return InitKeyToken
	}
	if plainToken(key) && key != InitKeyToken {
		return key
	}
	return encodedKeyMark + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// ParseKeyToken reverses KeyToken.
func ParseKeyToken(tok string) (string, error) {
	if tok == InitKeyToken {
		return "", nil
	}
	if rest, ok := strings.CutPrefix(tok, encodedKeyMark); ok {
		b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		if err != nil || len(b) == 0 {
			return "", fmt.Errorf("messages: %w: key token %q is not valid base64url", ErrBadSubject, tok)
		}
		return string(b), nil
	}
	if tok == "" || !plainToken(tok) {
		return "", fmt.Errorf("messages: %w: key token %q", ErrBadSubject, tok)
	}
	return tok, nil
}

func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return s != ""
}

// Subject returns the subject a job is published on.
func (j *Job) Subject() string {
	return JobSubject(j.Subscription, j.Type, j.Key)
}

// JobSubject builds bcsync.jobs.<subscription>.<type>.<key token>.
func JobSubject(subscription string, t Type, key string) string {
	return JobsPrefix + "." + subscription + "." + string(t) + "." + KeyToken(key)
}

// TypeFilter is the subject filter of one subscription's jobs of type t.
func TypeFilter(subscription string, t Type) string {
	return JobsPrefix + "." + subscription + "." + string(t) + ".*"
}

// SubscriptionFilter is the subject filter of one subscription's jobs.
func SubscriptionFilter(subscription string) string {
	return JobsPrefix + "." + subscription + ".>"
}

// DLQSubject builds bcsync.dlq.<subscription>.<type>. Unknown parts (a job too
// broken to name them) become "_unknown".
func DLQSubject(subscription string, t Type) string {
	if !ValidSubscription(subscription) {
		subscription = "_unknown"
	}
	return DLQPrefix + "." + subscription + "." + DLQTypeToken(t)
}

// DLQTypeToken is the type's token in DLQSubject: the type, or "_unknown"
// for a type this version does not know.
func DLQTypeToken(t Type) string {
	if !t.Valid() {
		return "_unknown"
	}
	return string(t)
}

// SubjectParts are the parts of a job subject.
type SubjectParts struct {
	Subscription string
	Type         Type
	Key          string
}

// ParseSubject splits a job subject into its parts. Errors match ErrBadSubject.
func ParseSubject(subject string) (SubjectParts, error) {
	rest, ok := strings.CutPrefix(subject, JobsPrefix+".")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 {
		return SubjectParts{}, fmt.Errorf("messages: %w: %q is not %s.<subscription>.<type>.<key>", ErrBadSubject, truncate(subject, 120), JobsPrefix)
	}
	if !ValidSubscription(parts[0]) {
		return SubjectParts{}, fmt.Errorf("messages: %w: subscription token %q", ErrBadSubject, truncate(parts[0], 40))
	}
	key, err := ParseKeyToken(parts[2])
	if err != nil {
		return SubjectParts{}, err
	}
	return SubjectParts{Subscription: parts[0], Type: Type(parts[1]), Key: key}, nil
}

// CheckSubject reports whether a job arrived on the subject it belongs to, so
// that a job published on another subscription's subject is not synced with
// the wrong credentials. Errors match ErrSubjectMismatch or ErrBadSubject.
func (j *Job) CheckSubject(subject string) error {
	p, err := ParseSubject(subject)
	if err != nil {
		return err
	}
	// The subject itself, not only its parts: a key has one token (a key
	// spelt another way, such as "EAST" base64-encoded, would put one
	// record's jobs on subjects that a filter on its subject misses).
	if p.Subscription != j.Subscription || p.Type != j.Type || p.Key != j.Key || subject != j.Subject() {
		return fmt.Errorf("messages: %w: subject %q, job wants %q", ErrSubjectMismatch, truncate(subject, 120), truncate(j.Subject(), 120))
	}
	return nil
}

// MsgID is the job's Nats-Msg-Id: a hash of everything that makes the job
// what it is (every field but EnqueuedAt, with Data compacted and ChangedAt in
// UTC), so a publish retried with the same job is deduplicated by JetStream
// within the stream's duplicate window, while two distinct jobs never collide.
func (j *Job) MsgID() string {
	c := *j
	c.EnqueuedAt = time.Time{}
	c.ChangedAt = c.ChangedAt.UTC()
	if len(c.Data) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, c.Data) == nil {
			c.Data = buf.Bytes()
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		// Invalid Data, or a time out of JSON's range (which Validate
		// refuses): hash every field spelt out instead, never a part.
		b = fmt.Appendf(nil, "%d\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00",
			c.V, c.ID, c.Subscription, c.Type, c.Op, c.Key, c.ChangedAt.Format(time.RFC3339Nano), c.Source)
		b = append(b, j.Data...)
	}
	sum := sha256.Sum256(b)
	return "bcsync-" + hex.EncodeToString(sum[:16])
}
