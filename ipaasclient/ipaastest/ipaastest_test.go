package ipaastest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
)

// answer is a decoded response.
type answer struct {
	status int
	header http.Header
	body   any
	raw    string
}

// code is the first error code of an error answer.
func (a answer) code() string {
	m, _ := a.body.(map[string]any)
	errs, _ := m["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	e, _ := errs[0].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (a answer) object() map[string]any {
	m, _ := a.body.(map[string]any)
	return m
}

// client sends raw requests to a fake.
type client struct {
	t       *testing.T
	s       *ipaastest.Server
	h       http.Handler
	headers map[string]string
}

func newClient(t *testing.T, opts ipaastest.Options) *client {
	s := ipaastest.New(opts)
	hdr := map[string]string{"Authorization": "Bearer " + s.APIKey()}
	if s.ClientID() != "" {
		hdr["X-Client-Id"] = s.ClientID()
	}
	return &client{t: t, s: s, h: s.Handler(), headers: hdr}
}

// do sends a request; body (when not nil) is sent as application/json, or
// as it is when it is a string.
func (c *client) do(method, path string, body any, hdr ...string) answer {
	c.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	r := httptest.NewRequest(method, path, rd)
	for k, v := range c.headers {
		r.Header.Set(k, v)
	}
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	a := answer{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
			c.t.Fatalf("%s %s: answer is no JSON: %q", method, path, w.Body.String())
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			c.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return a
}

func (c *client) lookup(base, table, ext string) answer {
	c.t.Helper()
	return c.do("POST", base+"/v2/External/LookupSpecial",
		map[string]any{"table_name": table, "system_id": c.s.SystemID(), "external_id": ext})
}

func (c *client) ext(ext string) []any {
	return []any{map[string]any{"system_id": c.s.SystemID(), "external_id": ext}}
}

func expect(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.code() != code {
		t.Errorf("%s: HTTP %d %q (%s), want HTTP %d %q", what, a.status, a.code(), a.raw, status, code)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{ClientID: "client-1"})
	path := "/products/v2/Catalog/Location/4711"
	expect(t, "no key", c.do("GET", path, nil, "Authorization", ""), 401, "AUTH-1001")
	expect(t, "wrong key", c.do("GET", path, nil, "Authorization", "Bearer nope"), 401, "AUTH-1001")
	expect(t, "basic", c.do("GET", path, nil, "Authorization", "Basic "+c.s.APIKey()), 401, "AUTH-1001")
	expect(t, "key without scheme", c.do("GET", path, nil, "Authorization", c.s.APIKey()), 401, "AUTH-1001")
	expect(t, "unknown path, no key", c.do("GET", "/nope", nil, "Authorization", ""), 401, "AUTH-1001")
	expect(t, "no client id", c.do("GET", path, nil, "X-Client-Id", ""), 401, "AUTH-1002")
	expect(t, "wrong client id", c.do("GET", path, nil, "X-Client-Id", "client-2"), 401, "AUTH-1002")
	expect(t, "good", c.do("GET", path, nil, "Authorization", "bearer "+c.s.APIKey()), 404, "NFND-1001")
	if a := c.do("GET", path, nil, "Authorization", ""); a.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	if st := c.s.Stats(); st.Unauthorized != 8 || st.Requests["GET"] != 9 || st.Gets != 1 {
		t.Errorf("stats %+v", st)
	}
	if c.s.APIKey() != ipaastest.DefaultAPIKey || c.s.SystemID() != ipaastest.DefaultSystemID {
		t.Errorf("defaults: key %q system %d", c.s.APIKey(), c.s.SystemID())
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	loc := map[string]any{"name": "EAST"}
	tests := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/products/v2/catalog/location/1", nil, 404, "NFND-1000"},    // case-sensitive
		{"POST", "/customers/v2/Catalog/Location", loc, 404, "NFND-1000"},    // wrong base path
		{"POST", "/products/v2/Catalog/Location/", loc, 404, "NFND-1000"},    // trailing slash
		{"GET", "/products/Catalog/Location/1", nil, 404, "NFND-1000"},       // no v2
		{"GET", "/transactions/v2/ShippingMethods/1", nil, 404, "NFND-1000"}, // the list has no items
		{"GET", "/products/v2/Catalog/Location", nil, 405, "VALD-1002"},
		{"PATCH", "/products/v2/Catalog/Location/1", loc, 405, "VALD-1002"},
		{"GET", "/products/v2/External/LookupSpecial", nil, 405, "VALD-1002"},
		{"POST", "/transactions/v2/ShippingMethods", loc, 405, "VALD-1002"},
		{"GET", "/transactions/v2/ShippingMethods", nil, 200, ""},
		{"GET", "/customers/v2/Customer/Category", nil, 405, "VALD-1002"}, // the collection, not customer "Category"
	}
	for _, tt := range tests {
		expect(t, tt.method+" "+tt.path, c.do(tt.method, tt.path, tt.body), tt.status, tt.code)
	}
	if a := c.do("PUT", "/products/v2/Catalog/Location", loc); a.header.Get("Allow") != "POST" {
		t.Errorf("Allow %q", a.header.Get("Allow"))
	}
}

func TestCreateGetAndSecondCreateConflicts(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	a := c.do("POST", "/products/v2/Catalog/Location", map[string]any{"name": "EAST", "city": "Boston", "external_ids": c.ext("EAST")})
	expect(t, "create", a, 200, "")
	id, _ := a.object()["id"].(string)
	if id != fmt.Sprint(ipaastest.FirstID) {
		t.Fatalf("id %q, want %d", id, ipaastest.FirstID)
	}
	got := c.do("GET", "/products/v2/Catalog/Location/"+id, nil)
	expect(t, "get", got, 200, "")
	want := fmt.Sprintf(`{"address1":null,"address2":null,"city":"Boston","country":null,"custom_fields":null,"description":null,"email":null,`+
		`"external_ids":[{"external_id":"EAST","system_id":%d}],"id":"%s","name":"EAST","phone":null,"postal_code":null,"region":null}`, c.s.SystemID(), id)
	if b, _ := json.Marshal(got.body); string(b) != want {
		t.Errorf("GET answered\n%s\nwant\n%s", b, want)
	}
	expect(t, "lookup", c.lookup("/products", "location", "EAST"), 200, "")
	if l := c.lookup("/products", "location", "EAST"); l.body != id {
		t.Errorf("lookup answered %v, want %q", l.body, id)
	}
	// Same link again: refused, nothing created.
	again := c.do("POST", "/products/v2/Catalog/Location", map[string]any{"name": "EAST 2", "external_ids": c.ext("EAST")})
	expect(t, "second create", again, 409, "BIZL-1003")
	if n := c.s.Count(ipaastest.TableLocation); n != 1 {
		t.Errorf("%d locations, want 1", n)
	}
	if st := c.s.Stats(); st.Creates != 1 || st.CreateConflicts != 1 || st.Lookups != 2 {
		t.Errorf("stats %+v", st)
	}
	// Another system's link to the same code is another link.
	expect(t, "no link", c.lookup("/products", "location", "WEST"), 404, "NFND-1002")
}

func TestPutReplacesTheWholeRecord(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	a := c.do("POST", "/customers/v2/Customer", map[string]any{
		"customer_number": "C1", "first_name": "Ann", "last_name": "Lee", "email_address": "ann@example.com",
		"custom_fields": []any{map[string]any{"name": "tier", "value": "gold"}}, "external_ids": c.ext("C1"),
	})
	expect(t, "create", a, 200, "")
	id := a.object()["id"].(string)
	path := "/customers/v2/Customer/" + id
	expect(t, "put", c.do("PUT", path, map[string]any{"id": id, "last_name": "Lee-Smith", "external_ids": c.ext("C1")}), 200, "")
	got := c.do("GET", path, nil).object()
	for field, want := range map[string]any{
		"id": id, "last_name": "Lee-Smith", "first_name": nil, "email_address": nil, "customer_number": nil, "custom_fields": nil,
	} {
		if got[field] != want {
			t.Errorf("%s = %v, want %v", field, got[field], want)
		}
	}
	if ext, _ := got["external_ids"].([]any); len(ext) != 1 {
		t.Errorf("external_ids %v: the link must survive a PUT that names it", got["external_ids"])
	}
	// external_ids left out is cleared like any other field: the link goes.
	expect(t, "put without external_ids", c.do("PUT", path, map[string]any{"id": id, "last_name": "Lee-Smith"}), 200, "")
	if ext, _ := c.do("GET", path, nil).object()["external_ids"].([]any); len(ext) != 0 {
		t.Errorf("external_ids %v after a PUT that left them out, want none", ext)
	}
	expect(t, "no link after the PUT", c.lookup("/customers", "customer", "C1"), 404, "NFND-1002")
	expect(t, "put another id", c.do("PUT", path, map[string]any{"id": "1", "last_name": "X"}), 400, "VALD-1003")
	expect(t, "put without names", c.do("PUT", path, map[string]any{"email_address": "x@example.com"}), 400, "VALD-1049")
	expect(t, "put unknown", c.do("PUT", "/customers/v2/Customer/999", map[string]any{"last_name": "X"}), 404, "NFND-1001")
	if st := c.s.Stats(); st.Updates != 2 {
		t.Errorf("stats %+v, want 2 updates", st)
	}
}

func TestDeleteDeactivatesAndRelinks(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	body := map[string]any{"name": "UPS", "external_ids": c.ext("UPS")}
	a := c.do("POST", "/transactions/v2/ShippingMethod", body)
	expect(t, "create", a, 200, "")
	id := a.object()["id"].(string)
	path := "/transactions/v2/ShippingMethod/" + id
	if d := c.do("DELETE", path, nil); d.status != 204 {
		t.Fatalf("DELETE: HTTP %d %s", d.status, d.raw)
	}
	if l := c.lookup("/transactions", "shipping method", "UPS"); l.status != 200 || l.body != "DELETED:"+id {
		t.Errorf("lookup after delete: HTTP %d %v, want DELETED:%s", l.status, l.body, id)
	}
	expect(t, "get deleted", c.do("GET", path, nil), 404, "NFND-1001")
	expect(t, "delete again", c.do("DELETE", path, nil), 404, "NFND-1001")
	if c.s.Count(ipaastest.TableShippingMethod) != 0 || c.s.Links(ipaastest.TableShippingMethod) != 1 {
		t.Errorf("count %d links %d, want 0 and 1", c.s.Count(ipaastest.TableShippingMethod), c.s.Links(ipaastest.TableShippingMethod))
	}
	// The name of a deleted method is free again, and its link moves.
	b := c.do("POST", "/transactions/v2/ShippingMethod", body)
	expect(t, "create after delete", b, 200, "")
	id2 := b.object()["id"].(string)
	if l := c.lookup("/transactions", "shipping method", "UPS"); l.body != id2 || id2 == id {
		t.Errorf("lookup after re-create: %v, want %s (not %s)", l.body, id2, id)
	}
	if c.s.Count(ipaastest.TableShippingMethod) != 1 || c.s.Links(ipaastest.TableShippingMethod) != 1 {
		t.Errorf("count %d links %d, want 1 and 1", c.s.Count(ipaastest.TableShippingMethod), c.s.Links(ipaastest.TableShippingMethod))
	}
	if list := c.do("GET", "/transactions/v2/ShippingMethods", nil); len(list.body.([]any)) != 1 {
		t.Errorf("list %s", list.raw)
	}
	if st := c.s.Stats(); st.Deletes != 1 || st.Creates != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	expect(t, "first method", c.do("POST", "/transactions/v2/ShippingMethod", map[string]any{"name": "Pickup"}), 200, "")
	tests := []struct {
		name, path string
		body       any
		hdr        []string
		status     int
		code       string
	}{
		{"customer without names", "/customers/v2/Customer", map[string]any{"customer_number": "C1", "company": "Fabrikam"}, nil, 400, "VALD-1049"},
		{"customer blank names", "/customers/v2/Customer", map[string]any{"first_name": " ", "last_name": ""}, nil, 400, "VALD-1049"},
		{"customer last name only", "/customers/v2/Customer", map[string]any{"last_name": "Cher"}, nil, 200, ""},
		{"location without name", "/products/v2/Catalog/Location", map[string]any{"city": "Boston"}, nil, 400, "VALD-1004"},
		{"category without name", "/customers/v2/Customer/Category", map[string]any{"description": "d"}, nil, 400, "VALD-1004"},
		{"product without sku", "/products/v2/Catalog/Product", map[string]any{"name": "Bike"}, nil, 400, "VALD-1004"},
		{"product price as string", "/products/v2/Catalog/Product", map[string]any{"sku": "1", "default_price": "9.99"}, nil, 400, "VALD-1003"},
		{"product", "/products/v2/Catalog/Product", map[string]any{"sku": "1", "default_price": 9.99, "status": "active", "type": "simple"}, nil, 200, ""},
		{"duplicate method name", "/transactions/v2/ShippingMethod", map[string]any{"name": "Pickup"}, nil, 400, "VALD-1050"},
		{"method name differs in case", "/transactions/v2/ShippingMethod", map[string]any{"name": "PICKUP"}, nil, 200, ""},
		{"unknown field", "/products/v2/Catalog/Location", map[string]any{"name": "X", "postalCode": "1"}, nil, 400, "VALD-1003"},
		{"wrong type", "/products/v2/Catalog/Location", map[string]any{"name": 7}, nil, 400, "VALD-1003"},
		{"id on create", "/products/v2/Catalog/Location", map[string]any{"name": "X", "id": "1"}, nil, 400, "VALD-1003"},
		{"external_ids not an array", "/products/v2/Catalog/Location", map[string]any{"name": "X", "external_ids": "A"}, nil, 400, "VALD-1003"},
		{"external id of another system", "/products/v2/Catalog/Location",
			map[string]any{"name": "X", "external_ids": []any{map[string]any{"system_id": 1, "external_id": "A"}}}, nil, 400, "VALD-1005"},
		{"external id empty", "/products/v2/Catalog/Location",
			map[string]any{"name": "X", "external_ids": []any{map[string]any{"system_id": c.s.SystemID(), "external_id": ""}}}, nil, 400, "VALD-1005"},
		{"custom_fields as string", "/products/v2/Catalog/Location", map[string]any{"name": "X", "custom_fields": "x"}, nil, 400, "VALD-1003"},
		{"text/plain", "/products/v2/Catalog/Location", map[string]any{"name": "X"}, []string{"Content-Type", "text/plain"}, 415, "VALD-1001"},
		{"no content type", "/products/v2/Catalog/Location", map[string]any{"name": "X"}, []string{"Content-Type", ""}, 415, "VALD-1001"},
		{"charset is fine", "/products/v2/Catalog/Location", map[string]any{"name": "Y"}, []string{"Content-Type", "application/json; charset=utf-8"}, 200, ""},
		{"not json", "/products/v2/Catalog/Location", "name=X", nil, 400, "VALD-1000"},
		{"array", "/products/v2/Catalog/Location", `[{"name":"X"}]`, nil, 400, "VALD-1000"},
		{"two objects", "/products/v2/Catalog/Location", `{"name":"X"}{"name":"Y"}`, nil, 400, "VALD-1000"},
		{"too large", "/products/v2/Catalog/Location", `{"name":"` + strings.Repeat("x", ipaastest.MaxBodyBytes) + `"}`, nil, 413, "VALD-1000"},
	}
	for _, tt := range tests {
		expect(t, tt.name, c.do("POST", tt.path, tt.body, tt.hdr...), tt.status, tt.code)
	}
	if st := c.s.Stats(); st.ValidationErrors != 20 {
		t.Errorf("%d validation errors counted, want 20", st.ValidationErrors)
	}
}

func TestLookupAndLinkRequests(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{SystemID: 77})
	lookup := "/customers/v2/External/LookupSpecial"
	for _, tt := range []struct {
		name string
		body map[string]any
		code string
	}{
		{"table of another base path", map[string]any{"table_name": "location", "system_id": 77, "external_id": "A"}, "VALD-1005"},
		{"unknown table", map[string]any{"table_name": "Customer", "system_id": 77, "external_id": "A"}, "VALD-1005"},
		{"other system", map[string]any{"table_name": "customer", "system_id": 78, "external_id": "A"}, "VALD-1005"},
		{"system as string", map[string]any{"table_name": "customer", "system_id": "77", "external_id": "A"}, "VALD-1005"},
		{"no external id", map[string]any{"table_name": "customer", "system_id": 77}, "VALD-1005"},
		{"extra field", map[string]any{"table_name": "customer", "system_id": 77, "external_id": "A", "x": 1}, "VALD-1003"},
	} {
		expect(t, tt.name, c.do("POST", lookup, tt.body), 400, tt.code)
	}
	// UpdateExternalId links an existing record.
	a := c.do("POST", "/customers/v2/Customer", map[string]any{"last_name": "Doe"})
	id := a.object()["id"].(string)
	link := "/customers/v2/External/UpdateExternalId"
	body := map[string]any{"table_name": "customer", "system_id": 77, "external_id": "C7", "internal_id": id}
	expect(t, "link", c.do("POST", link, body), 200, "")
	if l := c.lookup("/customers", "customer", "C7"); l.body != id {
		t.Errorf("lookup %v, want %s", l.body, id)
	}
	b := c.do("POST", "/customers/v2/Customer", map[string]any{"last_name": "Roe"})
	body["internal_id"] = b.object()["id"]
	expect(t, "link taken", c.do("POST", link, body), 409, "BIZL-1005")
	body["internal_id"] = "999"
	expect(t, "link to nothing", c.do("POST", link, body), 404, "NFND-1001")
	if st := c.s.Stats(); st.LinkUpdates != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestFailNextFailsWritesOnly(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	c.s.FailNext(2, http.StatusServiceUnavailable, "", 1500*time.Millisecond)
	expect(t, "lookup", c.lookup("/products", "location", "EAST"), 404, "NFND-1002")
	expect(t, "get", c.do("GET", "/products/v2/Catalog/Location/1", nil), 404, "NFND-1001")
	expect(t, "unauthorized write", c.do("POST", "/products/v2/Catalog/Location", map[string]any{"name": "E"}, "Authorization", ""), 401, "AUTH-1001")
	a := c.do("POST", "/products/v2/Catalog/Location", map[string]any{"name": "EAST", "external_ids": c.ext("EAST")})
	expect(t, "first write", a, 503, "INTL-1000")
	if a.header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q, want 2", a.header.Get("Retry-After"))
	}
	expect(t, "second write", c.do("DELETE", "/products/v2/Catalog/Location/1", nil), 503, "INTL-1000")
	expect(t, "third write", c.do("POST", "/products/v2/Catalog/Location", map[string]any{"name": "EAST", "external_ids": c.ext("EAST")}), 200, "")
	if c.s.Count(ipaastest.TableLocation) != 1 || c.s.Stats().FailuresInjected != 2 {
		t.Errorf("count %d stats %+v", c.s.Count(ipaastest.TableLocation), c.s.Stats())
	}
	c.s.FailNext(1, http.StatusTooManyRequests, "", 0)
	a = c.do("PUT", "/products/v2/Catalog/Location/4711", map[string]any{"name": "EAST"})
	if a.status != 429 || a.code() != "" || a.header.Get("Retry-After") != "" {
		t.Errorf("429: %d %q %q", a.status, a.code(), a.header.Get("Retry-After"))
	}
}

func TestControls(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	s := c.s
	id, err := s.Create(ipaastest.TableProduct, "1000", map[string]any{"sku": "1000", "default_price": 12.5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ipaastest.TableProduct, "1000", map[string]any{"sku": "1000"}); err == nil || !strings.Contains(err.Error(), "BIZL-1003") {
		t.Errorf("second Create: %v", err)
	}
	if _, err := s.Create(ipaastest.TableCustomer, "", map[string]any{"company": "x"}); err == nil || !strings.Contains(err.Error(), "VALD-1049") {
		t.Errorf("invalid Create: %v", err)
	}
	if _, err := s.Create("warehouse", "", nil); err == nil {
		t.Error("Create in an unknown table")
	}
	if err := s.Patch(ipaastest.TableProduct, "1000", map[string]any{"status": "inactive", "default_price": nil}); err != nil {
		t.Fatal(err)
	}
	if err := s.Patch(ipaastest.TableProduct, "1000", map[string]any{"colour": "red"}); err == nil {
		t.Error("Patch of an unknown field")
	}
	if err := s.Patch(ipaastest.TableProduct, "2000", map[string]any{"name": "x"}); err == nil {
		t.Error("Patch of an unlinked record")
	}
	got, ok := s.Lookup(ipaastest.TableProduct, "1000")
	if !ok || got["id"] != id || got["status"] != "inactive" || got["default_price"] != nil || got["sku"] != "1000" {
		t.Errorf("Lookup = %v, %v", got, ok)
	}
	got["sku"] = "changed"
	if recs := s.Records(ipaastest.TableProduct); len(recs) != 1 || recs[0]["sku"] != "1000" {
		t.Errorf("Records = %v (a copy was changed)", recs)
	}
	if s.Count("warehouse") != 0 || s.Records("warehouse") != nil || s.Links("warehouse") != 0 {
		t.Error("unknown table has records")
	}
	if _, ok := s.Lookup(ipaastest.TableProduct, "nope"); ok {
		t.Error("Lookup of an unlinked id")
	}
	if st := s.Stats(); st.Creates != 0 || len(st.Requests) != 0 {
		t.Errorf("controls counted in stats: %+v", st)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	c := newClient(t, ipaastest.Options{})
	c.s.SetLatency(30 * time.Millisecond)
	start := time.Now()
	c.lookup("/products", "location", "EAST")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("answered after %v, want >= 30ms", d)
	}
}

func TestNewServer(t *testing.T) {
	t.Parallel()
	s := ipaastest.NewServer(ipaastest.Options{APIKey: "k2"})
	defer s.Close()
	req, _ := http.NewRequest("POST", s.URL()+"/customers/v2/External/LookupSpecial",
		strings.NewReader(`{"table_name":"customer","system_id":1001,"external_id":"C1"}`))
	req.Header.Set("Authorization", "Bearer k2")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("HTTP %d, want 404", resp.StatusCode)
	}
	if ipaastest.New(ipaastest.Options{}).URL() != "" {
		t.Error("URL of a server that does not listen")
	}
}

func TestOnWriteNamesEachWrite(t *testing.T) {
	t.Parallel()
	var got []string
	c := newClient(t, ipaastest.Options{OnWrite: func(table string, ext []string) {
		got = append(got, table+":"+strings.Join(ext, ","))
	}})
	a := c.do("POST", "/customers/v2/Customer", map[string]any{"customer_number": "C1", "last_name": "Lee", "external_ids": c.ext("C1")})
	expect(t, "create", a, 200, "")
	id := a.object()["id"].(string)
	expect(t, "put", c.do("PUT", "/customers/v2/Customer/"+id, map[string]any{"id": id, "last_name": "Lee-Smith", "external_ids": c.ext("C1")}), 200, "")
	// Refused writes and reads are not writes.
	expect(t, "second create", c.do("POST", "/customers/v2/Customer", map[string]any{"last_name": "X", "external_ids": c.ext("C1")}), 409, "BIZL-1003")
	expect(t, "get", c.do("GET", "/customers/v2/Customer/"+id, nil), 200, "")
	expect(t, "delete", c.do("DELETE", "/customers/v2/Customer/"+id, nil), 204, "")
	if want := []string{"customer:C1", "customer:C1"}; !slices.Equal(got, want) {
		t.Errorf("OnWrite calls %q, want %q", got, want)
	}
}
