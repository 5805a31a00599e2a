package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Version is the envelope version this package writes and accepts.
const Version = 1

// Size limits of a job.
const (
	// MaxDataBytes caps the BC record snapshot carried in Job.Data.
	MaxDataBytes = 256 << 10
	// MaxJobBytes caps a whole encoded job; it stays under NATS's default
	// 1 MiB max payload.
	MaxJobBytes = 512 << 10
	// MaxKeyLen is the longest BC code or number accepted as a key (BC's
	// Code[20]); a GUID is 36 characters.
	MaxKeyLen = 20
	// MaxIDLen caps Job.ID.
	MaxIDLen = 128
)

// Type is the kind of record a job syncs.
type Type string

// The data types a job can carry.
const (
	TypeCustomerCategory Type = "customer_category"
	TypeLocation         Type = "location"
	TypeShippingMethod   Type = "shipping_method"
	TypeCustomer         Type = "customer"
	TypeProduct          Type = "product"
)

// Types lists every known Type, parents before children.
var Types = []Type{TypeCustomerCategory, TypeLocation, TypeShippingMethod, TypeCustomer, TypeProduct}

// Valid reports whether t is a known type.
func (t Type) Valid() bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// Op is what a job asks for.
type Op string

// The operations of a job.
const (
	// OpUpsert creates or updates the record at iPaaS.com.
	OpUpsert Op = "upsert"
	// OpDelete deactivates the linked record at iPaaS.com.
	OpDelete Op = "delete"
	// OpInitialize copies every record of the type; it carries no key.
	OpInitialize Op = "initialize"
	// OpDelta copies the records of the type changed since the
	// subscription's watermark (a BC "collection" notification, or the
	// poller); it carries no key.
	OpDelta Op = "delta"
)

// Valid reports whether o is a known operation.
func (o Op) Valid() bool { return o == OpUpsert || o == OpDelete || o == OpInitialize || o == OpDelta }

// Bulk reports whether o works on every record of its type (no key).
func (o Op) Bulk() bool { return o == OpInitialize || o == OpDelta }

// Job is the v1 sync job envelope.
type Job struct {
	// V is the envelope version; only Version is accepted.
	V int `json:"v"`
	// ID identifies the job; publishing the same ID and content twice is
	// deduplicated by JetStream. Publish fills a random one when empty.
	ID string `json:"id"`
	// Subscription is the bcsync subscription name ([a-z0-9_-]).
	Subscription string `json:"subscription"`
	// Type is the data type of the record.
	Type Type `json:"type"`
	// Op is the operation.
	Op Op `json:"op"`
	// Key is the BC record key: a GUID (SystemId) or a BC code or number.
	// Customer categories are keyed by price group code. Empty for
	// OpInitialize.
	Key string `json:"key,omitempty"`
	// Data is an optional snapshot of the BC record (API v2.0 JSON); when
	// present the worker does not read BC again.
	Data json.RawMessage `json:"data,omitempty"`
	// ChangedAt is when the record changed in BC, if known.
	ChangedAt time.Time `json:"changed_at,omitzero"`
	// Source names the publisher (e.g. "webhook", "poller", "cli").
	Source string `json:"source,omitempty"`
	// EnqueuedAt is when the job was published; Publish sets it when zero.
	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
}

// Sentinel errors, each matched with errors.Is on what Decode and Validate return.
var (
	ErrMalformed           = errors.New("job is not a valid JSON envelope")
	ErrTooLarge            = errors.New("job is too large")
	ErrUnknownVersion      = errors.New("unknown envelope version")
	ErrUnknownType         = errors.New("unknown type")
	ErrUnknownOp           = errors.New("unknown op")
	ErrMissingField        = errors.New("required field missing")
	ErrBadKey              = errors.New("key is neither a BC GUID nor a BC code")
	ErrBadSubscription     = errors.New("bad subscription name")
	ErrBadID               = errors.New("bad job id")
	ErrDataTooLarge        = errors.New("data snapshot too large")
	ErrBadData             = errors.New("data snapshot is not a JSON object")
	ErrBadTime             = errors.New("time out of range")
	ErrSubjectMismatch     = errors.New("subject does not match the job")
	ErrBadSubject          = errors.New("not a bcsync job subject")
	errKeyNotAllowedForOp  = errors.New("key not allowed for op")
	errDataNotAllowedForOp = errors.New("data not allowed for op")
)

// FieldError is one problem with one field of a job. Err is one of the
// package's sentinel errors.
type FieldError struct {
	Field  string
	Err    error
	Detail string
}

func (e *FieldError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("job field %q: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("job field %q: %v: %s", e.Field, e.Err, e.Detail)
}

func (e *FieldError) Unwrap() error { return e.Err }

var (
	subscriptionRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	guidRE         = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// ValidSubscription reports whether name can be a subscription name.
func ValidSubscription(name string) bool { return subscriptionRE.MatchString(name) }

// IsGUID reports whether s is a GUID in BC's form (8-4-4-4-12 hex digits).
func IsGUID(s string) bool { return guidRE.MatchString(s) }

// checkKey reports why key is neither a GUID nor a BC code, or "" when it is one.
// A BC code is 1 to 20 printable characters, without lower-case letters (BC
// upper-cases codes), control characters or surrounding spaces.
func checkKey(key string, t Type) string {
	if IsGUID(key) {
		if t == TypeCustomerCategory {
			return "customer categories are keyed by price group code, not by GUID"
		}
		return ""
	}
	if !utf8.ValidString(key) {
		return "not valid UTF-8"
	}
	if n := utf8.RuneCountInString(key); n > MaxKeyLen {
		return fmt.Sprintf("%d characters; a BC code has at most %d and a GUID is 8-4-4-4-12 hex digits", n, MaxKeyLen)
	}
	if strings.TrimSpace(key) != key {
		return "leading or trailing spaces"
	}
	for _, r := range key {
		switch {
		case !unicode.IsPrint(r):
			return fmt.Sprintf("contains the non-printable character %U", r)
		case unicode.IsLower(r) && unicode.ToUpper(r) != r:
			// BC upper-cases codes, so a letter that has an upper-case
			// form is a typo; one without ('ß' in "GROßHANDEL") is BC's.
			return fmt.Sprintf("contains the lower-case letter %q; BC codes are upper-case", r)
		}
	}
	return ""
}

// Validate reports every problem with the job at once, joined; each is a
// *FieldError wrapping one of the sentinel errors. It returns nil for a
// valid job.
func (j *Job) Validate() error {
	var errs []error
	add := func(field string, err error, detail string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: err, Detail: fmt.Sprintf(detail, args...)})
	}
	if j.V != Version {
		add("v", ErrUnknownVersion, "got %d, this worker understands %d", j.V, Version)
		// Nothing else can be trusted in an envelope of another version.
		return errors.Join(errs...)
	}
	switch {
	case j.ID == "":
		add("id", ErrMissingField, "set a unique job id")
	case len(j.ID) > MaxIDLen || strings.ContainsFunc(j.ID, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }):
		add("id", ErrBadID, "at most %d printable characters without spaces", MaxIDLen)
	}
	switch {
	case j.Subscription == "":
		add("subscription", ErrMissingField, "name the bcsync subscription")
	case !ValidSubscription(j.Subscription):
		add("subscription", ErrBadSubscription, "%q must match [a-z0-9_-]{1,32}", j.Subscription)
	}
	switch {
	case j.Type == "":
		add("type", ErrMissingField, "one of %s", typeList())
	case !j.Type.Valid():
		add("type", ErrUnknownType, "%q is not one of %s", j.Type, typeList())
	}
	switch {
	case j.Op == "":
		add("op", ErrMissingField, "one of upsert, delete, initialize, delta")
	case !j.Op.Valid():
		add("op", ErrUnknownOp, "%q is not one of upsert, delete, initialize, delta", j.Op)
	case j.Op.Bulk():
		if j.Key != "" {
			add("key", errKeyNotAllowedForOp, "%s jobs work on every record of their type; leave key empty", j.Op)
		}
		if len(j.Data) > 0 {
			add("data", errDataNotAllowedForOp, "%s jobs carry no snapshot", j.Op)
		}
	default:
		if j.Key == "" {
			add("key", ErrMissingField, "set the BC id (GUID) or code of the record")
		} else if why := checkKey(j.Key, j.Type); why != "" {
			add("key", ErrBadKey, "%q: %s", truncate(j.Key, 40), why)
		}
	}
	// A time whose UTC form leaves years 0001-9999 cannot be encoded once
	// in UTC (MsgID's form), nor read back by every publisher.
	for _, t := range []struct {
		field string
		at    time.Time
	}{{"changed_at", j.ChangedAt}, {"enqueued_at", j.EnqueuedAt}} {
		if !t.at.IsZero() && !InTimeRange(t.at) {
			add(t.field, ErrBadTime, "%s is outside the years 0001-9999 in UTC", t.at.Format(time.RFC3339))
		}
	}
	if len(j.Data) > MaxDataBytes {
		add("data", ErrDataTooLarge, "%d bytes, at most %d", len(j.Data), MaxDataBytes)
	} else if len(j.Data) > 0 && !isJSONObject(j.Data) {
		add("data", ErrBadData, "expected the BC record as a JSON object")
	}
	return errors.Join(errs...)
}

// InTimeRange reports whether t, in UTC, lies within the years 0001-9999,
// the range RFC 3339 and JSON encoding can write.
func InTimeRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Decode parses and validates an encoded job. Unknown fields are rejected, so
// that a misspelt field is not silently ignored. Errors match ErrMalformed,
// ErrTooLarge or the sentinels of Validate.
func Decode(b []byte) (*Job, error) {
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("messages: %w: %d bytes, at most %d", ErrTooLarge, len(b), MaxJobBytes)
	}
	// One strict pass for a well-formed job; anything else takes the
	// careful path, which says what is wrong.
	var j Job
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil || j.V != Version || trailing(b, dec) {
		return decodeCarefully(b)
	}
	j.Data = noNull(j.Data)
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("messages: invalid job: %w", err)
	}
	return &j, nil
}

// decodeCarefully is Decode's path for a job that is not a well-formed
// envelope of this version: it names the version before any field.
func decodeCarefully(b []byte) (*Job, error) {
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("messages: %w: %d bytes, at most %d", ErrTooLarge, len(b), MaxJobBytes)
	}
	// Read the version first: an envelope of another version may have
	// other fields, and deserves "unknown version", not "unknown field".
	var probe struct {
		V json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("messages: %w: %v", ErrMalformed, err)
	}
	if v := string(bytes.TrimSpace(probe.V)); v != "1" {
		if v == "" {
			v = "none"
		}
		return nil, fmt.Errorf("messages: %w", &FieldError{Field: "v", Err: ErrUnknownVersion, Detail: fmt.Sprintf("got %s, this worker understands %d", truncate(v, 20), Version)})
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j Job
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("messages: %w: %v", ErrMalformed, err)
	}
	if trailing(b, dec) {
		return nil, fmt.Errorf("messages: %w: trailing data after the JSON object", ErrMalformed)
	}
	j.Data = noNull(j.Data)
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("messages: invalid job: %w", err)
	}
	return &j, nil
}

// noNull reads "data": null, as many serializers write a field they have no
// value for, as no snapshot.
func noNull(data json.RawMessage) json.RawMessage {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	return data
}

// trailing reports whether b holds more than white space after the value
// dec decoded from it (dec.More misses a stray "}" or "]").
func trailing(b []byte, dec *json.Decoder) bool {
	return len(bytes.Trim(b[dec.InputOffset():], " \t\r\n")) > 0 // JSON's white space only
}

// Encode validates and encodes a job.
func (j *Job) Encode() ([]byte, error) {
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("messages: invalid job: %w", err)
	}
	// Not HTML-escaped: json.Marshal would write each <, > and & of a
	// snapshot as six bytes, and refuse as too large a job Decode takes.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, fmt.Errorf("messages: encode job: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("messages: %w: %d bytes, at most %d", ErrTooLarge, len(b), MaxJobBytes)
	}
	return b, nil
}
