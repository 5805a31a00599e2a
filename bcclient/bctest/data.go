package bctest

import (
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
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

// table is one entity set.
type table struct {
	keyField string // "code", "number" or "Code"
	rows     []*row // in key order
}

// row is one record. fields holds everything served except @odata.etag.
type row struct {
	id       string // SystemId; not served for OData V4 rows
	key      string
	keyField string
	fields   map[string]any
	version  int
	modified time.Time
	api      bool // an API v2.0 row, which serves id and lastModifiedDateTime
}

// json returns the row as served.
func (r *row) json() map[string]any {
	m := maps.Clone(r.fields)
	m["@odata.etag"] = r.etag()
	return m
}

// etag is a weak ETag in BC's form: W/"<base64 of '<len>;<number>;00;'>".
func (r *row) etag() string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s:%d", r.id, r.version)
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
	for _, r := range t.rows {
		if r.key == key || r.id != "" && equalFoldASCII(r.id, key) {
			return r
		}
	}
	return nil
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
			SetShipmentMethods:  {keyField: "code"},
			SetLocations:        {keyField: "code"},
			SetCustomers:        {keyField: "number"},
			o.PriceGroupService: {keyField: "Code"},
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
		t[SetShipmentMethods].rows = append(t[SetShipmentMethods].rows,
			g.newRow("code", code, true, map[string]any{"displayName": name}))
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
		t[SetLocations].rows = append(t[SetLocations].rows, g.newRow("code", code, true, f))
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
		t[SetCustomers].rows = append(t[SetCustomers].rows, g.newRow("number", number, true, f))
	}

	for i := 1; i <= o.PriceGroups; i++ {
		code := fmt.Sprintf("PG%03d", i)
		desc := priceGroupNames[(i-1)%len(priceGroupNames)]
		if i > len(priceGroupNames) {
			desc += " " + strconv.Itoa(i)
		}
		t[o.PriceGroupService].rows = append(t[o.PriceGroupService].rows, g.newRow("Code", code, false, map[string]any{
			"Description":        desc + " customers",
			"Allow_Invoice_Disc": true, "Allow_Line_Disc": true, "Price_Includes_VAT": false,
		}))
	}
	return companies
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

// newGUID returns a random GUID (for correlation and trace ids).
func newGUID() string {
	g := &gen{r: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	return g.guid()
}
