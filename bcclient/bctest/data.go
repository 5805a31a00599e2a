package bctest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// timeLayout is BC's lastModifiedDateTime: UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z"

// zeroGUID is what BC returns for an empty GUID field.
const zeroGUID = "00000000-0000-0000-0000-000000000000"

// company is one BC company and its data.
type company struct {
	id, name string
	created  time.Time
	tables   map[string]*table // by entity set (API v2.0) or service name (OData V4)
}

// table is one entity set. Rows are never added nor removed after
// generation, so an index into rows is stable (next links and at rely on
// it).
type table struct {
	keyField string // "code", "number", "Code", or "id" for lines
	eqField  string // the field $filter accepts "eq" on; "" for none
	rows     []*row // in key order
	byKey    map[string]*row
	byID     map[string]*row // by lower-case id
	// at indexes eqField: the positions in rows of the rows whose eqField
	// holds each value, ascending; nil when eqField is "". Every write of
	// a row's eqField keeps it up to date (add, rekey, reindex).
	at map[string][]int
}

func newTable(keyField, eqField string) *table {
	t := &table{keyField: keyField, eqField: eqField, byKey: map[string]*row{}, byID: map[string]*row{}}
	if eqField != "" {
		t.at = map[string][]int{}
	}
	return t
}

func (t *table) add(r *row) {
	t.rows = append(t.rows, r)
	t.byKey[r.key] = r
	if r.id != "" {
		t.byID[strings.ToLower(r.id)] = r
	}
	if v, ok := t.eqValue(r); ok {
		t.at[v] = append(t.at[v], len(t.rows)-1) // the largest position yet
	}
}

// rekey changes the key of r. Call reindex after touching r.
func (t *table) rekey(r *row, key string) {
	delete(t.byKey, r.key)
	r.key = key
	t.byKey[key] = r
}

// eqValue returns the value of r's eqField, if it is one $filter can
// match: a string.
func (t *table) eqValue(r *row) (string, bool) {
	if t.at == nil {
		return "", false
	}
	v, ok := r.fields[t.eqField].(string)
	return v, ok
}

// reindex moves r in at after a change of its fields: was and indexed are
// eqValue(r) before the change.
func (t *table) reindex(r *row, was string, indexed bool) {
	now, ok := t.eqValue(r)
	if ok == indexed && now == was {
		return
	}
	i := slices.Index(t.rows, r)
	if indexed {
		pos := t.at[was]
		if j, found := slices.BinarySearch(pos, i); found {
			pos = slices.Delete(pos, j, j+1)
		}
		if len(pos) == 0 {
			delete(t.at, was)
		} else {
			t.at[was] = pos
		}
	}
	if ok {
		pos := t.at[now]
		j, _ := slices.BinarySearch(pos, i)
		t.at[now] = slices.Insert(pos, j, i)
	}
}

// find returns the row whose key or id is key.
func (t *table) find(key string) *row {
	if r := t.byKey[key]; r != nil {
		return r
	}
	return t.byID[strings.ToLower(key)]
}

// row is one record. fields holds everything served except @odata.etag
// and the lines of a sales order.
type row struct {
	id       string // SystemId; not served for OData V4 rows
	key      string
	keyField string
	fields   map[string]any
	version  int
	modified time.Time
	api      bool   // an API v2.0 row, which serves id and lastModifiedDateTime
	lines    []*row // a sales order's lines, in sequence order
	// cache holds json() marshalled, filled by readers (under Server.mu
	// read-locked) and cleared by touch (under Server.mu locked).
	cache atomic.Pointer[[]byte]
}

// raw returns the row as served, marshalled. Call it with Server.mu held.
func (r *row) raw() []byte {
	if p := r.cache.Load(); p != nil {
		return *p
	}
	b, _ := json.Marshal(r.json())
	r.cache.Store(&b)
	return b
}

// json returns the row as served.
func (r *row) json() map[string]any {
	m := maps.Clone(r.fields)
	m["@odata.etag"] = r.etag()
	return m
}

// jsonExpanded returns a sales order with its lines inline, as
// $expand=salesOrderLines serves it.
func (r *row) jsonExpanded() map[string]any {
	m := r.json()
	lines := make([]map[string]any, len(r.lines))
	for i, l := range r.lines {
		lines[i] = l.json()
	}
	m[SetSalesOrderLines] = lines
	return m
}

func (r *row) etag() string { return etagOf(r.id, r.version) }

// etagOf is a weak ETag in BC's form, W/"<base64 of '<len>;<number>;00;'>",
// of one version of a record.
func etagOf(id string, version int) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s:%d", id, version)
	n := strconv.FormatUint(h.Sum64(), 10)
	return `W/"` + base64.StdEncoding.EncodeToString([]byte("'"+strconv.Itoa(len(n))+";"+n+";00;'")) + `"`
}

// touch records a change at now: a later lastModifiedDateTime (by at least
// one millisecond) and a new ETag.
func (r *row) touch(now time.Time) {
	t := now.UTC().Truncate(time.Millisecond)
	if !t.After(r.modified) {
		t = r.modified.Add(time.Millisecond)
	}
	r.modified = t
	r.version++
	r.cache.Store(nil)
	if r.api {
		r.fields["id"] = r.id
		r.fields["lastModifiedDateTime"] = t.Format(timeLayout)
	}
	r.fields[r.keyField] = r.key
}

func (c *company) find(set, key string) *row {
	t := c.tables[set]
	if t == nil {
		return nil
	}
	return t.find(key)
}

// gen generates one data set deterministically.
type gen struct {
	r    *rand.Rand
	base time.Time
}

func (g *gen) guid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.r.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func pick[T any](g *gen, s []T) T { return s[g.r.IntN(len(s))] }

// newRow makes a row last modified some time after the data set's base time.
func (g *gen) newRow(keyField, key string, api bool, fields map[string]any) *row {
	fields[keyField] = key
	r := &row{id: g.guid(), key: key, keyField: keyField, fields: fields, api: api}
	r.modified = g.base.Add(time.Duration(g.r.Int64N(int64(90 * 24 * time.Hour)))).Truncate(time.Millisecond)
	r.version = 1
	if api {
		fields["id"] = r.id
		fields["lastModifiedDateTime"] = r.modified.Format(timeLayout)
	}
	return r
}

type place struct{ city, state, zip string }

var (
	places = []place{
		{"Atlanta", "GA", "30301"}, {"Chicago", "IL", "60601"}, {"Miami", "FL", "33101"},
		{"Seattle", "WA", "98101"}, {"Denver", "CO", "80201"}, {"Boston", "MA", "02108"},
		{"Dallas", "TX", "75201"}, {"Phoenix", "AZ", "85001"}, {"Portland", "OR", "97201"},
		{"Nashville", "TN", "37201"}, {"Minneapolis", "MN", "55401"}, {"Columbus", "OH", "43004"},
	}
	streets = []string{"Main Street", "Oak Avenue", "Pine Road", "Maple Drive", "Cedar Lane",
		"Elm Street", "Lakeview Boulevard", "Industrial Parkway", "Commerce Way", "Harbor Road"}
	locationKinds = []string{"Warehouse", "Store", "Distribution Center", "Outlet", "Depot"}
	shipNames     = []string{"Ground", "Next Day Air", "Second Day Air", "Freight", "Pickup at Store",
		"Ex Warehouse", "Free on Board", "Cost Insurance Freight", "Delivered Duty Paid", "Overnight"}
	firstNames = []string{"Alicia", "Ben", "Chloé", "David", "Elena", "Farid", "Grace", "Hiro",
		"Ines", "Jamal", "Katarzyna", "Liam", "Maya", "Noah", "Olivia", "Pedro"}
	lastNames = []string{"Anderson", "Brown", "Chen", "Dubois", "Evans", "Fischer", "García",
		"Hansen", "Ito", "Johnson", "Kowalski", "Lee", "Martin", "Nguyen", "O'Brien", "Patel"}
	companyStems = []string{"Adatum", "Trey Research", "Fabrikam", "Contoso", "Litware",
		"Northwind Traders", "Tailspin Toys", "Wide World Importers", "Alpine Ski House", "Coho Winery"}
	companySuffixes = []string{"Corporation", "Inc.", "LLC", "& Co.", "Group"}
	priceGroupNames = []string{"Retail", "Wholesale", "Export", "Distributor", "Government",
		"Education", "Nonprofit", "VIP", "Online", "Staff"}
)

// slug makes a DNS label of s.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (g *gen) phone() string {
	return fmt.Sprintf("+1 %03d-555-%04d", 200+g.r.IntN(700), g.r.IntN(10000))
}

// address fills the address fields shared by locations and customers.
func (g *gen) address(f map[string]any) {
	p := pick(g, places)
	f["addressLine1"] = fmt.Sprintf("%d %s", 1+g.r.IntN(9999), pick(g, streets))
	f["addressLine2"] = ""
	if g.r.IntN(4) == 0 {
		f["addressLine2"] = fmt.Sprintf("Suite %d", 100+g.r.IntN(900))
	}
	f["city"], f["state"], f["postalCode"], f["country"] = p.city, p.state, p.zip, "US"
}

// generate builds the companies: the first holds the data, the other two
// are empty decoys whose names resemble it.
func generate(o Options) []*company {
	g := &gen{
		r:    rand.New(rand.NewPCG(uint64(o.Seed), 0x9e3779b97f4a7c15)),
		base: time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC),
	}
	decoy := "My Company"
	if o.CompanyName == decoy {
		decoy = "bctest Empty Company"
	}
	names := []string{o.CompanyName, o.CompanyName + " (Copy)", decoy}
	var companies []*company
	for i, name := range names {
		c := &company{id: g.guid(), name: name, created: g.base.Add(-time.Duration(i+1) * 24 * time.Hour)}
		c.tables = map[string]*table{
			SetShipmentMethods:  newTable("code", "code"),
			SetLocations:        newTable("code", "code"),
			SetCustomers:        newTable("number", "number"),
			SetItems:            newTable("number", "number"),
			SetSalesOrders:      newTable("number", "number"),
			SetSalesOrderLines:  newTable("id", ""),
			o.PriceGroupService: newTable("Code", "Code"),
		}
		companies = append(companies, c)
	}
	t := companies[0].tables

	for i := 1; i <= o.ShipmentMethods; i++ {
		name := shipNames[(i-1)%len(shipNames)]
		if i > len(shipNames) {
			name += " " + strconv.Itoa(i)
		}
		code := fmt.Sprintf("SM%03d", i)
		t[SetShipmentMethods].add(g.newRow("code", code, true, map[string]any{"displayName": name}))
	}

	for i := 1; i <= o.Locations; i++ {
		code := fmt.Sprintf("L%04d", i)
		f := map[string]any{}
		g.address(f)
		f["displayName"] = fmt.Sprintf("%s %s", f["city"], pick(g, locationKinds))
		f["contact"] = pick(g, firstNames) + " " + pick(g, lastNames)
		f["phoneNumber"] = g.phone()
		f["email"] = strings.ToLower(code) + "@cronus.example.com"
		f["website"] = ""
		t[SetLocations].add(g.newRow("code", code, true, f))
	}

	paymentTerms := []string{g.guid(), g.guid(), g.guid()}
	for i := 1; i <= o.Customers; i++ {
		number := fmt.Sprintf("C%06d", i)
		f := map[string]any{}
		if i%2 == 1 {
			stem := pick(g, companyStems)
			f["type"] = "Company"
			f["displayName"] = stem + " " + pick(g, companySuffixes)
			f["email"] = "orders@" + slug(stem) + ".example.com"
			f["website"] = "www." + slug(stem) + ".example.com"
		} else {
			first, last := pick(g, firstNames), pick(g, lastNames)
			f["type"] = "Person"
			f["displayName"] = first + " " + last
			f["email"] = slug(first) + "." + slug(last) + "@example.com"
			f["website"] = ""
		}
		g.address(f)
		f["phoneNumber"] = g.phone()
		f["salespersonCode"] = pick(g, []string{"PS", "JR", "BC", ""})
		f["balanceDue"] = float64(g.r.IntN(5_000_000)) / 100
		f["creditLimit"] = float64(g.r.IntN(20) * 1000)
		f["taxLiable"] = g.r.IntN(2) == 0
		f["currencyId"] = zeroGUID
		f["currencyCode"] = pick(g, []string{"", "", "", "CAD", "EUR"})
		f["paymentTermsId"] = pick(g, paymentTerms)
		f["shipmentMethodId"] = zeroGUID
		if sm := t[SetShipmentMethods].rows; len(sm) > 0 && g.r.IntN(3) > 0 {
			f["shipmentMethodId"] = pick(g, sm).id
		}
		f["blocked"] = " "
		if g.r.IntN(10) == 0 {
			f["blocked"] = pick(g, []string{"Ship", "Invoice", "All"})
		}
		t[SetCustomers].add(g.newRow("number", number, true, f))
	}

	for i := 1; i <= o.PriceGroups; i++ {
		code := fmt.Sprintf("PG%03d", i)
		desc := priceGroupNames[(i-1)%len(priceGroupNames)]
		if i > len(priceGroupNames) {
			desc += " " + strconv.Itoa(i)
		}
		t[o.PriceGroupService].add(g.newRow("Code", code, false, map[string]any{
			"Description":        desc + " customers",
			"Allow_Invoice_Disc": true, "Allow_Line_Disc": true, "Price_Includes_VAT": false,
		}))
	}

	// Items and sales orders come last, so that adding them left the
	// data generated before them unchanged for a given seed.
	for i := 1; i <= o.Items; i++ {
		t[SetItems].add(g.item(fmt.Sprintf("I%05d", i)))
	}
	if customers := t[SetCustomers].rows; len(customers) > 0 {
		for i := 1; i <= o.SalesOrders; i++ {
			order := g.salesOrder(fmt.Sprintf("S-ORD%06d", 101000+i), pick(g, customers), t[SetItems].rows, o.LinesPerOrder)
			t[SetSalesOrders].add(order)
			for _, l := range order.lines {
				t[SetSalesOrderLines].add(l)
			}
		}
	}
	return companies
}

var (
	itemAdjectives = []string{"ATHENS", "PARIS", "ROME", "TOKYO", "MEXICO", "MUNICH", "SEOUL", "SYDNEY", "BERLIN", "LONDON"}
	itemProducts   = []string{"Desk", "Guest Chair, black", "Swivel Chair, blue", "Whiteboard", "Lamp",
		"Storage Unit", "Conference Table", "Mobile Pedestal", "Bookcase", "Side Board"}
	itemServices   = []string{"Installation", "Consulting Hour", "Assembly", "Delivery Service", "Training Day"}
	itemCategories = []string{"FURNITURE", "CHAIR", "DESK", "TABLE", "MISC", ""}
)

// cents turns a number of cents into currency units.
func cents(n int64) float64 { return float64(n) / 100 }

// gtin returns a random GTIN-13 with its check digit.
func (g *gen) gtin() string {
	var b [13]byte
	sum := 0
	for i := 0; i < 12; i++ {
		d := g.r.IntN(10)
		if i == 0 {
			d = 1 + g.r.IntN(9)
		}
		b[i] = byte('0' + d)
		if i%2 == 1 {
			d *= 3
		}
		sum += d
	}
	b[12] = byte('0' + (10-sum%10)%10)
	return string(b[:])
}

// item generates one item.
func (g *gen) item(number string) *row {
	f := map[string]any{}
	switch n := g.r.IntN(10); {
	case n < 7:
		f["type"] = "Inventory"
		f["displayName"] = pick(g, itemAdjectives) + " " + pick(g, itemProducts)
		f["itemCategoryCode"] = pick(g, itemCategories)
		f["gtin"] = g.gtin()
		f["inventory"] = float64(g.r.IntN(500))
		f["baseUnitOfMeasureCode"] = pick(g, []string{"PCS", "PCS", "BOX"})
	case n < 9:
		f["type"] = "Service"
		f["displayName"] = pick(g, itemServices)
		f["itemCategoryCode"] = ""
		f["gtin"] = ""
		f["inventory"] = 0.0
		f["baseUnitOfMeasureCode"] = "HOUR"
	default:
		f["type"] = "Non-Inventory"
		f["displayName"] = pick(g, itemAdjectives) + " " + pick(g, itemProducts) + " (drop ship)"
		f["itemCategoryCode"] = "MISC"
		f["gtin"] = ""
		f["inventory"] = 0.0
		f["baseUnitOfMeasureCode"] = "PCS"
	}
	price := int64(500 + g.r.IntN(200_000))
	f["unitPrice"] = cents(price)
	f["unitCost"] = cents(price * int64(55+g.r.IntN(30)) / 100)
	f["priceIncludesTax"] = false
	f["blocked"] = g.r.IntN(15) == 0
	return g.newRow("number", number, true, f)
}

// salesOrder generates one sales order of customer with lines of items.
func (g *gen) salesOrder(number string, customer *row, items []*row, lines int) *row {
	c := customer.fields
	name := c["displayName"]
	f := map[string]any{
		"externalDocumentNumber": "",
		"customerId":             customer.id, "customerNumber": customer.key, "customerName": name,
		"billToCustomerId": customer.id, "billToCustomerNumber": customer.key, "billToName": name,
		"billToAddressLine1": c["addressLine1"], "billToAddressLine2": c["addressLine2"],
		"billToCity": c["city"], "billToState": c["state"], "billToCountry": c["country"], "billToPostCode": c["postalCode"],
		"shipToName": name, "shipToContact": "",
		"shipToAddressLine1": c["addressLine1"], "shipToAddressLine2": c["addressLine2"],
		"shipToCity": c["city"], "shipToState": c["state"], "shipToCountry": c["country"], "shipToPostCode": c["postalCode"],
		"currencyCode": c["currencyCode"],
		"status":       pick(g, []string{"Draft", "Open", "Open", "Released", "Released"}),
	}
	if g.r.IntN(2) == 0 {
		f["externalDocumentNumber"] = fmt.Sprintf("PO-%05d", g.r.IntN(100000))
	}
	if g.r.IntN(4) == 0 { // shipped elsewhere
		a := map[string]any{}
		g.address(a)
		f["shipToName"] = pick(g, firstNames) + " " + pick(g, lastNames)
		f["shipToContact"] = f["shipToName"]
		f["shipToAddressLine1"], f["shipToAddressLine2"] = a["addressLine1"], a["addressLine2"]
		f["shipToCity"], f["shipToState"], f["shipToPostCode"] = a["city"], a["state"], a["postalCode"]
	}
	date := g.base.AddDate(0, 0, g.r.IntN(90))
	f["orderDate"] = date.Format(time.DateOnly)
	f["postingDate"] = f["orderDate"]
	order := g.newRow("number", number, true, f)

	taxPercent := int64(0)
	if c["taxLiable"] == true {
		taxPercent = 8
	}
	var excl, incl int64
	for j := 0; j < lines && len(items) > 0; j++ {
		it := pick(g, items)
		qty := int64(1 + g.r.IntN(20))
		price := int64(it.fields["unitPrice"].(float64)*100 + 0.5)
		lineExcl := qty * price
		lineIncl := lineExcl + (lineExcl*taxPercent+50)/100
		excl += lineExcl
		incl += lineIncl
		id := g.guid()
		l := &row{id: id, key: id, keyField: "id", api: true, version: 1, modified: order.modified, fields: map[string]any{
			"documentId": order.id, "sequence": (j + 1) * 10000, "itemId": it.id,
			"lineType": "Item", "lineObjectNumber": it.key, "description": it.fields["displayName"],
			"unitOfMeasureCode": it.fields["baseUnitOfMeasureCode"],
			"quantity":          float64(qty), "unitPrice": cents(price), "taxPercent": float64(taxPercent),
			"amountExcludingTax": cents(lineExcl), "amountIncludingTax": cents(lineIncl),
		}}
		l.fields["id"] = id
		l.fields["lastModifiedDateTime"] = l.modified.Format(timeLayout)
		order.lines = append(order.lines, l)
	}
	f["totalAmountExcludingTax"] = cents(excl)
	f["totalTaxAmount"] = cents(incl - excl)
	f["totalAmountIncludingTax"] = cents(incl)
	return order
}

// json returns the company row as served by companies.
func (c *company) json() map[string]any {
	at := c.created.Format(timeLayout)
	return map[string]any{
		"id": c.id, "systemVersion": "26.0.30643.32771", "timestamp": c.created.UnixMilli(),
		"name": c.name, "displayName": c.name, "businessProfileId": "",
		"systemCreatedAt": at, "systemCreatedBy": zeroGUID,
		"systemModifiedAt": at, "systemModifiedBy": zeroGUID,
	}
}

// equalFoldASCII compares GUIDs and names case-insensitively.
func equalFoldASCII(a, b string) bool { return strings.EqualFold(a, b) }

// randomToken returns an opaque access token.
func randomToken() string {
	var b [32]byte
	for i := range b {
		b[i] = byte(rand.UintN(256))
	}
	return "bctest." + base64.RawURLEncoding.EncodeToString(b[:])
}

// hashGUID returns a GUID made from s, the same for the same s.
func hashGUID(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	g := &gen{r: rand.New(rand.NewPCG(h.Sum64(), 0x2545f4914f6cdd1d))}
	return g.guid()
}

// newGUID returns a random GUID (for correlation and trace ids).
func newGUID() string {
	g := &gen{r: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	return g.guid()
}
