package worker

import (
	"testing"
	"time"
)

// Alias values written before they carried a time still read, as the
// external id alone; timed ones round-trip, whatever the external id holds.
func TestAliasValues(t *testing.T) {
	t.Parallel()
	if a := parseAlias([]byte("MAIN ST.1")); !a.Found || a.Ext != "MAIN ST.1" || !a.At.IsZero() {
		t.Errorf("an untimed value: %+v", a)
	}
	at := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)
	for _, ext := range []string{"EAST", "MAIN ST.1", "v2", "A\u00e9B"} {
		if a := parseAlias(formatAlias(ext, at)); a.Ext != ext || !a.At.Equal(at) {
			t.Errorf("%q: %+v", ext, a)
		}
	}
	if string(formatAlias("EAST", time.Time{})) != "EAST" {
		t.Error("a zero time is written as the external id alone")
	}
}
