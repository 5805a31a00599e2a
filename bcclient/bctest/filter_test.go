package bctest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

// orKeys returns "<field> eq 'K001' or <field> eq 'K002' ..." with n
// comparisons.
func orKeys(field string, n int) string {
	terms := make([]string, n)
	for i := range terms {
		terms[i] = fmt.Sprintf("%s eq 'K%03d'", field, i+1)
	}
	return strings.Join(terms, " or ")
}

// orFilter joins "<field> eq '<key>'" for keys with "or", quoting the
// OData way.
func orFilter(field string, keys ...string) string {
	terms := make([]string, len(keys))
	for i, k := range keys {
		terms[i] = field + " eq '" + strings.ReplaceAll(k, "'", "''") + "'"
	}
	return strings.Join(terms, " or ")
}

// TestFilterOr: "or" between eq comparisons of the collection's key field
// returns the rows holding any of the values, in the collection's order,
// paged as every listing is.
func TestFilterOr(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{PriceGroups: 5})
	tok := token(t, s)
	numbers := s.CustomerNumbers()

	// Asked out of order, with a duplicate and a missing key: served in
	// the data set's order, each once.
	asked := []string{numbers[150], numbers[3], "NOPE", numbers[77], numbers[3], numbers[0], numbers[199]}
	want := []string{numbers[0], numbers[3], numbers[77], numbers[150], numbers[199]}
	expr := orFilter("number", asked...)
	rows, pages := listAll(t, s, tok, filterPath(companyPath(s)+"/customers", expr), 2)
	if got := keysOf(rows, "number"); !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages of %v, want 3 of %v", pages, got, want)
	}
	r := send(t, s, tok, http.MethodGet, filterPath(companyPath(s)+"/customers", expr), "", "Prefer", "odata.maxpagesize=2")
	next, _ := r.body["@odata.nextLink"].(string)
	if u, err := url.Parse(next); err != nil || u.Query().Get("$filter") != expr {
		t.Errorf("nextLink %q does not carry the filter", next)
	}
	// A next link of one "or" filter is not valid for another.
	if u, err := url.Parse(next); err == nil {
		q := u.Query()
		q.Set("$filter", orFilter("number", want...))
		u.RawQuery = q.Encode()
		if r := fetch(t.Context(), http.MethodGet, u.String(), tok, ""); r.status != 400 || errorCode(r.body) != "BadRequest_InvalidSkipToken" {
			t.Errorf("skiptoken with another filter: %d %v", r.status, r.body)
		}
	}

	// Every indexed set, the OData V4 service and companies (not indexed).
	odata := "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company('CRONUS%20USA%2C%20Inc.')/CustomerPriceGroups"
	for _, tt := range []struct {
		path, field string
		keys        []string
	}{
		{companyPath(s) + "/locations", "code", s.LocationCodes()},
		{companyPath(s) + "/shipmentMethods", "code", s.ShipmentMethodCodes()},
		{companyPath(s) + "/items", "number", s.ItemNumbers()},
		{companyPath(s) + "/salesOrders", "number", s.SalesOrderNumbers()},
		{odata, "Code", s.PriceGroupCodes()},
		{apiRoot(s) + "/companies", "name", []string{s.CompanyName(), s.CompanyName() + " (Copy)", "My Company"}},
	} {
		want := []string{tt.keys[0], tt.keys[1], tt.keys[len(tt.keys)-1]}
		rows, _ := listAll(t, s, tok, filterPath(tt.path, orFilter(tt.field, tt.keys[len(tt.keys)-1], "NOPE", tt.keys[1], tt.keys[0])), 1000)
		if got := keysOf(rows, tt.field); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", tt.path, got, want)
		}
	}

	// MaxOrTerms comparisons are accepted.
	keys := append(slices.Clone(numbers[:bctest.MaxOrTerms-1]), "NOPE")
	rows, _ = listAll(t, s, tok, filterPath(companyPath(s)+"/customers", orFilter("number", keys...)), 1000)
	if len(rows) != bctest.MaxOrTerms-1 {
		t.Errorf("%d comparisons: %d rows, want %d", bctest.MaxOrTerms, len(rows), bctest.MaxOrTerms-1)
	}
}

// TestFilterAfterWrites: a keyed filter finds rows by their current key
// after Rename and Update, in the collection's order.
func TestFilterAfterWrites(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	codes := s.LocationCodes()
	locations := companyPath(s) + "/locations"
	find := func(keys ...string) []string {
		t.Helper()
		rows, _ := listAll(t, s, tok, filterPath(locations, orFilter("code", keys...)), 1000)
		return keysOf(rows, "code")
	}

	if !s.Rename(bctest.SetLocations, codes[2], "O'NEIL") {
		t.Fatal("Rename failed")
	}
	if got := find(codes[2]); len(got) != 0 {
		t.Errorf("old code %s still finds %v", codes[2], got)
	}
	if got := find("O'NEIL", codes[0], codes[3]); !slices.Equal(got, []string{codes[0], "O'NEIL", codes[3]}) {
		t.Errorf("after rename: %v", got)
	}
	// The old code is free again: another row can take it.
	if !s.Rename(bctest.SetLocations, codes[10], codes[2]) {
		t.Fatal("Rename onto a freed code failed")
	}
	if got := find(codes[2], codes[10], "O'NEIL"); !slices.Equal(got, []string{"O'NEIL", codes[2]}) {
		t.Errorf("after the second rename: %v", got)
	}
	// Renaming back restores the original.
	if !s.Rename(bctest.SetLocations, "O'NEIL", "AAA") || !s.Rename(bctest.SetLocations, "AAA", "O'NEIL") {
		t.Fatal("Rename back and forth failed")
	}
	if got := find("O'NEIL", "AAA"); !slices.Equal(got, []string{"O'NEIL"}) {
		t.Errorf("after renaming back and forth: %v", got)
	}
	// Update cannot change the key: the row is still found by it.
	if !s.UpdateLocation(codes[5], func(f map[string]any) { f["code"] = "HACK"; f["displayName"] = "Changed" }) {
		t.Fatal("UpdateLocation failed")
	}
	rows, _ := listAll(t, s, tok, filterPath(locations, "code eq '"+codes[5]+"'"), 10)
	if len(rows) != 1 || rows[0]["displayName"] != "Changed" {
		t.Errorf("after update: %v", rows)
	}
	if got := find("HACK"); len(got) != 0 {
		t.Errorf("HACK finds %v", got)
	}
	// A keyed filter and a delta: only the changed row.
	rows, _ = listAll(t, s, tok, filterPath(locations, "code eq '"+codes[5]+"' and lastModifiedDateTime gt "+
		rows[0]["lastModifiedDateTime"].(string)), 10)
	if len(rows) != 0 {
		t.Errorf("modified after its own time: %v", rows)
	}
}

// TestFilterConcurrentWrites: keyed reads while rows are renamed (run
// with -race): every answer is a 200 whose rows hold keys asked for.
func TestFilterConcurrentWrites(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{MaxConcurrent: -1, MaxQueued: -1, Budget: -1})
	tok := token(t, s)
	numbers := s.CustomerNumbers()
	asked := []string{numbers[1], numbers[2], "MOVED", numbers[100]}
	path := s.URL() + filterPath(companyPath(s)+"/customers", orFilter("number", asked...))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				r := fetch(t.Context(), http.MethodGet, path, tok, "")
				if r.err != nil || r.status != http.StatusOK {
					t.Errorf("%d %v %v", r.status, r.err, r.body)
					return
				}
				rows, _ := r.body["value"].([]any)
				if len(rows) != 3 {
					t.Errorf("%d rows, want 3", len(rows))
				}
				for _, row := range rows {
					if n, _ := row.(map[string]any)["number"].(string); !slices.Contains(asked, n) {
						t.Errorf("row %q not asked for", n)
					}
				}
			}
		})
	}
	for i := range 200 {
		from, to := numbers[2], "MOVED"
		if i%2 == 1 {
			from, to = to, from
		}
		if !s.Rename(bctest.SetCustomers, from, to) {
			t.Fatalf("rename %s to %s", from, to)
		}
	}
	close(done)
	wg.Wait()
}
