package messages_test

import (
	"encoding/json"
	"testing"

	"github.com/bcsync/bcsync/messages"
)

// FuzzDecode: decoding never panics; whatever decodes is one valid JSON
// document, re-encodes and decodes to a job with the same MsgID and a
// parseable subject, and jobs that differ get different MsgIDs.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"}`))
	f.Add([]byte(`{"v":1,"id":"j1","subscription":"contoso","type":"customer","op":"upsert","key":"5d115c9c-44e3-ea11-bb43-000d3a2feca1","data":{"number":"C1"}}`))
	f.Add([]byte(`{"v":1,"id":"j1","subscription":"c","type":"location","op":"initialize"}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"key":"A.B*>"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"id":"j1","subscription":"c","type":"location","op":"upsert","key":"E","changed_at":"9999-12-31T23:59:59-23:00"}`))
	f.Add([]byte(`{"v":1,"id":"j1","subscription":"c","type":"location","op":"upsert","key":"E"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := messages.Decode(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted a body that is not one JSON document: %q", b)
		}
		other := *j
		other.ID += "x"
		if other.MsgID() == j.MsgID() {
			t.Fatalf("two jobs that differ in their id share the MsgID %s", j.MsgID())
		}
		enc, err := j.Encode()
		if err != nil {
			t.Fatalf("decoded job does not encode: %v", err)
		}
		j2, err := messages.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded job does not decode: %v", err)
		}
		if j.MsgID() != j2.MsgID() {
			t.Fatalf("MsgID changed over a round trip")
		}
		p, err := messages.ParseSubject(j.Subject())
		if err != nil || p.Key != j.Key || p.Subscription != j.Subscription || p.Type != j.Type {
			t.Fatalf("subject %q does not round-trip: %+v, %v", j.Subject(), p, err)
		}
	})
}

// FuzzKeyToken: every string round-trips through a subject token.
func FuzzKeyToken(f *testing.F) {
	for _, s := range []string{"EAST", "A.B", "~", "_all", "", "ä"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got, err := messages.ParseKeyToken(messages.KeyToken(key))
		if err != nil || got != key {
			t.Fatalf("round trip of %q = %q, %v", key, got, err)
		}
	})
}
