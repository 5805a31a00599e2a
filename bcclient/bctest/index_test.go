package bctest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// checkIndex fails unless t.at holds exactly the position of every row
// under its eqField value, ascending.
func checkIndex(tb testing.TB, t *table) {
	tb.Helper()
	if t.eqField == "" {
		if t.at != nil {
			tb.Fatalf("table without eqField has an index")
		}
		return
	}
	want := map[string][]int{}
	for i, r := range t.rows {
		if v, ok := r.fields[t.eqField].(string); ok {
			want[v] = append(want[v], i)
		}
	}
	if len(want) != len(t.at) {
		tb.Fatalf("index has %d values, rows %d", len(t.at), len(want))
	}
	for v, pos := range want {
		if !slices.Equal(t.at[v], pos) {
			tb.Fatalf("index[%q] = %v, want %v", v, t.at[v], pos)
		}
	}
}

// scan is what collection served before the index: every row from
// offset on that passes f.
func scan(src source, f filter, offset int) []int {
	var out []int
	for i := offset; i < src.len(); i++ {
		if src.match(i, f) {
			out = append(out, i)
		}
	}
	return out
}

// served is what collection serves now.
func served(src source, f filter, offset int) []int {
	var out []int
	for i := range candidates(src, f, offset) {
		if src.match(i, f) {
			out = append(out, i)
		}
	}
	return out
}

// TestIndexMatchesScan: after random renames and updates, every table's
// index is exact, and keyed filters ("eq", "or", with a delta) served
// through it return what a scan returns, from any offset.
func TestIndexMatchesScan(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	s := New(Options{Customers: 300, Locations: 40, Now: func() time.Time { return now }})
	rnd := rand.New(rand.NewPCG(1, 2))
	co := s.companies[0]
	for set, tb := range co.tables {
		checkIndex(t, tb)
		if set != SetSalesOrderLines && len(tb.rows) > 0 && tb.at == nil {
			t.Fatalf("%s is not indexed", set)
		}
	}

	for _, set := range []string{SetCustomers, SetLocations} {
		tb := co.tables[set]
		keys := func() []string { return s.keys(set) }
		for step := range 300 {
			now = now.Add(time.Second)
			k := keys()
			switch rnd.IntN(4) {
			case 0: // rename to a fresh key
				if !s.Rename(set, k[rnd.IntN(len(k))], fmt.Sprintf("N'%d", step)) {
					t.Fatalf("step %d: rename failed", step)
				}
			case 1: // swap two keys through a free one
				a, b := k[rnd.IntN(len(k))], k[rnd.IntN(len(k))]
				if a != b && !(s.Rename(set, a, "SWAP") && s.Rename(set, b, a) && s.Rename(set, "SWAP", b)) {
					t.Fatalf("step %d: swap %s %s failed", step, a, b)
				}
			case 2: // rename onto a taken key: refused, nothing moves
				a, b := k[rnd.IntN(len(k))], k[rnd.IntN(len(k))]
				if s.Rename(set, a, b) {
					t.Fatalf("step %d: rename %s onto %s succeeded", step, a, b)
				}
			case 3: // an update, which may try to change the key
				if !s.Update(set, k[rnd.IntN(len(k))], func(f map[string]any) { f[tb.eqField] = "X"; f["displayName"] = "u" }) {
					t.Fatalf("step %d: update failed", step)
				}
			}
			checkIndex(t, tb)
		}

		src := tableSource(tb)
		k := keys()
		cut := now.Add(-100 * time.Second)
		for range 200 {
			var values []string
			for range 1 + rnd.IntN(8) {
				if rnd.IntN(5) == 0 {
					values = append(values, "MISSING")
				} else {
					values = append(values, k[rnd.IntN(len(k))])
				}
			}
			values = slices.Compact(values)
			fs := []filter{{{field: tb.eqField, op: "eq", values: values}}}
			fs = append(fs, filter{{field: fieldModified, op: "gt", after: cut}, {field: tb.eqField, op: "eq", values: values}})
			fs = append(fs, filter{{field: tb.eqField, op: "eq", values: values[:1]}, {field: tb.eqField, op: "eq", values: values}})
			for _, f := range fs {
				offset := rnd.IntN(len(tb.rows))
				if got, want := served(src, f, offset), scan(src, f, offset); !slices.Equal(got, want) {
					t.Fatalf("%s %+v from %d: served %v, scan %v", set, f, offset, got, want)
				}
				if _, ok := src.lookup(f); !ok {
					t.Fatalf("%+v did not use the index", f)
				}
			}
		}
		// A delta alone scans.
		f := filter{{field: fieldModified, op: "gt", after: cut}}
		if _, ok := src.lookup(f); ok {
			t.Error("a delta used the index")
		}
		if got, want := served(src, f, 0), scan(src, f, 0); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("delta: served %v, scan %v", got, want)
		}
	}
}
