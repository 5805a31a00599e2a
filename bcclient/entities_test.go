package bcclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
)

const orderJSON = `{"@odata.etag":"W/\"JzQ0\"","id":"bbbbbbbb-0000-4000-8000-000000000001","number":"S-ORD101001",` +
	`"externalDocumentNumber":"PO-7","orderDate":"2026-01-02","customerId":"cccccccc-0000-4000-8000-000000000001",` +
	`"customerNumber":"C00010","customerName":"Adatum","shipToName":"Adatum","shipToAddressLine1":"1 Main St",` +
	`"shipToCity":"Atlanta","shipToState":"GA","shipToCountry":"US","shipToPostCode":"31772","billToName":"Adatum",` +
	`"currencyCode":"USD","status":"Open","totalAmountIncludingTax":1234.5,"lastModifiedDateTime":"2026-01-02T03:04:05.678Z",` +
	`"salesOrderLines":[{"@odata.etag":"W/\"JzQ1\"","id":"dddddddd-0000-4000-8000-000000000001","documentId":"bbbbbbbb-0000-4000-8000-000000000001",` +
	`"sequence":10000,"itemId":"eeeeeeee-0000-4000-8000-000000000001","lineObjectNumber":"1896-S","description":"Athens Desk",` +
	`"quantity":2,"unitPrice":500,"amountIncludingTax":1234.5}]}`

func TestSalesOrderExpand(t *testing.T) {
	t.Parallel()
	handler := func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "salesOrders") {
			okJSON(`{"value":[`+orderJSON+`]}`)(w, r)
			return
		}
		okJSON(orderJSON)(w, r)
	}
	c, s, _ := newStub(t, handler)
	ctx := t.Context()
	byID, err := c.GetSalesOrder(ctx, "bbbbbbbb-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	byNumber, err := c.GetSalesOrder(ctx, "S-ORD101001")
	if err != nil {
		t.Fatal(err)
	}
	var listed, delta []bcclient.SalesOrder
	if err := c.ListSalesOrders(ctx, func(p []bcclient.SalesOrder) error { listed = append(listed, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := c.DeltaSalesOrders(ctx, since, func(p []bcclient.SalesOrder) error { delta = append(delta, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	company := "companies(" + stubCompanyID + ")/"
	want := []struct{ path, query string }{
		{company + "salesOrders(bbbbbbbb-0000-4000-8000-000000000001)", "$expand=salesOrderLines"},
		{company + "salesOrders", "$filter=number%20eq%20%27S-ORD101001%27&$expand=salesOrderLines"},
		{company + "salesOrders", "$expand=salesOrderLines"},
		{company + "salesOrders", "$filter=lastModifiedDateTime%20gt%202026-01-01T00%3A00%3A00.000Z&$expand=salesOrderLines"},
	}
	reqs := s.requests()
	if len(reqs) != len(want) {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, w := range want {
		if got := pathAfterRoot(reqs[i].Path); got != w.path || reqs[i].RawQuery != w.query || reqs[i].Method != "GET" {
			t.Errorf("request %d: %s %s?%s, want %s?%s", i, reqs[i].Method, got, reqs[i].RawQuery, w.path, w.query)
		}
	}
	for _, o := range append([]bcclient.SalesOrder{byID, byNumber}, append(listed, delta...)...) {
		if len(o.SalesOrderLines) != 1 || o.SalesOrderLines[0].Sequence != 10000 || o.SalesOrderLines[0].Quantity != 2 ||
			o.SalesOrderLines[0].LineObjectNumber != "1896-S" || o.OrderDate != "2026-01-02" || o.ShipToPostCode != "31772" ||
			o.TotalAmountIncludingTax != 1234.5 || o.ETag != `W/"JzQ0"` {
			t.Errorf("decoded %+v", o)
		}
	}
	if len(listed) != 1 || len(delta) != 1 {
		t.Errorf("%d listed, %d delta", len(listed), len(delta))
	}
}

// TestDeltaURL: the datetime is UTC, has milliseconds (truncated), and is
// not quoted.
func TestDeltaURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		since time.Time
		want  string
	}{
		{time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC), "lastModifiedDateTime gt 2026-01-02T03:04:05.678Z"},
		{time.Date(2026, 1, 2, 4, 4, 5, 678_999_999, time.FixedZone("CET", 3600)), "lastModifiedDateTime gt 2026-01-02T03:04:05.678Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "lastModifiedDateTime gt 2026-01-02T03:04:05.000Z"},
	} {
		if got := bcclient.ModifiedSinceFilter(tt.since); got != tt.want {
			t.Errorf("ModifiedSinceFilter(%v) = %q, want %q", tt.since, got, tt.want)
		}
	}

	var srv string
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("$skiptoken") == "" {
			fmt.Fprintf(w, `{"value":[%s],"@odata.nextLink":"%s%s?$filter=x&$skiptoken=2"}`, locationJSON, srv, r.URL.Path)
			return
		}
		fmt.Fprint(w, `{"value":[]}`)
	}
	c, s, _ := newStub(t, handler, func(cfg *bcclient.Config) { cfg.PageSize = 7 })
	srv = s.URL
	since := time.Date(2026, 1, 2, 4, 4, 5, 678_900_000, time.FixedZone("CET", 3600))
	rows := 0
	err := c.DeltaLocations(t.Context(), since, func(p []bcclient.Location) error { rows += len(p); return nil })
	if err != nil || rows != 1 {
		t.Fatalf("DeltaLocations: %d rows, %v", rows, err)
	}
	reqs := s.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	const wantQuery = "$filter=lastModifiedDateTime%20gt%202026-01-02T03%3A04%3A05.678Z"
	if reqs[0].RawQuery != wantQuery || pathAfterRoot(reqs[0].Path) != "companies("+stubCompanyID+")/locations" {
		t.Errorf("first page %s?%s, want ...?%s", reqs[0].Path, reqs[0].RawQuery, wantQuery)
	}
	q, _ := url.ParseQuery(reqs[0].RawQuery)
	if q.Get("$filter") != "lastModifiedDateTime gt 2026-01-02T03:04:05.678Z" || strings.Contains(reqs[0].RawQuery, "+") {
		t.Errorf("filter decodes to %q", q.Get("$filter"))
	}
	for _, r := range reqs {
		if r.Header.Get("Prefer") != "odata.maxpagesize=7" {
			t.Errorf("Prefer %q", r.Header.Get("Prefer"))
		}
	}
	if reqs[1].RawQuery != "$filter=x&$skiptoken=2" {
		t.Errorf("next link not followed verbatim: %q", reqs[1].RawQuery)
	}

	// A zero since lists everything.
	if err := c.DeltaLocations(t.Context(), time.Time{}, func([]bcclient.Location) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if r := s.requests()[2]; r.RawQuery != "" {
		t.Errorf("zero since sent %q", r.RawQuery)
	}
}

// TestEntityURLs: every entity set's get (by GUID and by code or number),
// list and delta address the right URL and decode the row.
func TestEntityURLs(t *testing.T) {
	t.Parallel()
	const id = "aaaaaaaa-0000-4000-8000-000000000001"
	rows := map[string]string{
		"customers":       `{"id":"` + id + `","number":"C1","displayName":"Adatum","blocked":" ","lastModifiedDateTime":"2026-01-02T03:04:05.678Z"}`,
		"items":           `{"id":"` + id + `","number":"1896-S","displayName":"Desk","type":"Inventory","blocked":false,"inventory":4.5,"unitPrice":649.4,"baseUnitOfMeasureCode":"PCS"}`,
		"locations":       locationJSON,
		"shipmentMethods": `{"id":"` + id + `","code":"DHL","displayName":"DHL"}`,
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		set := pathAfterRoot(r.URL.Path)
		set = set[strings.LastIndex(set, "/")+1:]
		name, _, keyed := strings.Cut(set, "(")
		if keyed {
			okJSON(rows[name])(w, r)
			return
		}
		okJSON(`{"value":[`+rows[name]+`]}`)(w, r)
	}
	c, s, _ := newStub(t, handler)
	ctx := t.Context()
	since := time.Date(2026, 5, 6, 7, 8, 9, 10_000_000, time.UTC)
	count := func(n *int) func(int) { return func(k int) { *n += k } }
	type ops struct {
		get   func(key string) (string, error) // returns the decoded key field
		list  func(add func(int)) error
		delta func(add func(int)) error
	}
	table := map[string]ops{
		"customers": {
			func(k string) (string, error) { r, err := c.GetCustomer(ctx, k); return r.Number, err },
			func(add func(int)) error {
				return c.ListCustomers(ctx, func(p []bcclient.Customer) error { add(len(p)); return nil })
			},
			func(add func(int)) error {
				return c.DeltaCustomers(ctx, since, func(p []bcclient.Customer) error { add(len(p)); return nil })
			},
		},
		"items": {
			func(k string) (string, error) { r, err := c.GetItem(ctx, k); return r.Number, err },
			func(add func(int)) error {
				return c.ListItems(ctx, func(p []bcclient.Item) error { add(len(p)); return nil })
			},
			func(add func(int)) error {
				return c.DeltaItems(ctx, since, func(p []bcclient.Item) error { add(len(p)); return nil })
			},
		},
		"locations": {
			func(k string) (string, error) { r, err := c.GetLocation(ctx, k); return r.Code, err },
			func(add func(int)) error {
				return c.ListLocations(ctx, func(p []bcclient.Location) error { add(len(p)); return nil })
			},
			func(add func(int)) error {
				return c.DeltaLocations(ctx, since, func(p []bcclient.Location) error { add(len(p)); return nil })
			},
		},
		"shipmentMethods": {
			func(k string) (string, error) { r, err := c.GetShipmentMethod(ctx, k); return r.Code, err },
			func(add func(int)) error {
				return c.ListShipmentMethods(ctx, func(p []bcclient.ShipmentMethod) error { add(len(p)); return nil })
			},
			func(add func(int)) error {
				return c.DeltaShipmentMethods(ctx, since, func(p []bcclient.ShipmentMethod) error { add(len(p)); return nil })
			},
		},
	}
	keyField := map[string]string{"customers": "number", "items": "number", "locations": "code", "shipmentMethods": "code"}
	keys := map[string]string{"customers": "C1", "items": "1896-S", "locations": "L1", "shipmentMethods": "DHL"}
	const deltaQuery = "$filter=lastModifiedDateTime%20gt%202026-05-06T07%3A08%3A09.010Z"
	for set, op := range table {
		before := len(s.requests())
		for _, key := range []string{id, keys[set]} {
			if got, err := op.get(key); err != nil || got != keys[set] {
				t.Errorf("%s: get %q = %q, %v", set, key, got, err)
			}
		}
		var listed, delta int
		if err := op.list(count(&listed)); err != nil || listed != 1 {
			t.Errorf("%s: list %d, %v", set, listed, err)
		}
		if err := op.delta(count(&delta)); err != nil || delta != 1 {
			t.Errorf("%s: delta %d, %v", set, delta, err)
		}
		base := "companies(" + stubCompanyID + ")/" + set
		want := []struct{ path, query string }{
			{base + "(" + id + ")", ""},
			{base, "$filter=" + keyField[set] + "%20eq%20%27" + url.PathEscape(keys[set]) + "%27"},
			{base, ""},
			{base, deltaQuery},
		}
		reqs := s.requests()[before:]
		for i, w := range want {
			if got := pathAfterRoot(reqs[i].Path); got != w.path || reqs[i].RawQuery != w.query {
				t.Errorf("%s request %d: %s?%s, want %s?%s", set, i, got, reqs[i].RawQuery, w.path, w.query)
			}
		}
	}
}

func TestListCompanies(t *testing.T) {
	t.Parallel()
	c, _, _ := newStub(t, nil)
	var names []string
	err := c.ListCompanies(t.Context(), func(p []bcclient.Company) error {
		for _, co := range p {
			names = append(names, co.ID+"/"+co.Name)
		}
		return nil
	})
	if err != nil || len(names) != 1 || names[0] != stubCompanyID+"/C" {
		t.Errorf("ListCompanies = %v, %v", names, err)
	}
}

// TestErrorsWrapped: every entity method names what it did.
func TestErrorsWrapped(t *testing.T) {
	t.Parallel()
	c, _, _ := newStub(t, fail(400, "BadRequest_InvalidFilter"))
	ctx := context.Background()
	none := func([]bcclient.Item) error { return nil }
	for want, err := range map[string]error{
		"bcclient: delta items: BC API: HTTP 400 BadRequest_InvalidFilter": c.DeltaItems(ctx, time.Now(), none),
		"bcclient: list items: BC API: HTTP 400":                           c.ListItems(ctx, none),
		`bcclient: get sales order "S1": BC API: HTTP 400`: func() error {
			_, err := c.GetSalesOrder(ctx, "S1")
			return err
		}(),
	} {
		if err == nil || !strings.HasPrefix(err.Error(), want) || bcclient.Classify(err) != bcclient.ClassPermanent {
			t.Errorf("err = %v, want prefix %q", err, want)
		}
	}
}
