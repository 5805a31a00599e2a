package bctest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

// receiver is a webhook endpoint. By default it completes handshakes and
// answers notifications 202.
type receiver struct {
	srv *httptest.Server

	mu         sync.Mutex
	handshake  func(w http.ResponseWriter, token string) // nil: echo the token
	noteStatus int
	handshakes int
	methods    []string
	notes      []map[string]any
	types      []string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{noteStatus: http.StatusAccepted}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.methods = append(rc.methods, r.Method)
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			rc.handshakes++
			h := rc.handshake
			rc.mu.Unlock()
			if h == nil {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, tok)
				return
			}
			h(w, tok)
			return
		}
		defer rc.mu.Unlock()
		var note map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &note); err != nil {
			note = map[string]any{"undecodable": string(b)}
		}
		rc.notes = append(rc.notes, note)
		rc.types = append(rc.types, r.Header.Get("Content-Type"))
		w.WriteHeader(rc.noteStatus)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) set(f func(rc *receiver)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	f(rc)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.handshakes
}

func subBody(notificationURL, resource, clientState string) string {
	b, _ := json.Marshal(map[string]string{"notificationUrl": notificationURL, "resource": resource, "clientState": clientState})
	return string(b)
}

func subsPath(s *bctest.Server) string { return apiRoot(s) + "/subscriptions" }

func subPath(s *bctest.Server, id string) string { return subsPath(s) + "('" + id + "')" }

func resource(s *bctest.Server, set string) string {
	return "/api/v2.0/companies(" + s.CompanyID() + ")/" + set
}

// subscribe creates a subscription and fails the test unless it is created.
func subscribe(t *testing.T, s *bctest.Server, tok, notificationURL, set, clientState string) map[string]any {
	t.Helper()
	r := send(t, s, tok, http.MethodPost, subsPath(s), subBody(notificationURL, resource(s, set), clientState))
	if r.status != http.StatusCreated {
		t.Fatalf("subscribe: %d %v", r.status, r.body)
	}
	return r.body
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := newServer(t, bctest.Options{Now: clk.Now})
	tok := token(t, s)
	rc := newReceiver(t)
	hook := rc.srv.URL + "/hooks/bc?tenant=x"
	r := send(t, s, tok, http.MethodPost, subsPath(s), subBody(hook, resource(s, bctest.SetCustomers), "s3cret"))
	if r.status != http.StatusCreated {
		t.Fatalf("%d %v", r.status, r.body)
	}
	b := r.body
	id, _ := b["subscriptionId"].(string)
	want := map[string]any{
		"notificationUrl": hook, "resource": resource(s, bctest.SetCustomers), "clientState": "s3cret",
		"lastModifiedDateTime": clk.Now().Format("2006-01-02T15:04:05Z"),
		"expirationDateTime":   clk.Now().Add(72 * time.Hour).Format("2006-01-02T15:04:05Z"),
	}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("%s = %v, want %v", k, b[k], v)
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || !guidRE.MatchString(b["userId"].(string)) || !etagRE.MatchString(b["@odata.etag"].(string)) {
		t.Errorf("subscriptionId %q, userId %v, etag %v", id, b["userId"], b["@odata.etag"])
	}
	if loc := r.header.Get("Location"); !strings.HasSuffix(loc, subPath(s, id)) {
		t.Errorf("Location %q", loc)
	}
	rc.mu.Lock()
	if rc.handshakes != 1 || !slices.Equal(rc.methods, []string{http.MethodPost}) {
		t.Errorf("handshakes %d, methods %v: want one POST", rc.handshakes, rc.methods)
	}
	rc.mu.Unlock()

	// Other resource forms BC accepts name the same thing.
	for _, res := range []string{
		"api/v2.0/companies(" + s.CompanyID() + ")/items",
		"companies(" + s.CompanyID() + ")/shipmentMethods",
		s.URL() + apiRoot(s) + "/companies(" + s.CompanyID() + ")/salesOrders",
	} {
		if r := send(t, s, tok, http.MethodPost, subsPath(s), subBody(hook, res, "")); r.status != http.StatusCreated {
			t.Errorf("resource %s: %d %v", res, r.status, r.body)
		}
	}

	// List and get.
	r = send(t, s, tok, http.MethodGet, subsPath(s), "")
	list := values(t, r.body)
	if len(list) != 4 || list[0]["subscriptionId"] != id {
		t.Fatalf("list %v", r.body)
	}
	r = send(t, s, tok, http.MethodGet, subPath(s, id), "")
	if r.status != 200 || r.body["subscriptionId"] != id || r.body["@odata.etag"] != b["@odata.etag"] {
		t.Errorf("get: %d %v", r.status, r.body)
	}
	subs := s.Subscriptions()
	if len(subs) != 4 || subs[0].ID != id || subs[0].EntitySet != bctest.SetCustomers || subs[0].CompanyID != s.CompanyID() ||
		subs[2].EntitySet != bctest.SetShipmentMethods || subs[0].ClientState != "s3cret" {
		t.Errorf("Subscriptions() = %+v", subs)
	}
	if n := s.Stats().DataRequests[bctest.SetSubscriptions]; n != 6 {
		t.Errorf("DataRequests[subscriptions] = %d", n)
	}
}

func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{HandshakeTimeout: 200 * time.Millisecond})
	tok := token(t, s)
	rc := newReceiver(t)
	good := subBody(rc.srv.URL, resource(s, bctest.SetCustomers), "")
	tests := []struct {
		name, body, contentType string
		status                  int
		code                    string
	}{
		{"locations", subBody(rc.srv.URL, resource(s, bctest.SetLocations), ""), "", 400, "BadRequest_NotSupported"},
		{"companies", subBody(rc.srv.URL, "/api/v2.0/companies", ""), "", 400, "BadRequest"},
		{"entity set bctest does not serve", subBody(rc.srv.URL, resource(s, "vendors"), ""), "", 400, "BadRequest_NotSupported"},
		{"unknown company", subBody(rc.srv.URL, "/api/v2.0/companies(00000000-0000-4000-8000-000000000001)/customers", ""), "", 400, "BadRequest"},
		{"company by name", subBody(rc.srv.URL, "/api/v2.0/companies('CRONUS')/customers", ""), "", 400, "BadRequest"},
		{"a record", subBody(rc.srv.URL, resource(s, bctest.SetCustomers)+"("+s.Rows(bctest.SetCustomers)[0]["id"].(string)+")", ""), "", 400, "BadRequest_NotSupported"},
		{"resource with query", subBody(rc.srv.URL, resource(s, bctest.SetCustomers)+"?$filter=x", ""), "", 400, "BadRequest"},
		{"no resource", `{"notificationUrl":"` + rc.srv.URL + `"}`, "", 400, "BadRequest"},
		{"no notificationUrl", `{"resource":"` + resource(s, bctest.SetCustomers) + `"}`, "", 400, "BadRequest"},
		{"relative notificationUrl", subBody("/hooks", resource(s, bctest.SetCustomers), ""), "", 400, "BadRequest"},
		{"ftp notificationUrl", subBody("ftp://example.com/x", resource(s, bctest.SetCustomers), ""), "", 400, "BadRequest"},
		{"clientState too long", subBody(rc.srv.URL, resource(s, bctest.SetCustomers), strings.Repeat("x", 2049)), "", 400, "Application_StringExceededLength"},
		{"misspelled property", strings.Replace(good, "notificationUrl", "notificationURL", 1), "", 400, "BadRequest"},
		{"unknown property", strings.Replace(good, "{", `{"changeType":"updated",`, 1), "", 400, "BadRequest"},
		{"number for a string", `{"notificationUrl":"` + rc.srv.URL + `","resource":"` + resource(s, bctest.SetCustomers) + `","clientState":5}`, "", 400, "BadRequest"},
		{"not JSON", "notificationUrl=x", "", 400, "BadRequest"},
		{"form content type", good, "application/x-www-form-urlencoded", 415, "BadRequest_UnsupportedMediaType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h []string
			if tt.contentType != "" {
				h = []string{"Content-Type", tt.contentType}
			}
			r := send(t, s, tok, http.MethodPost, subsPath(s), tt.body, h...)
			if r.status != tt.status || errorCode(r.body) != tt.code {
				t.Errorf("%d %s, want %d %s (%v)", r.status, errorCode(r.body), tt.status, tt.code, r.body)
			}
		})
	}
	if rc.count() != 0 {
		t.Errorf("%d handshakes for invalid requests", rc.count())
	}

	// A clientState of 2048 characters is fine; the handshake then decides.
	longState := subBody(rc.srv.URL, resource(s, bctest.SetCustomers), strings.Repeat("é", 2048))
	handshakes := []struct {
		name string
		h    func(w http.ResponseWriter, token string)
	}{
		{"wrong body", func(w http.ResponseWriter, _ string) { _, _ = io.WriteString(w, "hello") }},
		{"quoted token", func(w http.ResponseWriter, tok string) { _, _ = io.WriteString(w, `"`+tok+`"`) }},
		{"token and newline", func(w http.ResponseWriter, tok string) { _, _ = io.WriteString(w, tok+"\n") }},
		{"500 with the token", func(w http.ResponseWriter, tok string) { w.WriteHeader(500); _, _ = io.WriteString(w, tok) }},
		{"202 with the token", func(w http.ResponseWriter, tok string) { w.WriteHeader(202); _, _ = io.WriteString(w, tok) }},
		{"redirect", func(w http.ResponseWriter, tok string) {
			w.Header().Set("Location", "/elsewhere?validationToken="+tok)
			w.WriteHeader(http.StatusFound)
		}},
		{"too slow", func(w http.ResponseWriter, tok string) { time.Sleep(time.Second); _, _ = io.WriteString(w, tok) }},
	}
	for _, tt := range handshakes {
		t.Run(tt.name, func(t *testing.T) {
			before := rc.count()
			rc.set(func(rc *receiver) { rc.handshake = tt.h })
			start := time.Now()
			r := send(t, s, tok, http.MethodPost, subsPath(s), longState)
			if r.status != 400 || errorCode(r.body) != "BadRequest_HandshakeFailed" {
				t.Errorf("%d %v, want 400 BadRequest_HandshakeFailed", r.status, r.body)
			}
			if rc.count() != before+1 {
				t.Errorf("%d handshakes", rc.count()-before)
			}
			if d := time.Since(start); d > 900*time.Millisecond {
				t.Errorf("answered after %v: HandshakeTimeout is 200ms", d)
			}
		})
	}
	if n := len(s.Subscriptions()); n != 0 {
		t.Errorf("%d subscriptions after failures", n)
	}
	if r := send(t, s, tok, http.MethodGet, subsPath(s), ""); len(values(t, r.body)) != 0 {
		t.Errorf("list %v", r.body)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if r := send(t, s, tok, http.MethodPost, subsPath(s), subBody(dead.URL, resource(s, bctest.SetCustomers), "")); r.status != 400 || errorCode(r.body) != "BadRequest_HandshakeFailed" {
		t.Errorf("unreachable endpoint: %d %v", r.status, r.body)
	}
	rc.set(func(rc *receiver) { rc.handshake = nil })
	if r := send(t, s, tok, http.MethodPost, subsPath(s), longState); r.status != 201 {
		t.Errorf("2048 characters of clientState: %d %v", r.status, r.body)
	}
}

func TestRenewAndDelete(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := newServer(t, bctest.Options{Now: clk.Now, TokenLifetime: 200 * time.Hour})
	tok := token(t, s)
	rc := newReceiver(t)
	created := subscribe(t, s, tok, rc.srv.URL, bctest.SetItems, "one")
	id, etag0 := created["subscriptionId"].(string), created["@odata.etag"].(string)
	path := subPath(s, id)

	if r := send(t, s, tok, http.MethodPatch, path, "{}"); r.status != 400 || errorCode(r.body) != "BadRequest_InvalidToken" {
		t.Errorf("PATCH without If-Match: %d %v", r.status, r.body)
	}
	if r := send(t, s, tok, http.MethodPatch, path, "{}", "If-Match", "garbage"); r.status != 400 || errorCode(r.body) != "BadRequest_InvalidToken" {
		t.Errorf("PATCH with a malformed If-Match: %d %v", r.status, r.body)
	}

	clk.Advance(24 * time.Hour)
	r := send(t, s, tok, http.MethodPatch, path, `{"clientState":"two"}`, "If-Match", etag0)
	if r.status != 200 {
		t.Fatalf("renew: %d %v", r.status, r.body)
	}
	etag1 := r.body["@odata.etag"].(string)
	if etag1 == etag0 || r.body["clientState"] != "two" ||
		r.body["expirationDateTime"] != clk.Now().Add(72*time.Hour).Format("2006-01-02T15:04:05Z") ||
		r.body["lastModifiedDateTime"] != clk.Now().Format("2006-01-02T15:04:05Z") {
		t.Errorf("renewed: %v", r.body)
	}
	if rc.count() != 2 {
		t.Errorf("%d handshakes, want one more for the renewal", rc.count())
	}
	if r := send(t, s, tok, http.MethodPatch, path, "{}", "If-Match", etag0); r.status != 409 || errorCode(r.body) != "Request_EntityChanged" {
		t.Errorf("stale If-Match: %d %v", r.status, r.body)
	}

	// "*" renews whatever the etag, with an empty body too.
	clk.Advance(time.Hour)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, s.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("If-Match", "*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	status, body := decode(t, resp)
	if status != 200 || body["expirationDateTime"] != clk.Now().Add(72*time.Hour).Format("2006-01-02T15:04:05Z") || body["@odata.etag"] == etag1 {
		t.Errorf("renew with *: %d %v", status, body)
	}
	etag2 := body["@odata.etag"].(string)

	// A failed handshake leaves the subscription as it was.
	rc.set(func(rc *receiver) { rc.handshake = func(w http.ResponseWriter, _ string) { w.WriteHeader(404) } })
	clk.Advance(time.Hour)
	if r := send(t, s, tok, http.MethodPatch, path, "{}", "If-Match", etag2); r.status != 400 || errorCode(r.body) != "BadRequest_HandshakeFailed" {
		t.Errorf("renew with a failing endpoint: %d %v", r.status, r.body)
	}
	rc.set(func(rc *receiver) { rc.handshake = nil })
	if sub := s.Subscriptions()[0]; sub.ETag != etag2 || sub.Expiration != clk.Now().Add(-time.Hour).Add(72*time.Hour) {
		t.Errorf("after a failed renewal: %+v", sub)
	}
	if r := send(t, s, tok, http.MethodPatch, path, `{"resource":"`+resource(s, bctest.SetCustomers)+`"}`, "If-Match", "*"); r.status != 400 {
		t.Errorf("changing the resource: %d %v", r.status, r.body)
	}
	if r := send(t, s, tok, http.MethodPut, path, "{}", "If-Match", "*"); r.status != 405 {
		t.Errorf("PUT: %d", r.status)
	}

	// Delete.
	if r := send(t, s, tok, http.MethodDelete, path, ""); r.status != 400 || errorCode(r.body) != "BadRequest_InvalidToken" {
		t.Errorf("DELETE without If-Match: %d %v", r.status, r.body)
	}
	if r := send(t, s, tok, http.MethodDelete, path, "", "If-Match", etag1); r.status != 409 {
		t.Errorf("DELETE with a stale etag: %d %v", r.status, r.body)
	}
	if r := send(t, s, tok, http.MethodDelete, path, "", "If-Match", etag2); r.status != 204 || r.body != nil {
		t.Errorf("DELETE: %d %v", r.status, r.body)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPatch} {
		if r := send(t, s, tok, m, path, "{}", "If-Match", "*"); r.status != 404 || errorCode(r.body) != "Internal_RecordNotFound" {
			t.Errorf("%s after delete: %d %v", m, r.status, r.body)
		}
	}
	if r := send(t, s, tok, http.MethodGet, subsPath(s)+"("+id+")", ""); r.status != 400 {
		t.Errorf("unquoted key: %d", r.status)
	}
	if r := send(t, s, tok, http.MethodGet, companyPath(s)+"/subscriptions", ""); r.status != 404 {
		t.Errorf("subscriptions under a company: %d", r.status)
	}
}

func TestSubscriptionExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := newServer(t, bctest.Options{Now: clk.Now, TokenLifetime: 200 * time.Hour})
	tok := token(t, s)
	rc := newReceiver(t)
	id := subscribe(t, s, tok, rc.srv.URL, bctest.SetCustomers, "")["subscriptionId"].(string)
	clk.Advance(72*time.Hour - time.Second)
	if r := send(t, s, tok, http.MethodGet, subPath(s, id), ""); r.status != 200 {
		t.Fatalf("a second before expiry: %d", r.status)
	}
	clk.Advance(time.Second)
	if r := send(t, s, tok, http.MethodGet, subPath(s, id), ""); r.status != 404 {
		t.Errorf("expired: %d %v", r.status, r.body)
	}
	if r := send(t, s, tok, http.MethodGet, subsPath(s), ""); len(values(t, r.body)) != 0 {
		t.Errorf("expired subscription listed: %v", r.body)
	}
	if r := send(t, s, tok, http.MethodPatch, subPath(s, id), "{}", "If-Match", "*"); r.status != 404 {
		t.Errorf("renewing an expired subscription: %d", r.status)
	}
	if len(s.Subscriptions()) != 0 {
		t.Error("Subscriptions() lists an expired subscription")
	}
	if d, err := s.Notify(t.Context(), bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: "C000001"}); err != nil || len(d) != 0 {
		t.Errorf("Notify to an expired subscription: %v %v", d, err)
	}
}

func TestNotify(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := newServer(t, bctest.Options{Now: clk.Now})
	tok := token(t, s)
	a, b := newReceiver(t), newReceiver(t)
	subA := subscribe(t, s, tok, a.srv.URL, bctest.SetCustomers, "state-a")
	subItems := subscribe(t, s, tok, a.srv.URL, bctest.SetItems, "state-items")
	subB := subscribe(t, s, tok, b.srv.URL, bctest.SetCustomers, "state-b")

	cust, _ := s.Record(bctest.SetCustomers, "C000003")
	item, _ := s.Record(bctest.SetItems, "I00002")
	gone := "6a1f5a8e-2b7c-4d3e-9f10-1a2b3c4d5e6f"
	since := clk.Now().Add(-time.Minute)
	ds, err := s.Notify(t.Context(),
		bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: "C000003"},
		bctest.Change{Set: bctest.SetItems, Type: bctest.ChangeCreated, Key: item["id"].(string)},
		bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeDeleted, Key: gone},
		bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeCollection, Since: since},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].URL != a.srv.URL || ds[1].URL != b.srv.URL {
		t.Fatalf("deliveries %+v", ds)
	}
	for _, d := range ds {
		if d.Status != 202 || d.Err != nil || d.Dropped {
			t.Errorf("delivery %+v", d)
		}
	}
	if !slices.Equal(ds[0].Subscriptions, []string{subA["subscriptionId"].(string), subItems["subscriptionId"].(string)}) {
		t.Errorf("A's subscriptions %v", ds[0].Subscriptions)
	}

	co := "api/v2.0/companies(" + s.CompanyID() + ")/"
	item0 := func(sub map[string]any, res, changeType, at string) map[string]any {
		return map[string]any{
			"subscriptionId": sub["subscriptionId"], "clientState": sub["clientState"],
			"expirationDateTime": sub["expirationDateTime"], "resource": res,
			"changeType": changeType, "lastModifiedDateTime": at,
		}
	}
	now := clk.Now().Format("2006-01-02T15:04:05.000Z")
	collection := co + "customers?$filter=lastModifiedDateTime%20gt%20" + since.Format("2006-01-02T15:04:05.000Z")
	wantA := map[string]any{"value": []any{
		item0(subA, co+"customers("+cust["id"].(string)+")", "updated", cust["lastModifiedDateTime"].(string)),
		item0(subItems, co+"items("+item["id"].(string)+")", "created", item["lastModifiedDateTime"].(string)),
		item0(subA, co+"customers("+gone+")", "deleted", now),
		item0(subA, collection, "collection", now),
	}}
	wantB := map[string]any{"value": []any{
		item0(subB, co+"customers("+cust["id"].(string)+")", "updated", cust["lastModifiedDateTime"].(string)),
		item0(subB, co+"customers("+gone+")", "deleted", now),
		item0(subB, collection, "collection", now),
	}}
	for _, c := range []struct {
		rc   *receiver
		want map[string]any
	}{{a, wantA}, {b, wantB}} {
		c.rc.mu.Lock()
		if len(c.rc.notes) != 1 || c.rc.types[0] != "application/json" {
			t.Errorf("%d notifications, Content-Type %v", len(c.rc.notes), c.rc.types)
		} else if got := c.rc.notes[0]; !jsonEqual(got, c.want) {
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(c.want, "", " ")
			t.Errorf("notification\n%s\nwant\n%s", g, w)
		}
		c.rc.mu.Unlock()
	}
	var posted map[string]any
	if err := json.Unmarshal(ds[1].Body, &posted); err != nil || !jsonEqual(posted, wantB) {
		t.Errorf("Delivery.Body %s", ds[1].Body)
	}

	// Changes Notify refuses.
	for _, ch := range []bctest.Change{
		{Set: bctest.SetLocations, Type: bctest.ChangeUpdated, Key: "L0001"},
		{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: "NOPE"},
		{Set: bctest.SetCustomers, Type: bctest.ChangeDeleted, Key: "NOPE"},
		{Set: bctest.SetCustomers, Type: "touched", Key: "C000001"},
		{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: "C000001", CompanyID: "00000000-0000-4000-8000-000000000001"},
	} {
		if _, err := s.Notify(t.Context(), ch); err == nil {
			t.Errorf("Notify(%+v) succeeded", ch)
		}
	}
	// Another company's change reaches nobody.
	other := values(t, send(t, s, tok, http.MethodGet, apiRoot(s)+"/companies", "").body)[1]["id"].(string)
	if ds, err := s.Notify(t.Context(), bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeCollection, CompanyID: other}); err != nil || len(ds) != 0 {
		t.Errorf("other company: %v %v", ds, err)
	}

	// BC retries 408, 429 and 5xx; any other error deletes the subscription.
	b.set(func(rc *receiver) { rc.noteStatus = http.StatusServiceUnavailable })
	ds, _ = s.Notify(t.Context(), bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: "C000001"})
	if len(ds) != 2 || ds[1].Status != 503 || ds[1].Err == nil || ds[1].Dropped || len(s.Subscriptions()) != 3 {
		t.Errorf("503: %+v", ds)
	}
	b.set(func(rc *receiver) { rc.noteStatus = http.StatusGone })
	ds, _ = s.Notify(t.Context(), bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: "C000001"})
	if len(ds) != 2 || ds[1].Status != 410 || !ds[1].Dropped {
		t.Errorf("410: %+v", ds)
	}
	if subs := s.Subscriptions(); len(subs) != 2 || slices.ContainsFunc(subs, func(x bctest.Subscription) bool { return x.ID == subB["subscriptionId"] }) {
		t.Errorf("after 410: %+v", subs)
	}

	// DropSubscription, as BC does.
	if !s.DropSubscription(subItems["subscriptionId"].(string)) || s.DropSubscription(subItems["subscriptionId"].(string)) {
		t.Error("DropSubscription")
	}
	if r := send(t, s, tok, http.MethodGet, subPath(s, subItems["subscriptionId"].(string)), ""); r.status != 404 {
		t.Errorf("dropped subscription: %d", r.status)
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var va, vb any
	_ = json.Unmarshal(ja, &va)
	_ = json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

func TestSubscriptionCap(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	rc := newReceiver(t)
	var last map[string]any
	for i := range bctest.DefaultMaxSubscriptions {
		last = subscribe(t, s, tok, fmt.Sprintf("%s/hook/%d", rc.srv.URL, i), bctest.SetCustomers, "")
	}
	r := send(t, s, tok, http.MethodPost, subsPath(s), subBody(rc.srv.URL, resource(s, bctest.SetItems), ""))
	if r.status != 400 || errorCode(r.body) != "BadRequest_SubscriptionLimitReached" {
		t.Errorf("201st: %d %v", r.status, r.body)
	}
	if rc.count() != bctest.DefaultMaxSubscriptions {
		t.Errorf("%d handshakes: the refused one should not call the endpoint", rc.count())
	}
	if r := send(t, s, tok, http.MethodDelete, subPath(s, last["subscriptionId"].(string)), "", "If-Match", "*"); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	subscribe(t, s, tok, rc.srv.URL, bctest.SetItems, "")

	small := newServer(t, bctest.Options{MaxSubscriptions: 1})
	stok := token(t, small)
	subscribe(t, small, stok, rc.srv.URL, bctest.SetItems, "")
	if r := send(t, small, stok, http.MethodPost, subsPath(small), subBody(rc.srv.URL, resource(small, bctest.SetItems), "")); r.status != 400 {
		t.Errorf("MaxSubscriptions 1: %d", r.status)
	}
}
