package bctest_test

import (
	"math"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

var (
	guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	etagRE = regexp.MustCompile(`^W/".+"$`)
)

// checkRow checks what every API v2.0 row has, and the types of fields.
func checkRow(t *testing.T, set string, r map[string]any, str, num, boolean []string) {
	t.Helper()
	if id, _ := r["id"].(string); !guidRE.MatchString(id) {
		t.Errorf("%s: id %v", set, r["id"])
	}
	if m, _ := r["lastModifiedDateTime"].(string); !timeRE.MatchString(m) {
		t.Errorf("%s: lastModifiedDateTime %v", set, r["lastModifiedDateTime"])
	}
	if e, _ := r["@odata.etag"].(string); !etagRE.MatchString(e) {
		t.Errorf("%s: @odata.etag %v", set, r["@odata.etag"])
	}
	for _, f := range str {
		if _, ok := r[f].(string); !ok {
			t.Errorf("%s: %s = %#v, want a string", set, f, r[f])
		}
	}
	for _, f := range num {
		if _, ok := r[f].(float64); !ok {
			t.Errorf("%s: %s = %#v, want a number", set, f, r[f])
		}
	}
	for _, f := range boolean {
		if _, ok := r[f].(bool); !ok {
			t.Errorf("%s: %s = %#v, want a bool", set, f, r[f])
		}
	}
}

func TestItems(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	rows, _ := listAll(t, s, tok, companyPath(s)+"/items", 20000)
	if len(rows) != bctest.DefaultItems || rows[0]["number"] != "I00001" {
		t.Fatalf("%d items, first %v", len(rows), rows[0]["number"])
	}
	types := map[string]int{}
	for _, r := range rows {
		checkRow(t, "items", r, []string{"number", "displayName", "type", "itemCategoryCode", "gtin", "baseUnitOfMeasureCode"},
			[]string{"inventory", "unitPrice", "unitCost"}, []string{"blocked"})
		typ := r["type"].(string)
		types[typ]++
		switch gtin := r["gtin"].(string); {
		case typ == "Inventory" && !regexp.MustCompile(`^\d{13}$`).MatchString(gtin):
			t.Errorf("inventory item gtin %q", gtin)
		case typ != "Inventory" && (gtin != "" || r["inventory"] != 0.0):
			t.Errorf("%s item with gtin %q, inventory %v", typ, gtin, r["inventory"])
		}
		if r["unitCost"].(float64) > r["unitPrice"].(float64) {
			t.Errorf("item %v sells at a loss", r["number"])
		}
	}
	for typ := range types {
		if !slices.Contains([]string{"Inventory", "Service", "Non-Inventory"}, typ) {
			t.Errorf("item type %q", typ)
		}
	}
	if types["Inventory"] == 0 || types["Service"] == 0 {
		t.Errorf("types %v", types)
	}
	if !reflect.DeepEqual(keysOf(rows, "number"), s.ItemNumbers()) {
		t.Error("ItemNumbers differs from the list")
	}

	r := send(t, s, tok, http.MethodGet, filterPath(companyPath(s)+"/items", "number eq 'I00007'"), "")
	if got := values(t, r.body); len(got) != 1 || got[0]["number"] != "I00007" {
		t.Errorf("filter on number: %v", r.body)
	}
	id := rows[3]["id"].(string)
	if r := send(t, s, tok, http.MethodGet, companyPath(s)+"/items("+id+")", ""); r.status != 200 || r.body["number"] != rows[3]["number"] {
		t.Errorf("get item: %d %v", r.status, r.body)
	}
	if r := send(t, s, tok, http.MethodGet, companyPath(s)+"/items?$expand=salesOrderLines", ""); r.status != 400 {
		t.Errorf("$expand on items: %d", r.status)
	}

	before, _ := s.Record(bctest.SetItems, "I00002")
	if !s.Update(bctest.SetItems, "I00002", func(f map[string]any) { f["unitPrice"] = 1.5 }) {
		t.Fatal("Update failed")
	}
	after, _ := s.Record(bctest.SetItems, "I00002")
	if after["unitPrice"] != 1.5 || after["@odata.etag"] == before["@odata.etag"] || after["lastModifiedDateTime"] == before["lastModifiedDateTime"] {
		t.Errorf("after Update: %v", after)
	}
	if n := s.Stats().DataRequests[bctest.SetItems]; n != 4 {
		t.Errorf("DataRequests[items] = %d, want 4", n)
	}
}

func TestSalesOrders(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	customers := map[string]map[string]any{}
	for _, c := range s.Rows(bctest.SetCustomers) {
		customers[c["id"].(string)] = c
	}
	items := map[string]map[string]any{}
	for _, it := range s.Rows(bctest.SetItems) {
		items[it["id"].(string)] = it
	}

	orders, pages := listAll(t, s, tok, companyPath(s)+"/salesOrders?$expand=salesOrderLines", 6)
	if len(orders) != bctest.DefaultSalesOrders || pages != 4 {
		t.Fatalf("%d orders in %d pages", len(orders), pages)
	}
	if !reflect.DeepEqual(keysOf(orders, "number"), s.SalesOrderNumbers()) {
		t.Error("SalesOrderNumbers differs from the list")
	}
	for _, o := range orders {
		checkRow(t, "salesOrders", o, []string{"number", "externalDocumentNumber", "orderDate", "customerId", "customerNumber",
			"customerName", "shipToName", "shipToAddressLine1", "shipToCity", "shipToState", "shipToCountry", "shipToPostCode",
			"billToName", "currencyCode", "status"}, []string{"totalAmountIncludingTax"}, nil)
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\d$`).MatchString(o["orderDate"].(string)) {
			t.Errorf("orderDate %v", o["orderDate"])
		}
		if !slices.Contains([]string{"Draft", "Open", "Released"}, o["status"].(string)) {
			t.Errorf("status %v", o["status"])
		}
		c := customers[o["customerId"].(string)]
		if c == nil || c["number"] != o["customerNumber"] || c["displayName"] != o["customerName"] || o["billToName"] != c["displayName"] {
			t.Errorf("order %v: customer %v %v %v does not match", o["number"], o["customerId"], o["customerNumber"], o["customerName"])
		}
		lines, ok := o["salesOrderLines"].([]any)
		if !ok || len(lines) != bctest.DefaultLinesPerOrder {
			t.Fatalf("order %v: lines %v", o["number"], o["salesOrderLines"])
		}
		var total float64
		for i, raw := range lines {
			l := raw.(map[string]any)
			checkRow(t, "salesOrderLines", l, []string{"documentId", "itemId", "lineObjectNumber", "description"},
				[]string{"sequence", "quantity", "unitPrice", "amountIncludingTax"}, nil)
			it := items[l["itemId"].(string)]
			if l["documentId"] != o["id"] || l["sequence"] != float64((i+1)*10000) || it == nil ||
				it["number"] != l["lineObjectNumber"] || it["displayName"] != l["description"] || it["unitPrice"] != l["unitPrice"] {
				t.Errorf("line %d of %v: %v", i, o["number"], l)
			}
			total += l["amountIncludingTax"].(float64)
		}
		if math.Abs(total-o["totalAmountIncludingTax"].(float64)) > 0.005 {
			t.Errorf("order %v: total %v, lines sum to %v", o["number"], o["totalAmountIncludingTax"], total)
		}
	}

	// Without $expand, no lines; the lines endpoint serves the same lines.
	plain, _ := listAll(t, s, tok, companyPath(s)+"/salesOrders", 100)
	if _, ok := plain[0]["salesOrderLines"]; ok {
		t.Error("lines without $expand")
	}
	o := orders[2]
	linesPath := companyPath(s) + "/salesOrders(" + o["id"].(string) + ")/salesOrderLines"
	lines, pages := listAll(t, s, tok, linesPath, 2)
	if pages != 2 || !reflect.DeepEqual(anySlice(lines), o["salesOrderLines"]) {
		t.Errorf("lines endpoint: %d pages, %v", pages, lines)
	}
	lineID := lines[1]["id"].(string)
	if r := send(t, s, tok, http.MethodGet, linesPath+"("+lineID+")", ""); r.status != 200 || r.body["id"] != lineID {
		t.Errorf("get line: %d %v", r.status, r.body)
	}
	r := send(t, s, tok, http.MethodGet, companyPath(s)+"/salesOrders("+o["id"].(string)+")?$expand=salesOrderLines", "")
	if r.status != 200 || !reflect.DeepEqual(r.body["salesOrderLines"], o["salesOrderLines"]) {
		t.Errorf("get with $expand: %d %v", r.status, r.body)
	}

	otherLine := orders[3]["salesOrderLines"].([]any)[0].(map[string]any)["id"].(string)
	errs := []struct {
		name, path string
		status     int
		code       string
	}{
		{"line of another order", linesPath + "(" + otherLine + ")", 404, "Internal_RecordNotFound"},
		{"lines of an unknown order", companyPath(s) + "/salesOrders(00000000-0000-4000-8000-000000000001)/salesOrderLines", 404, "Internal_RecordNotFound"},
		{"lines at company level", companyPath(s) + "/salesOrderLines", 404, "BadRequest_NotFound"},
		{"lines of a customer", companyPath(s) + "/customers(" + o["customerId"].(string) + ")/salesOrderLines", 404, "BadRequest_NotFound"},
		{"expand unknown", companyPath(s) + "/salesOrders?$expand=customer", 400, "BadRequest_NotSupported"},
		{"expand twice", companyPath(s) + "/salesOrders?$expand=salesOrderLines&$expand=salesOrderLines", 400, "BadRequest_InvalidRequestUrl"},
		{"expand on lines", linesPath + "?$expand=salesOrderLines", 400, "BadRequest_NotSupported"},
		{"skiptoken of another order", "", 400, "BadRequest_InvalidSkipToken"},
	}
	first := send(t, s, tok, http.MethodGet, linesPath, "", "Prefer", "odata.maxpagesize=1")
	next := first.body["@odata.nextLink"].(string)
	errs[len(errs)-1].path = companyPath(s) + "/salesOrders(" + orders[3]["id"].(string) + ")/salesOrderLines?" + next[len(s.URL()+linesPath)+1:]
	for _, tt := range errs {
		if r := send(t, s, tok, http.MethodGet, tt.path, ""); r.status != tt.status || errorCode(r.body) != tt.code {
			t.Errorf("%s: %d %v, want %d %s", tt.name, r.status, r.body, tt.status, tt.code)
		}
	}

	// A line changes on its own.
	beforeLine, _ := s.Record(bctest.SetSalesOrderLines, lineID)
	if !s.Update(bctest.SetSalesOrderLines, lineID, func(f map[string]any) { f["quantity"] = 99.0; f["id"] = "hack" }) {
		t.Fatal("Update of a line failed")
	}
	r = send(t, s, tok, http.MethodGet, linesPath+"("+lineID+")", "")
	if r.body["quantity"] != 99.0 || r.body["id"] != lineID || r.body["@odata.etag"] == beforeLine["@odata.etag"] {
		t.Errorf("updated line %v", r.body)
	}
	if s.Rename(bctest.SetSalesOrderLines, lineID, "X") {
		t.Error("a line was renamed")
	}
	st := s.Stats().DataRequests
	// 4 pages expanded, 1 plain, 1 get, 2 refused lists (a list counts
	// before its query is checked).
	if st[bctest.SetSalesOrders] != 8 || st[bctest.SetSalesOrderLines] < 4 {
		t.Errorf("DataRequests %v", st)
	}
}

func anySlice(rows []map[string]any) []any {
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return out
}

func TestNewEntitiesDeterministic(t *testing.T) {
	t.Parallel()
	a, b, c := bctest.New(bctest.Options{Seed: 7}), bctest.New(bctest.Options{Seed: 7}), bctest.New(bctest.Options{Seed: 8})
	for _, set := range []string{bctest.SetItems, bctest.SetSalesOrders, bctest.SetSalesOrderLines} {
		if len(a.Rows(set)) == 0 || !reflect.DeepEqual(a.Rows(set), b.Rows(set)) {
			t.Errorf("%s differs for the same seed", set)
		}
		if reflect.DeepEqual(a.Rows(set), c.Rows(set)) {
			t.Errorf("%s is the same for another seed", set)
		}
	}
	// Items and orders are generated after the older sets: asking for none
	// leaves those as they were.
	none := bctest.New(bctest.Options{Seed: 7, Items: -1, SalesOrders: -1})
	for _, set := range []string{bctest.SetLocations, bctest.SetShipmentMethods, bctest.SetCustomers, "CustomerPriceGroups"} {
		if !reflect.DeepEqual(a.Rows(set), none.Rows(set)) {
			t.Errorf("%s changed with the new sets", set)
		}
	}
	if len(none.Rows(bctest.SetItems)) != 0 || len(none.Rows(bctest.SetSalesOrders)) != 0 {
		t.Error("negative counts gave rows")
	}

	sized := bctest.New(bctest.Options{Items: 4, SalesOrders: 5, LinesPerOrder: 7})
	if len(sized.Rows(bctest.SetItems)) != 4 || len(sized.Rows(bctest.SetSalesOrders)) != 5 || len(sized.Rows(bctest.SetSalesOrderLines)) != 35 {
		t.Errorf("sized: %d items, %d orders, %d lines", len(sized.Rows(bctest.SetItems)),
			len(sized.Rows(bctest.SetSalesOrders)), len(sized.Rows(bctest.SetSalesOrderLines)))
	}
	if n := len(bctest.New(bctest.Options{Customers: -1}).Rows(bctest.SetSalesOrders)); n != 0 {
		t.Errorf("%d orders without customers", n)
	}
	noItems := bctest.New(bctest.Options{Items: -1})
	if len(noItems.Rows(bctest.SetSalesOrders)) != bctest.DefaultSalesOrders || len(noItems.Rows(bctest.SetSalesOrderLines)) != 0 {
		t.Error("without items, orders should have no lines")
	}
	if n := len(bctest.New(bctest.Options{LinesPerOrder: -1}).Rows(bctest.SetSalesOrderLines)); n != 0 {
		t.Errorf("LinesPerOrder -1 gave %d lines", n)
	}
}
