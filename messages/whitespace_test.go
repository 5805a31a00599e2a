package messages_test

import (
	"encoding/json"
	"testing"

	"github.com/bcsync/bcsync/messages"
)

// trailing() trimmed with bytes.TrimSpace, which removes Unicode white
// space (U+00A0, U+0085, U+2028, ...) that JSON does not allow, so a body
// that is not JSON was accepted as a job. It trims JSON's white space only.
func TestDecodeRefusesNonJSONWhiteSpaceAfterTheObject(t *testing.T) {
	t.Parallel()
	const job = `{"v":1,"id":"j1","subscription":"contoso","type":"location","op":"upsert","key":"EAST"}`
	for _, tail := range []string{"\u00a0", "\u0085", "\u2028", "\u3000"} {
		b := []byte(job + tail)
		if json.Valid(b) {
			t.Fatalf("%q: test premise wrong, the body is valid JSON", tail)
		}
		if _, err := messages.Decode(b); err == nil {
			t.Errorf("Decode accepted a body that is not JSON (trailing %q)", tail)
		}
	}
}
