package bctest

import (
	"strings"
	"testing"
)

// FuzzParseFilter: the $filter parser never panics, and what it accepts
// compares only the fields the collection allows.
func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{
		"number eq 'C000001'",
		"name eq 'O''Brien & Sons, Inc.'",
		"lastModifiedDateTime gt 2026-01-02T03:04:05.678Z",
		"lastModifiedDateTime gt 2026-01-02T03:04:05Z and number eq 'X'",
		"lastModifiedDateTime gt '2026-01-02T03:04:05Z'",
		"number eq 'A' or displayName eq 'B'",
		"number eq 'O'NEIL'",
		"(number eq 'A')",
		"number eq ''''",
		"",
		"'",
		" and ",
	} {
		f.Add(seed)
	}
	spec := filterSpec{eqField: "number", delta: true}
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := parseFilter(expr, spec)
		if err != nil {
			return
		}
		if len(flt) == 0 {
			t.Fatalf("%q: accepted with no comparison", expr)
		}
		for _, term := range flt {
			switch {
			case term.field == "number" && term.op == "eq":
			case term.field == fieldModified && term.op == "gt" && !term.after.IsZero():
			default:
				t.Fatalf("%q: accepted %+v", expr, term)
			}
		}
		if strings.Contains(expr, " or ") && !strings.Contains(expr, "'") {
			t.Fatalf("%q: accepted 'or'", expr)
		}
	})
}
