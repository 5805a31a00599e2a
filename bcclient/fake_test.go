package bcclient_test

// Tests against the strict fake bctest: the entity sets, delta, webhook
// subscriptions, BC's limits and token expiry as bctest emulates them.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
)

// hasJSONFieldsBut is hasJSONFields without the fields skip names.
func hasJSONFieldsBut[T any](t *testing.T, row map[string]any, skip ...string) {
	t.Helper()
	row = maps(row)
	for _, s := range skip {
		row[s] = nil
	}
	hasJSONFields[T](t, row)
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestFakeItemsAndSalesOrders(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.PageSize = 7
	c := newClient(t, cfg)
	ctx := t.Context()

	for _, row := range s.Rows(bctest.SetItems)[:3] {
		hasJSONFields[bcclient.Item](t, row)
		want := asRecord[bcclient.Item](t, row)
		for _, key := range []string{row["number"].(string), row["id"].(string)} {
			if got, err := c.GetItem(ctx, key); err != nil || got != want {
				t.Errorf("GetItem(%q) = %+v, %v; want %+v", key, got, err, want)
			}
		}
	}

	lines := map[string][]map[string]any{}
	for _, l := range s.Rows(bctest.SetSalesOrderLines) {
		hasJSONFieldsBut[bcclient.SalesOrderLine](t, l)
		lines[l["documentId"].(string)] = append(lines[l["documentId"].(string)], l)
	}
	for _, row := range s.Rows(bctest.SetSalesOrders)[:3] {
		hasJSONFieldsBut[bcclient.SalesOrder](t, row, "salesOrderLines")
		want := asRecord[bcclient.SalesOrder](t, row)
		for _, l := range lines[want.ID] {
			want.SalesOrderLines = append(want.SalesOrderLines, asRecord[bcclient.SalesOrderLine](t, l))
		}
		if len(want.SalesOrderLines) != bctest.DefaultLinesPerOrder {
			t.Fatalf("order %s has %d lines in the fake", want.Number, len(want.SalesOrderLines))
		}
		for _, key := range []string{want.Number, want.ID} {
			if got, err := c.GetSalesOrder(ctx, key); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("GetSalesOrder(%q) = %+v, %v;\nwant %+v", key, got, err, want)
			}
		}
	}

	seen := map[string]bool{}
	err := c.ListSalesOrders(ctx, func(page []bcclient.SalesOrder) error {
		for _, o := range page {
			if seen[o.ID] || len(o.SalesOrderLines) != bctest.DefaultLinesPerOrder || o.SalesOrderLines[0].DocumentID != o.ID {
				t.Errorf("order %s: duplicate or %d lines", o.Number, len(o.SalesOrderLines))
			}
			seen[o.ID] = true
		}
		return nil
	})
	if err != nil || len(seen) != bctest.DefaultSalesOrders {
		t.Errorf("ListSalesOrders: %d orders, %v", len(seen), err)
	}
	n := 0
	if err := c.ListItems(ctx, func(p []bcclient.Item) error { n += len(p); return nil }); err != nil || n != bctest.DefaultItems {
		t.Errorf("ListItems: %d, %v", n, err)
	}
	var companies []bcclient.Company
	if err := c.ListCompanies(ctx, func(p []bcclient.Company) error { companies = append(companies, p...); return nil }); err != nil ||
		len(companies) != 3 || companies[0].ID != s.CompanyID() {
		t.Errorf("ListCompanies = %+v, %v", companies, err)
	}
	if _, err := c.GetSalesOrder(ctx, "SO-NOPE"); !errors.Is(err, bcclient.ErrNotFound) {
		t.Errorf("missing order: %v", err)
	}
}

// TestFakeDelta: a delta read returns exactly the rows changed after the
// newest lastModifiedDateTime of a full read.
func TestFakeDelta(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.PageSize = 5
	c := newClient(t, cfg)
	ctx := t.Context()

	var since time.Time
	newest := func(ts time.Time) {
		if ts.After(since) {
			since = ts
		}
	}
	for _, err := range []error{
		c.ListItems(ctx, func(p []bcclient.Item) error {
			for _, r := range p {
				newest(r.LastModifiedDateTime)
			}
			return nil
		}),
		c.ListCustomers(ctx, func(p []bcclient.Customer) error {
			for _, r := range p {
				newest(r.LastModifiedDateTime)
			}
			return nil
		}),
		c.ListSalesOrders(ctx, func(p []bcclient.SalesOrder) error {
			for _, r := range p {
				newest(r.LastModifiedDateTime)
			}
			return nil
		}),
		c.ListLocations(ctx, func(p []bcclient.Location) error {
			for _, r := range p {
				newest(r.LastModifiedDateTime)
			}
			return nil
		}),
		c.ListShipmentMethods(ctx, func(p []bcclient.ShipmentMethod) error {
			for _, r := range p {
				newest(r.LastModifiedDateTime)
			}
			return nil
		}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for set, keys := range map[string][]string{
		bctest.SetItems:           s.ItemNumbers()[3:5],
		bctest.SetCustomers:       s.CustomerNumbers()[7:8],
		bctest.SetSalesOrders:     s.SalesOrderNumbers()[1:4],
		bctest.SetLocations:       s.LocationCodes()[:2],
		bctest.SetShipmentMethods: s.ShipmentMethodCodes()[4:5],
	} {
		for _, k := range keys {
			if !s.Update(set, k, func(f map[string]any) { f["displayName"] = "changed " + k }) {
				t.Fatalf("no %s %s", set, k)
			}
		}
	}
	changed := map[string]bool{}
	record := func(set, key, name string) {
		if !strings.HasPrefix(name, "changed ") {
			t.Errorf("%s %s not changed but in the delta", set, key)
		}
		changed[set+"/"+key] = true
	}
	for _, err := range []error{
		c.DeltaItems(ctx, since, func(p []bcclient.Item) error {
			for _, r := range p {
				record("items", r.Number, r.DisplayName)
			}
			return nil
		}),
		c.DeltaCustomers(ctx, since, func(p []bcclient.Customer) error {
			for _, r := range p {
				record("customers", r.Number, r.DisplayName)
			}
			return nil
		}),
		c.DeltaSalesOrders(ctx, since, func(p []bcclient.SalesOrder) error {
			for _, r := range p {
				if len(r.SalesOrderLines) == 0 {
					t.Errorf("order %s without lines", r.Number)
				}
				record("salesOrders", r.Number, "changed "+r.Number)
			}
			return nil
		}),
		c.DeltaLocations(ctx, since, func(p []bcclient.Location) error {
			for _, r := range p {
				record("locations", r.Code, r.DisplayName)
			}
			return nil
		}),
		c.DeltaShipmentMethods(ctx, since, func(p []bcclient.ShipmentMethod) error {
			for _, r := range p {
				record("shipmentMethods", r.Code, r.DisplayName)
			}
			return nil
		}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(changed) != 2+1+3+2+1 {
		t.Errorf("delta returned %v", changed)
	}
}

// hookEndpoint answers BC's validation handshake and counts notifications.
func hookEndpoint(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, tok)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFakeSubscriptions(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	c := newClient(t, config(t, s))
	ctx := t.Context()
	hook := hookEndpoint(t)

	res, err := c.Resource(ctx, "customers")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: hook.URL + "/bc", Resource: res, ClientState: "state-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bcclient.CheckSubscriptionID(sub.SubscriptionID); err != nil || sub.ETag == "" || sub.ClientState != "state-1" ||
		sub.Resource != res || sub.ExpirationDateTime.Sub(sub.LastModifiedDateTime) != bctest.SubscriptionLifetime {
		t.Fatalf("created %+v (%v)", sub, err)
	}
	renewed, err := c.RenewSubscription(ctx, sub)
	if err != nil || renewed.ETag == sub.ETag || renewed.SubscriptionID != sub.SubscriptionID {
		t.Fatalf("renewed %+v, %v", renewed, err)
	}
	// The old ETag is stale now.
	if _, err := c.RenewSubscription(ctx, sub); !errors.Is(err, bcclient.ErrChanged) || bcclient.Classify(err) != bcclient.ClassTransient {
		t.Errorf("stale renew: %v", err)
	}
	if err := c.DeleteSubscription(ctx, sub); !errors.Is(err, bcclient.ErrChanged) {
		t.Errorf("stale delete: %v", err)
	}
	list, err := c.ListSubscriptions(ctx)
	if err != nil || len(list) != 1 || list[0].ETag != renewed.ETag || list[0].ClientState != "state-1" {
		t.Fatalf("ListSubscriptions = %+v, %v", list, err)
	}
	if err := c.DeleteSubscription(ctx, list[0]); err != nil {
		t.Fatal(err)
	}
	if got := s.Subscriptions(); len(got) != 0 {
		t.Errorf("left %+v", got)
	}
	for _, err := range []error{
		c.DeleteSubscription(ctx, renewed),
		func() error { _, err := c.RenewSubscription(ctx, renewed); return err }(),
	} {
		if !errors.Is(err, bcclient.ErrNotFound) || bcclient.Classify(err) != bcclient.ClassNotFound {
			t.Errorf("gone: %v", err)
		}
	}
	// "*" renews whatever the ETag.
	sub2, err := c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: hook.URL, Resource: res})
	if err != nil {
		t.Fatal(err)
	}
	sub2.ETag = "*"
	if _, err := c.RenewSubscription(ctx, sub2); err != nil {
		t.Errorf("renew with *: %v", err)
	}

	// A notification URL that fails the handshake is refused, once.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "nope") }))
	t.Cleanup(bad.Close)
	before := s.Stats().DataRequests[bctest.SetSubscriptions]
	_, err = c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: bad.URL, Resource: res})
	var apiErr *bcclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || bcclient.Classify(err) != bcclient.ClassPermanent {
		t.Errorf("failed handshake: %v", err)
	}
	if n := s.Stats().DataRequests[bctest.SetSubscriptions] - before; n != 1 {
		t.Errorf("%d requests for a refused subscription", n)
	}
}

// TestFakeBudgetHonoured: bctest's sliding-window budget answers 429 with
// Retry-After; the client waits (on a clock it shares with the fake) and
// the listing completes, every row once.
func TestFakeBudgetHonoured(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s := fake(t, bctest.Options{Budget: 6, BudgetWindow: 10 * time.Second, Now: clock.Now})
	lim := &observingLimiter{}
	cfg := config(t, s)
	cfg.PageSize = 10
	cfg.Limiter = lim
	c := newClient(t, cfg)
	bcclient.SetClock(c, clock.Now, clock.Sleep)
	seen := map[string]bool{}
	err := c.ListCustomers(t.Context(), func(p []bcclient.Customer) error {
		for _, r := range p {
			if seen[r.ID] {
				t.Errorf("duplicate %s", r.Number)
			}
			seen[r.ID] = true
		}
		return nil
	})
	if err != nil || len(seen) != bctest.DefaultCustomers {
		t.Fatalf("%d customers, %v", len(seen), err)
	}
	st := s.Stats()
	calls := lim.throttled()
	if st.Throttled == 0 || int64(len(calls)) != st.Throttled || len(clock.slept()) != len(calls) {
		t.Errorf("%d 429s, %d Throttled calls, sleeps %v", st.Throttled, len(calls), clock.slept())
	}
	for i, d := range clock.slept() {
		if d < calls[i] || calls[i] <= 0 {
			t.Errorf("slept %v for Retry-After %v", d, calls[i])
		}
	}
}

// TestFakeConcurrencyLimit: with a local limiter of 5 slots, 50 goroutines
// never meet bctest's queue: no 429, and at most 5 requests served at once.
func TestFakeConcurrencyLimit(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{MaxConcurrent: 5, MaxQueued: -1})
	s.SetLatency(2 * time.Millisecond)
	cfg := config(t, s)
	cfg.Limiter = &limiter{sem: make(chan struct{}, 5)}
	cfg.PageSize = 20
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				err = c.ListCustomers(t.Context(), func([]bcclient.Customer) error { return nil })
			} else {
				_, err = c.GetItem(t.Context(), s.ItemNumbers()[i%bctest.DefaultItems])
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Throttled != 0 || st.PeakConcurrent > 5 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestFakeTokenExpiresMidListing: a token rejected between two pages is
// replaced once, and the listing completes without a duplicate or a gap.
func TestFakeTokenExpiresMidListing(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.PageSize = 10
	c := newClient(t, cfg)
	seen := map[string]bool{}
	pages := 0
	err := c.ListCustomers(t.Context(), func(p []bcclient.Customer) error {
		if pages++; pages == 5 {
			s.ExpireTokens()
		}
		for _, r := range p {
			if seen[r.ID] {
				t.Errorf("duplicate %s", r.Number)
			}
			seen[r.ID] = true
		}
		return nil
	})
	if err != nil || len(seen) != bctest.DefaultCustomers {
		t.Fatalf("%d customers, %v", len(seen), err)
	}
	if st := s.Stats(); st.TokenRequests != 2 || st.Unauthorized != 1 {
		t.Errorf("stats %+v, want 2 token requests and one 401", st)
	}
}

// TestFakeListingRequests: 100,000 rows with maxpagesize=1000 take exactly
// 100 data requests (about 30 s under the race detector).
func TestFakeListingRequests(t *testing.T) {
	t.Parallel()
	rows, pageSize := 100_000, 1000
	s := fake(t, bctest.Options{Customers: rows, SalesOrders: -1})
	cfg := config(t, s)
	cfg.PageSize = pageSize
	c := newClient(t, cfg)
	seen := make(map[string]bool, rows)
	err := c.ListCustomers(t.Context(), func(p []bcclient.Customer) error {
		for _, r := range p {
			seen[r.ID] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().DataRequests[bctest.SetCustomers]; len(seen) != rows || got != 100 {
		t.Errorf("%d distinct rows in %d data requests, want %d in 100", len(seen), got, rows)
	}
}

// BenchmarkListCustomers reports records/s and allocations per record of
// a full listing from bctest.
func BenchmarkListCustomers(b *testing.B) {
	const rows = 20_000
	_, c := benchClient(b, rows, 1000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := c.ListCustomers(context.Background(), func(p []bcclient.Customer) error { n += len(p); return nil }); err != nil || n != rows {
			b.Fatal(n, err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	records := float64(rows) * float64(b.N)
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	// Client and fake share the process: the fake's allocations count too.
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/records, "allocs/record")
}

// BenchmarkGetCustomersBatch reports records/s and requests/s of
// GetCustomers with MaxBatchKeys numbers per call, out of 20,000 customers
// in bctest.
func BenchmarkGetCustomersBatch(b *testing.B) {
	const rows = 20_000
	s, c := benchClient(b, rows, 0)
	numbers := s.CustomerNumbers()
	keys := make([]string, bcclient.MaxBatchKeys)
	s.ResetStats()
	calls := 0
	for b.Loop() {
		for i := range keys {
			keys[i] = numbers[(calls*bcclient.MaxBatchKeys+i)*7919%rows] // spread over the set
		}
		calls++
		got, err := c.GetCustomers(context.Background(), keys)
		if err != nil || len(got) != len(keys) {
			b.Fatal(len(got), err)
		}
	}
	b.StopTimer()
	if n := s.Stats().APIRequests; n != int64(calls) {
		b.Fatalf("%d requests for %d calls", n, calls)
	}
	b.ReportMetric(float64(calls*bcclient.MaxBatchKeys)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(calls)/b.Elapsed().Seconds(), "requests/s")
}

// benchClient starts bctest with rows customers, no budget, and a client
// (pageSize 0: the default) that has looked up its company.
func benchClient(b *testing.B, rows, pageSize int) (*bctest.Server, *bcclient.Client) {
	b.Helper()
	s := bctest.NewServer(bctest.Options{Customers: rows, SalesOrders: -1, Budget: -1})
	b.Cleanup(s.Close)
	c, err := bcclient.New(bcclient.Config{
		APIURL: s.URL(), TenantID: s.TenantID(), Environment: s.Environment(), CompanyName: s.CompanyName(),
		TokenSource: bcclient.NewTokenSource(context.Background(), credentials(s)), PageSize: pageSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.CompanyID(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s, c
}
