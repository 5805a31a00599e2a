package bctest_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

func filterPath(base, expr string) string { return base + "?$filter=" + url.QueryEscape(expr) }

// modifiedAfter returns the keys of the rows last modified after cut.
func modifiedAfter(t *testing.T, rows []map[string]any, keyField string, cut time.Time) []string {
	t.Helper()
	var keys []string
	for _, r := range rows {
		m, err := time.Parse(time.RFC3339Nano, r["lastModifiedDateTime"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if m.After(cut) {
			keys = append(keys, r[keyField].(string))
		}
	}
	return keys
}

func keysOf(rows []map[string]any, field string) []string {
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i], _ = r[field].(string)
	}
	return keys
}

func TestDeltaFilter(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := newServer(t, bctest.Options{Now: clk.Now})
	tok := token(t, s)
	all := s.Rows(bctest.SetCustomers)

	// The median modification time: about half the customers are after it.
	times := keysOf(all, "lastModifiedDateTime")
	slices.Sort(times)
	cut, _ := time.Parse(time.RFC3339Nano, times[len(times)/2])
	want := modifiedAfter(t, all, "number", cut)
	if len(want) < 50 || len(want) > 150 {
		t.Fatalf("%d customers after %v: the data set is not spread", len(want), cut)
	}
	expr := "lastModifiedDateTime gt " + cut.Format("2006-01-02T15:04:05.000Z")
	rows, pages := listAll(t, s, tok, filterPath(companyPath(s)+"/customers", expr), 7)
	if got := keysOf(rows, "number"); !slices.Equal(got, want) {
		t.Errorf("delta returned %d customers, want %d:\n%v\n%v", len(got), len(want), got, want)
	}
	if wantPages := (len(want) + 6) / 7; pages != wantPages {
		t.Errorf("%d pages, want %d", pages, wantPages)
	}

	// The next link carries the filter; a skiptoken is bound to it.
	r := send(t, s, tok, http.MethodGet, filterPath(companyPath(s)+"/customers", expr), "", "Prefer", "odata.maxpagesize=7")
	next, _ := r.body["@odata.nextLink"].(string)
	u, err := url.Parse(next)
	if err != nil || u.Query().Get("$filter") != expr {
		t.Fatalf("nextLink %q does not carry the filter", next)
	}
	q := u.Query()
	q.Set("$filter", "lastModifiedDateTime gt 2000-01-01T00:00:00Z")
	u.RawQuery = q.Encode()
	if r := fetch(t.Context(), http.MethodGet, u.String(), tok, ""); r.status != 400 || errorCode(r.body) != "BadRequest_InvalidSkipToken" {
		t.Errorf("skiptoken with another filter: %d %v", r.status, r.body)
	}

	// A change moves a row into the delta, once, at the clock's time.
	old := ""
	for _, rw := range all {
		if !slices.Contains(want, rw["number"].(string)) {
			old = rw["number"].(string)
			break
		}
	}
	if !s.Update(bctest.SetCustomers, old, func(f map[string]any) { f["displayName"] = "Changed" }) {
		t.Fatal("Update failed")
	}
	rows, _ = listAll(t, s, tok, filterPath(companyPath(s)+"/customers", expr), 1000)
	if len(rows) != len(want)+1 || !slices.Contains(keysOf(rows, "number"), old) {
		t.Errorf("after an update: %d rows, want %d with %s", len(rows), len(want)+1, old)
	}
	rec, _ := s.Record(bctest.SetCustomers, old)
	if rec["lastModifiedDateTime"] != clk.Now().Format("2006-01-02T15:04:05.000Z") {
		t.Errorf("lastModifiedDateTime %v, want the fake clock's %v", rec["lastModifiedDateTime"], clk.Now())
	}

	// Fractional seconds are optional; up to 7 digits.
	after := clk.Now().Add(-time.Second)
	for _, lit := range []string{after.Format("2006-01-02T15:04:05Z"), after.Format("2006-01-02T15:04:05.0000000Z"), after.Format("2006-01-02T15:04:05.0Z")} {
		rows, _ := listAll(t, s, tok, filterPath(companyPath(s)+"/customers", "lastModifiedDateTime gt "+lit), 1000)
		if len(rows) != 1 || rows[0]["number"] != old {
			t.Errorf("gt %s: %d rows", lit, len(rows))
		}
	}
	// "and" combines a key and a delta.
	rows, _ = listAll(t, s, tok, filterPath(companyPath(s)+"/customers", "number eq '"+old+"' and lastModifiedDateTime gt 2000-01-01T00:00:00Z"), 10)
	if len(rows) != 1 {
		t.Errorf("and: %d rows", len(rows))
	}
}

// Every API v2.0 entity set under a company takes the delta filter.
func TestDeltaOnEverySet(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	order := s.Rows(bctest.SetSalesOrders)[0]
	paths := map[string]string{
		bctest.SetLocations:       companyPath(s) + "/locations",
		bctest.SetShipmentMethods: companyPath(s) + "/shipmentMethods",
		bctest.SetCustomers:       companyPath(s) + "/customers",
		bctest.SetItems:           companyPath(s) + "/items",
		bctest.SetSalesOrders:     companyPath(s) + "/salesOrders",
		bctest.SetSalesOrderLines: companyPath(s) + "/salesOrders(" + order["id"].(string) + ")/salesOrderLines",
	}
	for set, p := range paths {
		all, _ := listAll(t, s, tok, p, 20000)
		if len(all) == 0 {
			t.Fatalf("%s: no rows", set)
		}
		rows, pages := listAll(t, s, tok, filterPath(p, "lastModifiedDateTime gt 2000-01-01T00:00:00Z"), 4)
		if len(rows) != len(all) || pages != (len(all)+3)/4 {
			t.Errorf("%s: %d rows in %d pages, want %d", set, len(rows), pages, len(all))
		}
		if rows, _ := listAll(t, s, tok, filterPath(p, "lastModifiedDateTime gt 2099-01-01T00:00:00Z"), 4); len(rows) != 0 {
			t.Errorf("%s: %d rows modified after 2099", set, len(rows))
		}
	}
}

func TestFilterErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	customers := companyPath(s) + "/customers"
	odata := "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company('CRONUS%20USA%2C%20Inc.')/CustomerPriceGroups"
	tests := []struct {
		name, path, expr, msg string
	}{
		{"quoted datetime", customers, "lastModifiedDateTime gt '2026-01-02T03:04:05.678Z'", "must not be quoted"},
		{"no Z", customers, "lastModifiedDateTime gt 2026-01-02T03:04:05.678", "not a UTC datetime"},
		{"offset", customers, "lastModifiedDateTime gt 2026-01-02T03:04:05+01:00", "not a UTC datetime"},
		{"date only", customers, "lastModifiedDateTime gt 2026-01-02", "not a UTC datetime"},
		{"space for T", customers, "lastModifiedDateTime gt 2026-01-02 03:04:05Z", ""},
		{"month 13", customers, "lastModifiedDateTime gt 2026-13-02T03:04:05Z", "not a valid datetime"},
		{"8 fraction digits", customers, "lastModifiedDateTime gt 2026-01-02T03:04:05.12345678Z", "not a UTC datetime"},
		{"ge", customers, "lastModifiedDateTime ge 2026-01-02T03:04:05Z", "gt <datetime>"},
		{"or across fields", customers, "lastModifiedDateTime gt 2026-01-02T03:04:05Z or number eq 'C000001'", "across different fields"},
		{"or across fields, same operator", customers, "number eq 'C000001' or number eq 'C000002' or type eq 'Person'", "across different fields (number, type)"},
		{"or with and", customers, "number eq 'C000001' or number eq 'C000002' and lastModifiedDateTime gt 2026-01-02T03:04:05Z", "across different fields"},
		{"or mixed with and", customers, "number eq 'C000001' or number eq 'C000002' and number eq 'C000003'", "'or' mixed with 'and'"},
		{"and then or", customers, "number eq 'C000001' and number eq 'C000002' or number eq 'C000003'", "'or' mixed with 'and'"},
		{"or of deltas", customers, "lastModifiedDateTime gt 2026-01-02T03:04:05Z or lastModifiedDateTime gt 2026-01-03T03:04:05Z", "'number eq <string>' comparisons only"},
		{"or of ne", customers, "number ne 'C000001' or number ne 'C000002'", "'number eq <string>' only"},
		{"or unquoted", customers, "number eq 'C000001' or number eq C000002", "single quotes"},
		{"or unescaped quote", customers, "number eq 'C000001' or number eq 'O'NEIL'", "doubled"},
		{"upper-case OR", customers, "number eq 'C000001' OR number eq 'C000002'", "'and' or 'or'"},
		{"dangling or", customers, "number eq 'C000001' or", ""},
		{"or in parentheses", customers, "(number eq 'C000001' or number eq 'C000002')", "parentheses"},
		{"in", customers, "number in ('C000001','C000002')", "parentheses"},
		{"too many or", customers, orKeys("number", bctest.MaxOrTerms+1), "101 comparisons joined by 'or': bctest takes at most 100"},
		{"or on lines", companyPath(s) + "/salesOrders(" + s.Rows(bctest.SetSalesOrders)[0]["id"].(string) + ")/salesOrderLines",
			"lastModifiedDateTime gt 2026-01-02T03:04:05Z or lastModifiedDateTime gt 2026-01-03T03:04:05Z", "not supported on this collection"},
		{"upper-case AND", customers, "number eq 'C000001' AND lastModifiedDateTime gt 2026-01-02T03:04:05Z", "'and' or 'or'"},
		{"parentheses", customers, "(number eq 'C000001')", "parentheses"},
		{"function", customers, "startswith(number,'C')", "parentheses"},
		{"other field", customers, "displayName eq 'x'", "cannot be filtered"},
		{"unquoted key", customers, "number eq C000001", "single quotes"},
		{"empty", customers, "", "empty"},
		{"dangling and", customers, "number eq 'C000001' and", ""},
		{"unterminated", customers, "number eq 'C000001", "not closed"},
		{"delta on companies", apiRoot(s) + "/companies", "lastModifiedDateTime gt 2026-01-02T03:04:05Z", "cannot be filtered"},
		{"delta on OData V4", odata, "lastModifiedDateTime gt 2026-01-02T03:04:05Z", "cannot be filtered"},
		{"key on lines", companyPath(s) + "/salesOrders(" + s.Rows(bctest.SetSalesOrders)[0]["id"].(string) + ")/salesOrderLines", "sequence eq '10000'", "cannot be filtered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := send(t, s, tok, http.MethodGet, filterPath(tt.path, tt.expr), "")
			if r.status != 400 || errorCode(r.body) != "BadRequest_InvalidFilter" {
				t.Fatalf("%d %v, want 400 BadRequest_InvalidFilter", r.status, r.body)
			}
			if !strings.Contains(errorMessage(r.body), tt.msg) {
				t.Errorf("message %q does not say %q", errorMessage(r.body), tt.msg)
			}
		})
	}
}
