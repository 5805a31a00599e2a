package messages_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/messages"
)

func validJob() messages.Job {
	return messages.Job{
		V: 1, ID: "job-1", Subscription: "contoso", Type: messages.TypeLocation,
		Op: messages.OpUpsert, Key: "EAST",
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	big := json.RawMessage(`{"x":"` + strings.Repeat("a", messages.MaxDataBytes) + `"}`)
	tests := []struct {
		name  string
		edit  func(*messages.Job)
		want  error
		field string
	}{
		{"valid code", func(j *messages.Job) {}, nil, ""},
		{"valid guid", func(j *messages.Job) { j.Key = "5d115c9c-44e3-ea11-bb43-000d3a2feca1" }, nil, ""},
		{"valid code with space and dot", func(j *messages.Job) { j.Key = "MAIN ST.1" }, nil, ""},
		// BC upper-cases codes, which leaves a letter with no upper-case
		// form as it is.
		{"valid code with sharp s", func(j *messages.Job) { j.Key = "GROßHANDEL" }, nil, ""},
		{"valid initialize", func(j *messages.Job) { j.Op = messages.OpInitialize; j.Key = "" }, nil, ""},
		{"valid delta", func(j *messages.Job) { j.Op = messages.OpDelta; j.Key = "" }, nil, ""},
		{"valid snapshot", func(j *messages.Job) { j.Data = json.RawMessage(`{"code":"EAST"}`) }, nil, ""},
		{"unknown version", func(j *messages.Job) { j.V = 2 }, messages.ErrUnknownVersion, "v"},
		{"missing version", func(j *messages.Job) { j.V = 0 }, messages.ErrUnknownVersion, "v"},
		{"missing id", func(j *messages.Job) { j.ID = "" }, messages.ErrMissingField, "id"},
		{"id with space", func(j *messages.Job) { j.ID = "a b" }, messages.ErrBadID, "id"},
		{"missing subscription", func(j *messages.Job) { j.Subscription = "" }, messages.ErrMissingField, "subscription"},
		{"bad subscription", func(j *messages.Job) { j.Subscription = "Con.toso" }, messages.ErrBadSubscription, "subscription"},
		{"missing type", func(j *messages.Job) { j.Type = "" }, messages.ErrMissingField, "type"},
		{"unknown type", func(j *messages.Job) { j.Type = "vendor" }, messages.ErrUnknownType, "type"},
		{"missing op", func(j *messages.Job) { j.Op = "" }, messages.ErrMissingField, "op"},
		{"unknown op", func(j *messages.Job) { j.Op = "merge" }, messages.ErrUnknownOp, "op"},
		{"missing key", func(j *messages.Job) { j.Key = "" }, messages.ErrMissingField, "key"},
		{"key too long", func(j *messages.Job) { j.Key = strings.Repeat("A", 21) }, messages.ErrBadKey, "key"},
		{"key lower case", func(j *messages.Job) { j.Key = "east" }, messages.ErrBadKey, "key"},
		{"key lower case umlaut", func(j *messages.Job) { j.Key = "MüLLER" }, messages.ErrBadKey, "key"},
		{"key control char", func(j *messages.Job) { j.Key = "EA\nST" }, messages.ErrBadKey, "key"},
		{"key padded", func(j *messages.Job) { j.Key = " EAST" }, messages.ErrBadKey, "key"},
		{"key bad utf8", func(j *messages.Job) { j.Key = "E\xffST" }, messages.ErrBadKey, "key"},
		{"category keyed by guid", func(j *messages.Job) {
			j.Type = messages.TypeCustomerCategory
			j.Key = "5d115c9c-44e3-ea11-bb43-000d3a2feca1"
		}, messages.ErrBadKey, "key"},
		{"data too large", func(j *messages.Job) { j.Data = big }, messages.ErrDataTooLarge, "data"},
		{"data not object", func(j *messages.Job) { j.Data = json.RawMessage(`[1,2]`) }, messages.ErrBadData, "data"},
		{"initialize with key", func(j *messages.Job) { j.Op = messages.OpInitialize }, nil, "key"},
		{"delta with key", func(j *messages.Job) { j.Op = messages.OpDelta }, nil, "key"},
		{"delta with data", func(j *messages.Job) { j.Op = messages.OpDelta; j.Key = ""; j.Data = json.RawMessage(`{}`) }, nil, "data"},
		// Valid RFC 3339, but year 10000 in UTC: json.Marshal refuses it, so
		// the job's MsgID could not be computed from it.
		{"changed_at past 9999 in UTC", func(j *messages.Job) {
			j.ChangedAt = time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -23*3600))
		}, messages.ErrBadTime, "changed_at"},
		{"changed_at before year 1 in UTC", func(j *messages.Job) {
			j.ChangedAt = time.Date(1, 1, 1, 0, 0, 0, 0, time.FixedZone("", 2*3600))
		}, messages.ErrBadTime, "changed_at"},
		{"enqueued_at past 9999 in UTC", func(j *messages.Job) {
			j.EnqueuedAt = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -3*3600))
		}, messages.ErrBadTime, "enqueued_at"},
		{"BC's blank date", func(j *messages.Job) { j.ChangedAt = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) }, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := validJob()
			tt.edit(&j)
			err := j.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error on %s", tt.field)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Validate() = %v, want errors.Is %v", err, tt.want)
			}
			var fe *messages.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("Validate() = %v, want a FieldError on %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name the field %q", err, tt.field)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	j := messages.Job{V: 1, Type: "vendor", Op: "merge"}
	err := j.Validate()
	for _, want := range []error{messages.ErrMissingField, messages.ErrUnknownType, messages.ErrUnknownOp} {
		if !errors.Is(err, want) {
			t.Errorf("Validate() = %v, want it to include %v", err, want)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 { // id, subscription, type, op
		t.Errorf("got %d problems, want 4:\n%v", n, err)
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"valid", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"}`, nil},
		{"not json", `hello`, messages.ErrMalformed},
		{"empty", ``, messages.ErrMalformed},
		{"array", `[1]`, messages.ErrMalformed},
		{"no version", `{"id":"j1"}`, messages.ErrUnknownVersion},
		{"version 2 with other fields", `{"v":2,"whatever":true}`, messages.ErrUnknownVersion},
		{"version as string", `{"v":"1","id":"j1"}`, messages.ErrUnknownVersion},
		{"unknown field", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST","subcription":"x"}`, messages.ErrMalformed},
		{"wrong field type", `{"v":1,"id":7}`, messages.ErrMalformed},
		{"trailing data", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"} {}`, messages.ErrMalformed},
		// json.Decoder.More reports no more values before a "}" or "]".
		{"trailing brace", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"}}`, messages.ErrMalformed},
		{"trailing brackets", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"} ]]]garbage`, messages.ErrMalformed},
		{"trailing brace and object", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"}}{"v":2}`, messages.ErrMalformed},
		{"trailing white space", "{\"v\":1,\"id\":\"j1\",\"subscription\":\"contoso\",\"type\":\"location\",\"op\":\"upsert\",\"key\":\"EAST\"}\n\t ", nil},
		{"invalid", `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert"}`, messages.ErrMissingField},
		{"too large", `{"v":1,"pad":"` + strings.Repeat("x", messages.MaxJobBytes) + `"}`, messages.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := messages.Decode([]byte(tt.in))
			if tt.want == nil {
				if err != nil || j == nil {
					t.Fatalf("Decode() = %v, %v", j, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode() error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	j := validJob()
	j.Data = json.RawMessage(`{"code":"EAST","displayName":"East"}`)
	j.ChangedAt = time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	j.Source = "test"
	b, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := messages.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.MsgID() != j.MsgID() || got.Key != j.Key || !got.ChangedAt.Equal(j.ChangedAt) {
		t.Errorf("round trip changed the job: %+v -> %+v", j, got)
	}
}

func TestMsgID(t *testing.T) {
	t.Parallel()
	a := validJob()
	b := validJob()
	b.EnqueuedAt = time.Now()
	if a.MsgID() != b.MsgID() {
		t.Error("MsgID depends on EnqueuedAt; a retried publish would not be deduplicated")
	}
	a.Data = json.RawMessage(`{"a": 1}`)
	b.Data = json.RawMessage(`{"a":1}`)
	if a.MsgID() != b.MsgID() {
		t.Error("MsgID depends on JSON whitespace in data")
	}
	for name, edit := range map[string]func(*messages.Job){
		"id":   func(j *messages.Job) { j.ID = "job-2" },
		"key":  func(j *messages.Job) { j.Key = "WEST" },
		"op":   func(j *messages.Job) { j.Op = messages.OpDelete },
		"data": func(j *messages.Job) { j.Data = json.RawMessage(`{"a":2}`) },
		"changed_at": func(j *messages.Job) {
			j.ChangedAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		},
	} {
		c := a
		edit(&c)
		if c.MsgID() == a.MsgID() {
			t.Errorf("changing %s does not change MsgID", name)
		}
	}
}

// A job MsgID cannot marshal (a time out of JSON's range, which Validate
// refuses, or invalid data) still gets an id from all its fields: two such
// jobs were once both given the hash of their data alone, and JetStream
// dropped the second as a duplicate.
func TestMsgIDOfAJobJSONCannotEncode(t *testing.T) {
	t.Parallel()
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -23*3600))
	a := validJob()
	a.ChangedAt = far
	b := a
	b.Key = "WEST"
	c := a
	c.Data = json.RawMessage(`{not json`)
	ids := map[string]string{}
	for name, j := range map[string]messages.Job{"a": a, "b": b, "c": c} {
		id := j.MsgID()
		if other, dup := ids[id]; dup {
			t.Errorf("jobs %s and %s share the Nats-Msg-Id %s", other, name, id)
		}
		ids[id] = name
	}
	if a.MsgID() != a.MsgID() {
		t.Error("MsgID of one job changes between calls")
	}
}

// data is optional (README, "Publishing a job"); publishers that write
// every field (C#, Java, Python serializers) send an absent snapshot as
// null. Decode takes null for changed_at, source, key and enqueued_at,
// but refuses it for data, so such a job is dead-lettered.
func TestDecodeAcceptsNullData(t *testing.T) {
	t.Parallel()
	for _, b := range []string{
		`{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST","data":null}`,
		`{"v":1,"id":"j2","subscription":"contoso","type":"location","op":"delta","key":null,"data":null}`,
	} {
		j, err := messages.Decode([]byte(b))
		if err != nil {
			t.Errorf("Decode(%s) = %v, want the job (data null is no snapshot)", b, err)
			continue
		}
		if len(j.Data) != 0 {
			t.Errorf("Decode(%s): Data = %s, want none", b, j.Data)
		}
	}
}

// README: "A key made of [A-Za-z0-9_-] appears as is in the subject; any
// other key is written as ~ followed by its unpadded base64url form", and
// "Jobs whose subject does not match their body are dead-lettered".
// CheckSubject accepts other spellings of the key: a plain key encoded, and
// base64 with non-zero trailing bits (several tokens decode to one key).
func TestCheckSubjectRefusesNonCanonicalKeyToken(t *testing.T) {
	t.Parallel()
	j := messages.Job{V: 1, ID: "j1", Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: "EAST"}
	for _, subj := range []string{
		"bcsync.jobs.contoso.location.~RUFTVA", // base64url("EAST"): the key is plain, so its token is EAST
		"bcsync.jobs.contoso.location.~RUFTVB", // same bytes, non-zero padding bits
		"bcsync.jobs.contoso.location.~RUFTVP",
	} {
		if err := j.CheckSubject(subj); !errors.Is(err, messages.ErrSubjectMismatch) && !errors.Is(err, messages.ErrBadSubject) {
			t.Errorf("CheckSubject(%q) for key EAST (subject %s) = %v, want a mismatch", subj, j.Subject(), err)
		}
	}
}

// Data may be up to MaxDataBytes (README: "JSON object, at most 256 KiB"),
// and Decode takes such a job; Encode (Publish, enqueue) HTML-escapes '<',
// '>' and '&' six-fold and refuses the same job as too large.
func TestEncodeTakesWhatDecodeTakes(t *testing.T) {
	t.Parallel()
	data := `{"description":"` + strings.Repeat("&", 100<<10) + `"}` // 100 KiB + 19 bytes
	body := `{"v":1,"id":"j1","subscription":"contoso","type":"product","op":"upsert","key":"1000","data":` + data + `}`
	j, err := messages.Decode([]byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if _, err := j.Encode(); err != nil {
		t.Errorf("a job Decode accepts (%d bytes, data %d bytes) does not encode: %v", len(body), len(j.Data), err)
	}
	if _, _, err := messages.NewMsg(*j); err != nil {
		t.Errorf("NewMsg refuses it: %v", err)
	}
}
