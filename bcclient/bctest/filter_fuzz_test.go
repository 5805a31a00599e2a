package bctest

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
		"number eq 'A' or number eq 'B'",
		"number eq 'A' or number eq 'A' or number eq 'O''B'",
		"number eq 'A' or number eq 'B' and lastModifiedDateTime gt 2026-01-02T03:04:05Z",
		"lastModifiedDateTime gt 2026-01-02T03:04:05Z or lastModifiedDateTime gt 2026-01-03T03:04:05Z",
		"number eq 'A' or number ne 'B'",
		"number eq 'a b' or number eq ' or number eq '",
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
			case term.field == "number" && term.op == "eq" && len(term.values) > 0 && len(term.values) <= MaxOrTerms:
				for i, v := range term.values {
					if slices.Contains(term.values[:i], v) {
						t.Fatalf("%q: value %q twice in %+v", expr, v, term)
					}
				}
			case term.field == fieldModified && term.op == "gt" && term.values == nil:
			default:
				t.Fatalf("%q: accepted %+v", expr, term)
			}
		}
		if strings.Contains(expr, " or ") && !strings.Contains(expr, "'") {
			t.Fatalf("%q: accepted 'or'", expr)
		}
		// Comparisons joined by "or" become one term, never mixed with
		// "and".
		for _, term := range flt {
			if len(term.values) > 1 && len(flt) > 1 {
				t.Fatalf("%q: 'or' mixed with 'and' accepted as %+v", expr, flt)
			}
		}
		// Written back the OData way, the filter parses to itself.
		again, err := parseFilter(render(flt), spec)
		if err != nil || !reflect.DeepEqual(again, flt) {
			t.Fatalf("%q: %+v rendered as %q parses to %+v, %v", expr, flt, render(flt), again, err)
		}
	})
}

// render writes f as a $filter, quoting the OData way.
func render(f filter) string {
	var and []string
	for _, t := range f {
		if t.op == "gt" {
			and = append(and, t.field+" gt "+t.after.UTC().Format(time.RFC3339Nano))
			continue
		}
		var or []string
		for _, v := range t.values {
			or = append(or, t.field+" eq "+quote(v))
		}
		and = append(and, strings.Join(or, " or "))
	}
	return strings.Join(and, " and ")
}

// TestParseFilter is the table test of the grammar.
func TestParseFilter(t *testing.T) {
	t.Parallel()
	spec := filterSpec{eqField: "number", delta: true}
	at := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	tests := []struct {
		expr string
		want filter // nil: rejected
	}{
		{"number eq 'A'", filter{{field: "number", op: "eq", values: []string{"A"}}}},
		{"number eq 'A' or number eq 'O''B'", filter{{field: "number", op: "eq", values: []string{"A", "O'B"}}}},
		{"number eq 'B' or number eq 'A' or number eq 'B'", filter{{field: "number", op: "eq", values: []string{"B", "A"}}}},
		{"number eq 'a or number eq b'", filter{{field: "number", op: "eq", values: []string{"a or number eq b"}}}},
		{"number eq 'A' and lastModifiedDateTime gt 2026-01-02T03:04:05.678Z", filter{
			{field: "number", op: "eq", values: []string{"A"}}, {field: fieldModified, op: "gt", after: at}}},
		{"number eq 'A' and number eq 'B'", filter{
			{field: "number", op: "eq", values: []string{"A"}}, {field: "number", op: "eq", values: []string{"B"}}}},
		{orN(MaxOrTerms), filter{{field: "number", op: "eq", values: valuesN(MaxOrTerms)}}},
		{orN(MaxOrTerms + 1), nil},
		{"number eq 'A' or displayName eq 'B'", nil},
		{"number eq 'A' or number eq 'B' and number eq 'C'", nil},
		{"number eq 'A' and number eq 'B' or number eq 'C'", nil},
		{"lastModifiedDateTime gt 2026-01-02T03:04:05Z or lastModifiedDateTime gt 2026-01-02T03:04:06Z", nil},
		{"number eq 'A' or number gt 'B'", nil},
		{"number eq 'A' or number eq B", nil},
		{"number eq 'A' or number eq 'O'B'", nil},
		{"number eq 'A' or", nil},
		{"or number eq 'A'", nil},
		{"number eq 'A' xor number eq 'B'", nil},
		{"(number eq 'A' or number eq 'B')", nil},
	}
	for _, tt := range tests {
		got, err := parseFilter(tt.expr, spec)
		switch {
		case tt.want == nil && err == nil:
			t.Errorf("%.60q: accepted as %+v", tt.expr, got)
		case tt.want != nil && (err != nil || !reflect.DeepEqual(got, tt.want)):
			t.Errorf("%.60q = %+v, %v; want %+v", tt.expr, got, err, tt.want)
		}
	}
	// "or" on a collection without an eq field.
	if f, err := parseFilter("lastModifiedDateTime gt 2026-01-02T03:04:05Z or lastModifiedDateTime gt 2026-01-02T03:04:06Z", filterSpec{delta: true}); err == nil {
		t.Errorf("or on lines accepted as %+v", f)
	}
}

func valuesN(n int) []string {
	v := make([]string, n)
	for i := range v {
		v[i] = "K" + strconv.Itoa(i)
	}
	return v
}

func orN(n int) string {
	var terms []string
	for _, v := range valuesN(n) {
		terms = append(terms, "number eq '"+v+"'")
	}
	return strings.Join(terms, " or ")
}
