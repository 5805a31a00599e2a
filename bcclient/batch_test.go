package bcclient_test

// Batched reads by key (GetCustomers, GetLocations, GetShipmentMethods).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
)

// sortedKeys returns the keys of m, sorted.
func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// counter returns a function that reports the fake's API requests and
// customers data requests since its last call.
func counter(s *bctest.Server) func() (api, customers int64) {
	var lastAPI, lastData int64
	return func() (int64, int64) {
		st := s.Stats()
		api, data := st.APIRequests-lastAPI, st.DataRequests[bctest.SetCustomers]-lastData
		lastAPI, lastData = st.APIRequests, st.DataRequests[bctest.SetCustomers]
		return api, data
	}
}

func TestGetCustomersBatch(t *testing.T) {
	t.Parallel()
	s, c, since := batchSetup(t, bctest.Options{Customers: 500, SalesOrders: -1})
	ctx := t.Context()
	numbers := s.CustomerNumbers()

	// 50 numbers, spread over the data set: all found, in one request,
	// each the record the single get returns.
	var keys []string
	for i := range bcclient.MaxBatchKeys {
		keys = append(keys, numbers[(i*37)%len(numbers)])
	}
	got, err := c.GetCustomers(ctx, keys)
	if api, data := since(); err != nil || api != 1 || data != 1 {
		t.Fatalf("GetCustomers: %v; %d API requests, %d data requests, want 1", err, api, data)
	}
	if len(got) != len(keys) {
		t.Errorf("%d customers, want %d", len(got), len(keys))
	}
	for _, k := range keys {
		rec, _ := s.Record(bctest.SetCustomers, k)
		if want := asRecord[bcclient.Customer](t, rec); got[k] != want {
			t.Errorf("%s: %+v, want %+v", k, got[k], want)
		}
	}
	one, err := c.GetCustomer(ctx, keys[7])
	if err != nil || one != got[keys[7]] {
		t.Errorf("GetCustomer(%s) = %+v, %v; the batch has %+v", keys[7], one, err, got[keys[7]])
	}
	since()

	// Missing numbers are absent; Lookup makes them ErrNotFound, as the
	// single get does.
	got, err = c.GetCustomers(ctx, []string{numbers[0], "NOPE", numbers[9], "C999999"})
	if err != nil || !slices.Equal(sortedKeys(got), []string{numbers[0], numbers[9]}) {
		t.Fatalf("with missing numbers: %v, %v", sortedKeys(got), err)
	}
	if r, err := bcclient.Lookup(got, numbers[9]); err != nil || r.Number != numbers[9] {
		t.Errorf("Lookup(%s) = %+v, %v", numbers[9], r, err)
	}
	_, lookupErr := bcclient.Lookup(got, "NOPE")
	_, singleErr := c.GetCustomer(ctx, "NOPE")
	for _, err := range []error{lookupErr, singleErr} {
		if !errors.Is(err, bcclient.ErrNotFound) || bcclient.Classify(err) != bcclient.ClassNotFound {
			t.Errorf("missing: %v (%v)", err, bcclient.Classify(err))
		}
	}
	since()

	// Duplicates count once: 60 keys, 50 distinct, one request.
	got, err = c.GetCustomers(ctx, append(slices.Clone(keys), keys[:10]...))
	if api, _ := since(); err != nil || len(got) != len(keys) || api != 1 {
		t.Errorf("with duplicates: %d customers, %v, %d requests", len(got), err, api)
	}

	// No keys: no request.
	got, err = c.GetCustomers(ctx, nil)
	if api, _ := since(); err != nil || got == nil || len(got) != 0 || api != 0 {
		t.Errorf("no keys: %v, %v, %d requests", got, err, api)
	}
}

// TestGetBatchQuotesAndPages: keys holding quotes and URL delimiters are
// escaped; a page size below the number of keys takes more pages; codes of
// locations and shipment methods work the same way.
func TestGetBatchQuotesAndPages(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.PageSize = 4
	c := newClient(t, cfg)
	ctx := t.Context()
	numbers := s.CustomerNumbers()
	odd := []string{"O'BRIEN", "A&B #1?", "50% OFF", "'", "''X''", "A+B=C/D"}
	for i, k := range odd {
		if !s.Rename(bctest.SetCustomers, numbers[i*10], k) {
			t.Fatalf("rename to %q", k)
		}
	}
	if _, err := c.CompanyID(ctx); err != nil {
		t.Fatal(err)
	}
	since := counter(s)
	since()
	keys := append(slices.Clone(odd), numbers[1], numbers[2], "O'BRIEN2", "o'brien")
	got, err := c.GetCustomers(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(odd), numbers[1], numbers[2])
	if !slices.Equal(sortedKeys(got), slices.Sorted(slices.Values(want))) {
		t.Errorf("got %v, want %v", sortedKeys(got), want)
	}
	for _, k := range want {
		if got[k].Number != k {
			t.Errorf("%q: %+v", k, got[k])
		}
	}
	if _, data := since(); data != 2 {
		t.Errorf("8 rows in pages of 4: %d data requests, want 2", data)
	}

	codes := s.LocationCodes()
	locs, err := c.GetLocations(ctx, []string{codes[3], codes[0], "NOPE", codes[49]})
	if err != nil || len(locs) != 3 || locs[codes[0]].Code != codes[0] || locs[codes[49]].Code != codes[49] {
		t.Errorf("GetLocations: %v, %v", locs, err)
	}
	if one, err := c.GetLocation(ctx, codes[3]); err != nil || one != locs[codes[3]] {
		t.Errorf("GetLocation = %+v, %v; the batch has %+v", one, err, locs[codes[3]])
	}
	sm := s.ShipmentMethodCodes()
	methods, err := c.GetShipmentMethods(ctx, sm)
	if err != nil || len(methods) != len(sm) {
		t.Fatalf("GetShipmentMethods: %d, %v", len(methods), err)
	}
	for _, k := range sm {
		rec, _ := s.Record(bctest.SetShipmentMethods, k)
		if want := asRecord[bcclient.ShipmentMethod](t, rec); methods[k] != want {
			t.Errorf("%s: %+v, want %+v", k, methods[k], want)
		}
	}
}

// TestGetBatchRefusedKeys: keys the single get refuses, GUIDs and more
// than MaxBatchKeys distinct keys are refused before any request.
func TestGetBatchRefusedKeys(t *testing.T) {
	t.Parallel()
	s, c, since := batchSetup(t, bctest.Options{})
	ctx := t.Context()
	guid := s.Rows(bctest.SetCustomers)[0]["id"].(string)
	many := make([]string, bcclient.MaxBatchKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf("C%06d", i+1)
	}
	tests := []struct {
		name string
		keys []string
		want error
	}{
		{"empty", []string{"C000001", ""}, bcclient.ErrInvalidKey},
		{"too long", []string{strings.Repeat("X", 21)}, bcclient.ErrInvalidKey},
		{"control character", []string{"C000001", "C\n1"}, bcclient.ErrInvalidKey},
		{"not UTF-8", []string{"C\xff"}, bcclient.ErrInvalidKey},
		{"GUID", []string{"C000001", guid}, bcclient.ErrInvalidKey},
		{"upper-case GUID", []string{strings.ToUpper(guid)}, bcclient.ErrInvalidKey},
		{"51 keys", many, bcclient.ErrInvalidRequest},
	}
	for _, tt := range tests {
		got, err := c.GetCustomers(ctx, tt.keys)
		if !errors.Is(err, tt.want) || got != nil || bcclient.Classify(err) != bcclient.ClassPermanent {
			t.Errorf("%s: %v, %v; want %v", tt.name, got, err, tt.want)
		}
		if _, err := c.GetLocations(ctx, tt.keys); !errors.Is(err, tt.want) {
			t.Errorf("%s: GetLocations: %v", tt.name, err)
		}
		if _, err := c.GetShipmentMethods(ctx, tt.keys); !errors.Is(err, tt.want) {
			t.Errorf("%s: GetShipmentMethods: %v", tt.name, err)
		}
		if api, _ := since(); api != 0 {
			t.Errorf("%s: %d requests sent", tt.name, api)
		}
		// The single get refuses the same keys, GUIDs aside.
		if tt.want == bcclient.ErrInvalidKey && !strings.Contains(tt.name, "GUID") {
			if _, err := c.GetCustomer(ctx, tt.keys[len(tt.keys)-1]); !errors.Is(err, bcclient.ErrInvalidKey) {
				t.Errorf("%s: GetCustomer accepts it: %v", tt.name, err)
			}
		}
	}
	if _, err := c.GetCustomers(ctx, many[:bcclient.MaxBatchKeys]); err != nil {
		t.Errorf("%d keys: %v", bcclient.MaxBatchKeys, err)
	}
}

// TestGetBatchErrors: failures reach the batch as they reach the single
// get, through the same retry path: same error, same class.
func TestGetBatchErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(*bctest.Server)
		status int // of the *APIError; 0: success
		class  bcclient.Class
		// requests sent, the same for both; 0: retried until MaxElapsed,
		// a number that depends on the backoff's jitter
		requests int64
	}{
		{"401 once (token revoked)", func(s *bctest.Server) { s.ExpireTokens() }, 0, bcclient.ClassNone, 2},
		{"401 twice", func(s *bctest.Server) { s.FailNext(2, http.StatusUnauthorized, 0) }, 401, bcclient.ClassAuth, 2},
		{"403", func(s *bctest.Server) { s.SetForbidden(bctest.SetCustomers, true) }, 403, bcclient.ClassPermission, 1},
		{"503 once", func(s *bctest.Server) { s.FailNext(1, http.StatusServiceUnavailable, 0) }, 0, bcclient.ClassNone, 2},
		{"503 outage", func(s *bctest.Server) { s.SetOutage(http.StatusServiceUnavailable) }, 503, bcclient.ClassTransient, 0},
		{"429", func(s *bctest.Server) { s.FailNext(100, http.StatusTooManyRequests, time.Second) }, 429, bcclient.ClassThrottled, 0},
		{"400", func(s *bctest.Server) { s.FailNext(1, http.StatusBadRequest, 0) }, 400, bcclient.ClassPermanent, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var errs [2]error
			var requests [2]int64
			for i, get := range []func(*bcclient.Client, context.Context, string) error{
				func(c *bcclient.Client, ctx context.Context, k string) error {
					_, err := c.GetCustomer(ctx, k)
					return err
				},
				func(c *bcclient.Client, ctx context.Context, k string) error {
					m, err := c.GetCustomers(ctx, []string{k, "C000002"})
					if err == nil && (len(m) != 2 || m[k].Number != k) {
						t.Errorf("batch after %s: %v", tt.name, m)
					}
					return err
				},
			} {
				s := fake(t, bctest.Options{})
				c := newClient(t, config(t, s))
				clock := &fakeClock{now: time.Now()} // retries wait no real time
				bcclient.SetClock(c, clock.Now, clock.Sleep)
				if _, err := c.CompanyID(t.Context()); err != nil {
					t.Fatal(err)
				}
				s.ResetStats()
				tt.setup(s)
				errs[i] = get(c, t.Context(), "C000001")
				requests[i] = s.Stats().APIRequests
			}
			for i, err := range errs {
				name := [2]string{"GetCustomer", "GetCustomers"}[i]
				var apiErr *bcclient.APIError
				switch {
				case tt.status == 0 && err != nil:
					t.Errorf("%s: %v", name, err)
				case tt.status != 0 && (!errors.As(err, &apiErr) || apiErr.Status != tt.status):
					t.Errorf("%s: %v, want HTTP %d", name, err, tt.status)
				}
				if got := bcclient.Classify(err); got != tt.class {
					t.Errorf("%s: class %v, want %v (%v)", name, got, tt.class, err)
				}
			}
			for i, n := range requests {
				if tt.requests == 0 && n < 3 || tt.requests != 0 && n != tt.requests {
					t.Errorf("%s: %d requests, want %d (0: retried)", [2]string{"GetCustomer", "GetCustomers"}[i], n, tt.requests)
				}
			}
		})
	}
}

// TestGetBatchStub: the request sent, and answers a strict BC never gives.
func TestGetBatchStub(t *testing.T) {
	t.Parallel()
	customer := func(number string) string {
		return fmt.Sprintf(`{"id":"aaaaaaaa-0000-4000-8000-000000000001","number":%q,"displayName":"D","lastModifiedDateTime":"2026-01-02T03:04:05.678Z"}`, number)
	}
	page := func(numbers ...string) string {
		var rows []string
		for _, n := range numbers {
			rows = append(rows, customer(n))
		}
		return `{"value":[` + strings.Join(rows, ",") + `]}`
	}
	c, st, _ := newStub(t, okJSON(page("C1", "O'B")))
	got, err := c.GetCustomers(t.Context(), []string{"C1", "O'B", "C1", "C2"})
	if err != nil || len(got) != 2 || got["O'B"].Number != "O'B" {
		t.Fatalf("%v, %v", got, err)
	}
	reqs := st.requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodGet || pathAfterRoot(reqs[0].Path) != "companies("+stubCompanyID+")/customers" {
		t.Fatalf("requests %+v", reqs)
	}
	const wantQuery = "$filter=number%20eq%20%27C1%27%20or%20number%20eq%20%27O%27%27B%27%20or%20number%20eq%20%27C2%27"
	if reqs[0].RawQuery != wantQuery || reqs[0].Header.Get("Prefer") != "odata.maxpagesize=1000" {
		t.Errorf("query %s, Prefer %q;\nwant %s", reqs[0].RawQuery, reqs[0].Header.Get("Prefer"), wantQuery)
	}
	if q, err := url.ParseQuery(reqs[0].RawQuery); err != nil || q.Get("$filter") != "number eq 'C1' or number eq 'O''B' or number eq 'C2'" {
		t.Errorf("filter %q, %v", q.Get("$filter"), err)
	}

	// 50 keys of 20 characters make a URL well under 4 KB.
	c, st, _ = newStub(t, okJSON(`{"value":[]}`))
	var long []string
	for i := range bcclient.MaxBatchKeys {
		long = append(long, fmt.Sprintf("%020d", i))
	}
	if _, err := c.GetCustomers(t.Context(), long); err != nil {
		t.Fatal(err)
	}
	if u := st.URL + st.requests()[0].Path + "?" + st.requests()[0].RawQuery; len(u) > 2700 {
		t.Errorf("URL of %d bytes", len(u))
	}

	for _, tt := range []struct {
		name  string
		body  string
		asked []string
		want  map[string]string // key asked -> number served; nil: an error
	}{
		// A BC that compares without case is trusted: the row is filed
		// under the key asked.
		{"case folded", page("ABC"), []string{"abc", "X"}, map[string]string{"abc": "ABC"}},
		{"exact match wins", page("ABC"), []string{"abc", "ABC"}, map[string]string{"ABC": "ABC"}},
		{"not asked for", page("C1", "C9"), []string{"C1"}, nil},
		{"twice", page("C1", "C1"), []string{"C1", "C2"}, nil},
		{"twice by case", page("abc", "ABC"), []string{"Abc"}, nil},
	} {
		c, _, _ := newStub(t, okJSON(tt.body))
		got, err := c.GetCustomers(t.Context(), tt.asked)
		if tt.want == nil {
			if err == nil || bcclient.Classify(err) != bcclient.ClassPermanent {
				t.Errorf("%s: %v, %v; want a bad response", tt.name, got, err)
			}
			continue
		}
		numbers := map[string]string{}
		for k, v := range got {
			numbers[k] = v.Number
		}
		if err != nil || !reflect.DeepEqual(numbers, tt.want) {
			t.Errorf("%s: %v, %v; want %v", tt.name, numbers, err, tt.want)
		}
	}
}

// batchSetup starts a fake with opts and a client that has looked up its
// company; since counts the API requests from then on.
func batchSetup(t *testing.T, opts bctest.Options) (s *bctest.Server, c *bcclient.Client, since func() (api, customers int64)) {
	t.Helper()
	s = fake(t, opts)
	c = newClient(t, config(t, s))
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	since = counter(s)
	since()
	return s, c, since
}

// queryLengths records the longest query string sent, and calls before,
// when set, with the count of requests so far (this one included).
type queryLengths struct {
	mu       sync.Mutex
	longest  int
	requests int
	before   func(n int)
}

func (q *queryLengths) RoundTrip(r *http.Request) (*http.Response, error) {
	q.mu.Lock()
	q.longest = max(q.longest, len(r.URL.RawQuery))
	q.requests++
	n, before := q.requests, q.before
	q.mu.Unlock()
	if before != nil {
		before(n)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Keys whose comparisons make a filter longer than web front ends take
// (IIS refuses query strings above 2,048 bytes by default) are read in
// more than one request, each under that; short keys still go in one.
func TestGetCustomersBatchKeepsTheQueryShort(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{Customers: bcclient.MaxBatchKeys, SalesOrders: -1})
	var long []string
	for i, n := range s.CustomerNumbers() {
		k := fmt.Sprintf("LONG-NUMBER-%08d", i) // 20 characters
		if !s.Rename(bctest.SetCustomers, n, k) {
			t.Fatalf("rename %s", n)
		}
		long = append(long, k)
	}
	q := &queryLengths{}
	cfg := config(t, s)
	cfg.HTTPClient = &http.Client{Transport: q}
	c := newClient(t, cfg)
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	since := counter(s)
	since()
	got, err := c.GetCustomers(t.Context(), long)
	api, _ := since()
	if err != nil || len(got) != len(long) {
		t.Fatalf("GetCustomers: %d of %d, %v", len(got), len(long), err)
	}
	for _, k := range long {
		if got[k].Number != k {
			t.Errorf("%s: got %+v", k, got[k])
		}
	}
	if api != 2 || q.longest > 2048 {
		t.Errorf("%d requests, longest query %d bytes; want 2, each under 2,048", api, q.longest)
	}
	t.Logf("%d keys of 20 characters: %d requests, longest query %d bytes", len(long), api, q.longest)

	// The second request failing fails the call: no half of the rows.
	q.mu.Lock()
	q.requests, q.before = 0, func(n int) {
		if n == 2 {
			s.FailNext(1, http.StatusBadRequest, 0)
		}
	}
	q.mu.Unlock()
	got, err = c.GetCustomers(t.Context(), long)
	var apiErr *bcclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || got != nil {
		t.Errorf("second request refused: %d rows, %v; want no rows and the 400", len(got), err)
	}
}
