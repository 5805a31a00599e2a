package ipaasclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
)

// call is one request seen by a recorder.
type call struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// hook may answer a request itself (returning true) before the fake sees it.
type hook func(w http.ResponseWriter, r *http.Request, body []byte) bool

// recorder records every request, then passes it to the hook and the fake.
type recorder struct {
	next http.Handler
	hook hook

	mu    sync.Mutex
	calls []call
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.calls = append(rec.calls, call{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	rec.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if rec.hook != nil && rec.hook(w, r, body) {
		return
	}
	rec.next.ServeHTTP(w, r)
}

// take returns the calls recorded since the last take.
func (rec *recorder) take() []call {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	c := rec.calls
	rec.calls = nil
	return c
}

// lines renders calls as "METHOD path".
func lines(calls []call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Method + " " + c.Path
	}
	return out
}

// setup starts the fake behind a recorder and returns a client for it.
func setup(t *testing.T, opts ipaastest.Options, h hook, mod ...func(*ipaasclient.Config)) (*ipaastest.Server, *recorder, *ipaasclient.Client) {
	t.Helper()
	fake := ipaastest.New(opts)
	rec := &recorder{next: fake.Handler(), hook: h}
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close)
	cfg := ipaasclient.Config{
		BaseURL:  hs.URL,
		APIKey:   fake.APIKey(),
		ClientID: fake.ClientID(),
		SystemID: fake.SystemID(),
		Timeout:  5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := ipaasclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fake, rec, c
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := ipaasclient.New(ipaasclient.Config{BaseURL: "ftp://user:pw@example.com/customers?x=1", Timeout: -1, MaxBodyBytes: -1})
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"BaseURL", "APIKey is required", "SystemID 0", "Timeout", "MaxBodyBytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "pw") {
		t.Errorf("error shows the URL's password: %v", err)
	}
	c, err := ipaasclient.New(ipaasclient.Config{APIKey: "k", SystemID: 1})
	if err != nil || c == nil {
		t.Fatalf("New with defaults: %v", err)
	}
}

func TestConfigNeverPrintsTheKey(t *testing.T) {
	t.Parallel()
	const key = "sk-live-0123456789abcdef"
	cfg := ipaasclient.Config{APIKey: key, SystemID: 7}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, cfg); strings.Contains(s, key) || !strings.Contains(s, "[redacted]") {
			t.Errorf("%s prints %s", verb, s)
		}
	}
	_, err := ipaasclient.New(ipaasclient.Config{APIKey: key + "\n", SystemID: 1})
	if err == nil || strings.Contains(err.Error(), key) {
		t.Errorf("bad key: err = %v", err)
	}
}

func TestUpsertCreateThenUpdateMerges(t *testing.T) {
	t.Parallel()
	fake, _, c := setup(t, ipaastest.Options{}, nil)
	ctx := t.Context()
	loc := ipaasclient.Location{Name: "EAST", Description: "East warehouse", City: "Boston", Phone: "555-0100"}
	res, err := c.Upsert(ctx, loc, "EAST")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.ID == "" {
		t.Fatalf("first upsert: %+v, want created", res)
	}
	// Another system sets a field bcsync does not own.
	custom := []any{map[string]any{"name": "dock", "value": "3"}}
	if err := fake.Patch(ipaastest.TableLocation, "EAST", map[string]any{"custom_fields": custom}); err != nil {
		t.Fatal(err)
	}
	loc.Description = "" // emptied in BC: must be cleared
	loc.City = "Cambridge"
	res2, err := c.Upsert(ctx, loc, "EAST")
	if err != nil {
		t.Fatal(err)
	}
	if res2.Created || res2.ID != res.ID {
		t.Errorf("second upsert: %+v, want an update of %s", res2, res.ID)
	}
	if n := fake.Count(ipaastest.TableLocation); n != 1 {
		t.Fatalf("%d locations, want 1", n)
	}
	got, ok := fake.Lookup(ipaastest.TableLocation, "EAST")
	if !ok {
		t.Fatal("no location linked to EAST")
	}
	wantExt := []any{map[string]any{"system_id": float64(fake.SystemID()), "external_id": "EAST"}}
	for field, want := range map[string]any{
		"id": res.ID, "name": "EAST", "description": "", "city": "Cambridge", "phone": "555-0100",
		"custom_fields": custom, "external_ids": wantExt,
	} {
		if g, w := mustJSON(t, got[field]), mustJSON(t, want); g != w {
			t.Errorf("%s = %s, want %s", field, g, w)
		}
	}
	st := fake.Stats()
	if st.Creates != 1 || st.Updates != 1 || st.CreateConflicts != 0 {
		t.Errorf("stats %+v, want 1 create and 1 update", st)
	}
}

// BC has no comment for a customer: the one written at iPaaS.com is kept
// by every sync of the customer, not cleared by the PUT.
func TestUpsertKeepsTheCustomerComment(t *testing.T) {
	t.Parallel()
	fake, _, c := setup(t, ipaastest.Options{}, nil)
	ctx := t.Context()
	cust := ipaasclient.Customer{CustomerNumber: "10000", LastName: "Adatum", Company: "Adatum", EmailAddress: "a@adatum.example"}
	if _, err := c.Upsert(ctx, cust, "10000"); err != nil {
		t.Fatal(err)
	}
	if err := fake.Patch(ipaastest.TableCustomer, "10000", map[string]any{"comment": "VIP: call before shipping"}); err != nil {
		t.Fatal(err)
	}
	cust.EmailAddress = "" // emptied in BC: must be cleared
	if _, err := c.Upsert(ctx, cust, "10000"); err != nil {
		t.Fatal(err)
	}
	got, ok := fake.Lookup(ipaastest.TableCustomer, "10000")
	if !ok {
		t.Fatal("no customer linked to 10000")
	}
	if got["comment"] != "VIP: call before shipping" {
		t.Errorf("comment = %#v after a sync from BC, want the one written at iPaaS.com", got["comment"])
	}
	if got["email_address"] != "" {
		t.Errorf("email_address = %#v, want it cleared as in BC", got["email_address"])
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUpsertConcurrentSameExternalIDMakesOneRecord(t *testing.T) {
	t.Parallel()
	const n = 20
	// Hold the answers of the first n look-ups until all were answered, so
	// that every upsert sees "no link" and creates: the race of n workers.
	var (
		fake    *ipaastest.Server
		arrived atomic.Int32
		all     = make(chan struct{})
	)
	h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/LookupSpecial") {
			return false
		}
		rr := httptest.NewRecorder()
		fake.Handler().ServeHTTP(rr, r)
		switch k := arrived.Add(1); {
		case k == n:
			close(all)
		case k < n:
			select {
			case <-all:
			case <-time.After(5 * time.Second):
				t.Error("the look-ups did not all arrive")
			}
		}
		for k, v := range rr.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rr.Code)
		_, _ = w.Write(rr.Body.Bytes())
		return true
	}
	fake, _, c := setup(t, ipaastest.Options{}, h)
	var (
		wg      sync.WaitGroup
		created atomic.Int32
		ids     sync.Map
	)
	for i := range n {
		wg.Go(func() {
			res, err := c.Upsert(t.Context(), ipaasclient.Customer{CustomerNumber: "C1", LastName: fmt.Sprintf("Smith %d", i)}, "C1")
			if err != nil {
				t.Error(err)
				return
			}
			if res.Created {
				created.Add(1)
			}
			ids.Store(res.ID, true)
		})
	}
	wg.Wait()
	if got := fake.Count(ipaastest.TableCustomer); got != 1 {
		t.Errorf("%d customers, want 1", got)
	}
	if got := fake.Links(ipaastest.TableCustomer); got != 1 {
		t.Errorf("%d links, want 1", got)
	}
	if created.Load() != 1 {
		t.Errorf("%d upserts report a create, want 1", created.Load())
	}
	distinct := 0
	ids.Range(func(any, any) bool { distinct++; return true })
	if distinct != 1 {
		t.Errorf("%d distinct ids returned, want 1", distinct)
	}
	if st := fake.Stats(); st.Creates != 1 || st.CreateConflicts != n-1 || st.Updates != n-1 {
		t.Errorf("stats %+v: want 1 create, %d create conflicts, %d updates", st, n-1, n-1)
	}
}

// isCreate reports whether r creates a record (a POST that is no External call).
func isCreate(r *http.Request) bool {
	return r.Method == http.MethodPost && !strings.Contains(r.URL.Path, "/External/")
}

func TestUpsertCreateConflictLooksUpAndPuts(t *testing.T) {
	t.Parallel()
	var fake *ipaastest.Server
	var once sync.Once
	var preID string
	// Between the client's look-up and its create, another attempt creates
	// the record and its link.
	h := func(_ http.ResponseWriter, r *http.Request, _ []byte) bool {
		if isCreate(r) {
			once.Do(func() {
				id, err := fake.Create(ipaastest.TableLocation, "WEST", map[string]any{"name": "WEST", "city": "Old"})
				if err != nil {
					t.Error(err)
				}
				preID = id
			})
		}
		return false
	}
	fake, rec, c := setup(t, ipaastest.Options{}, h)
	res, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "WEST", City: "Denver"}, "WEST")
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.ID != preID {
		t.Errorf("result %+v, want an update of %s", res, preID)
	}
	want := []string{
		"POST /products/v2/External/LookupSpecial",
		"POST /products/v2/Catalog/Location",
		"POST /products/v2/External/LookupSpecial",
		"GET /products/v2/Catalog/Location/" + preID,
		"PUT /products/v2/Catalog/Location/" + preID,
	}
	if got := lines(rec.take()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	st := fake.Stats()
	if st.CreateConflicts != 1 || st.Creates != 0 || st.Updates != 1 {
		t.Errorf("stats %+v, want one create conflict and one update", st)
	}
	if got, _ := fake.Lookup(ipaastest.TableLocation, "WEST"); got["city"] != "Denver" || fake.Count(ipaastest.TableLocation) != 1 {
		t.Errorf("record %v (of %d), want city Denver (of 1)", got, fake.Count(ipaastest.TableLocation))
	}
}

// TestUpsertLostCreateAnswer: the create went through but its answer was a
// 400 BIZL-1005 (as a retry after a lost answer sees it).
func TestUpsertLostCreateAnswer(t *testing.T) {
	t.Parallel()
	var fake *ipaastest.Server
	h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !isCreate(r) {
			return false
		}
		fake.Handler().ServeHTTP(httptest.NewRecorder(), r) // creates
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"errors":[{"code":"BIZL-1005","message":"External id already exists"}]}`)
		return true
	}
	fake, rec, c := setup(t, ipaastest.Options{}, h)
	res, err := c.Upsert(t.Context(), ipaasclient.ShippingMethod{Name: "UPS", Description: "UPS Ground"}, "UPS")
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.ID == "" {
		t.Errorf("result %+v, want an update", res)
	}
	if n := fake.Count(ipaastest.TableShippingMethod); n != 1 {
		t.Errorf("%d shipping methods, want 1", n)
	}
	if got := lines(rec.take()); len(got) != 5 || got[4] != "PUT /transactions/v2/ShippingMethod/"+res.ID {
		t.Errorf("calls %q, want look-up, create, look-up, GET, PUT", got)
	}
}

// TestUpsertUnresolvedConflictIsBounded: a conflict whose second look-up
// finds no link is returned, with no second create.
func TestUpsertUnresolvedConflictIsBounded(t *testing.T) {
	t.Parallel()
	h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !isCreate(r) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"errors":[{"code":"BIZL-1003","message":"duplicate"}]}`)
		return true
	}
	fake, rec, c := setup(t, ipaastest.Options{}, h)
	_, err := c.Upsert(t.Context(), ipaasclient.CustomerCategory{Name: "RETAIL"}, "RETAIL")
	if !errors.Is(err, ipaasclient.ErrLinkConflict) {
		t.Fatalf("err = %v, want ErrLinkConflict", err)
	}
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) || ae.Family() != "BIZL" || ae.Temporary() {
		t.Errorf("APIError %+v", ae)
	}
	want := []string{
		"POST /customers/v2/External/LookupSpecial",
		"POST /customers/v2/Customer/Category",
		"POST /customers/v2/External/LookupSpecial",
	}
	if got := lines(rec.take()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls %q, want %q", got, want)
	}
	if fake.Count(ipaastest.TableCustomerCategory) != 0 {
		t.Error("a record was created")
	}
}

func TestDeactivate(t *testing.T) {
	t.Parallel()
	fake, rec, c := setup(t, ipaastest.Options{}, nil)
	ctx := t.Context()
	found, err := c.Deactivate(ctx, ipaasclient.KindCustomer, "NOPE")
	if err != nil || found {
		t.Errorf("unlinked: found=%v err=%v, want false, nil", found, err)
	}
	if got := lines(rec.take()); len(got) != 1 {
		t.Errorf("unlinked: calls %q, want the look-up only", got)
	}
	first, err := c.Upsert(ctx, ipaasclient.Customer{CustomerNumber: "C9", FirstName: "Ann"}, "C9")
	if err != nil {
		t.Fatal(err)
	}
	found, err = c.Deactivate(ctx, ipaasclient.KindCustomer, "C9")
	if err != nil || !found {
		t.Fatalf("linked: found=%v err=%v, want true, nil", found, err)
	}
	if n := fake.Count(ipaastest.TableCustomer); n != 0 {
		t.Errorf("%d live customers after deactivation, want 0", n)
	}
	// Deleted: the look-up answers "DELETED:<id>".
	found, err = c.Deactivate(ctx, ipaasclient.KindCustomer, "C9")
	if err != nil || found {
		t.Errorf("deleted: found=%v err=%v, want false, nil", found, err)
	}
	// An upsert after deletion creates a new record and moves the link.
	res, err := c.Upsert(ctx, ipaasclient.Customer{CustomerNumber: "C9", FirstName: "Ann"}, "C9")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.ID == first.ID {
		t.Errorf("upsert after deletion: %+v, want a new record (old %s)", res, first.ID)
	}
	if fake.Count(ipaastest.TableCustomer) != 1 || fake.Links(ipaastest.TableCustomer) != 1 {
		t.Errorf("%d customers, %d links, want 1 and 1", fake.Count(ipaastest.TableCustomer), fake.Links(ipaastest.TableCustomer))
	}
}

func TestUnauthorizedNeverShowsTheKey(t *testing.T) {
	t.Parallel()
	const wrong = "wrong-key-5e6f7a8b9c0d"
	fake, _, c := setup(t, ipaastest.Options{}, nil, func(cfg *ipaasclient.Config) { cfg.APIKey = wrong })
	_, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST")
	if !errors.Is(err, ipaasclient.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "AUTH-1001" || ae.Family() != "AUTH" || ae.Temporary() {
		t.Errorf("APIError %+v", ae)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error holds the key: %v", err)
	}
	if !strings.HasPrefix(err.Error(), `ipaasclient: upsert location "EAST": `) {
		t.Errorf("error %q is not wrapped as documented", err)
	}
	if fake.Stats().Unauthorized != 1 {
		t.Errorf("stats %+v, want one 401", fake.Stats())
	}
}

func TestEchoedKeyIsRedacted(t *testing.T) {
	t.Parallel()
	const key = "Key/With+Special&Chars=0123456789"
	// A server that echoes the request's headers back in every shape.
	h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		auth := r.Header.Get("Authorization")
		hdr, _ := json.Marshal(map[string]any{"headers": r.Header, "code": "AUTH-1001", "message": "bad key: " + auth})
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "%s\nraw %s\nlower %s\nquery %s\n", hdr, auth, strings.ToLower(auth), "key="+strings.ReplaceAll(key, "/", "%2F"))
		return true
	}
	_, _, c := setup(t, ipaastest.Options{}, h, func(cfg *ipaasclient.Config) { cfg.APIKey = key })
	_, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST")
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) || !errors.Is(err, ipaasclient.ErrUnauthorized) {
		t.Fatalf("err = %v", err)
	}
	for name, s := range map[string]string{"Error": err.Error(), "Body": ae.Body, "Message": ae.Message} {
		l := strings.ToLower(s)
		for _, form := range []string{key, `Key\/With+Special\u0026Chars=0123456789`, "0123456789"} {
			if strings.Contains(l, strings.ToLower(form)) {
				t.Errorf("%s holds the key (%q): %s", name, form, s)
			}
		}
	}
}

func TestValidationErrorIsPermanent(t *testing.T) {
	t.Parallel()
	fake, _, c := setup(t, ipaastest.Options{}, nil)
	_, err := c.Upsert(t.Context(), ipaasclient.Customer{CustomerNumber: "C1", Company: "Fabrikam"}, "C1")
	if !errors.Is(err, ipaasclient.ErrValidation) || errors.Is(err, ipaasclient.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrValidation", err)
	}
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) || ae.Code != "VALD-1049" || ae.Family() != "VALD" || ae.Temporary() || ae.Status != 400 {
		t.Errorf("APIError %+v", ae)
	}
	if fake.Count(ipaastest.TableCustomer) != 0 {
		t.Error("an invalid customer was stored")
	}
}

func TestTemporaryErrorWithRetryAfter(t *testing.T) {
	t.Parallel()
	fake, _, c := setup(t, ipaastest.Options{}, nil)
	fake.FailNext(1, http.StatusServiceUnavailable, "INTL-1000", 2*time.Second)
	_, err := c.Upsert(t.Context(), ipaasclient.Product{SKU: "1000", Name: "Bicycle", DefaultPrice: 4000.5}, "1000")
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if !ae.Temporary() || ae.RetryAfter != 2*time.Second || ae.Family() != "INTL" || ae.Status != 503 {
		t.Errorf("APIError %+v, want temporary INTL with RetryAfter 2s", ae)
	}
	if errors.Is(err, ipaasclient.ErrValidation) {
		t.Error("a 503 is ErrValidation")
	}
	// Trying again succeeds and creates one record.
	res, err := c.Upsert(t.Context(), ipaasclient.Product{SKU: "1000", Name: "Bicycle", DefaultPrice: 4000.5}, "1000")
	if err != nil || !res.Created {
		t.Fatalf("retry: %+v, %v", res, err)
	}
	got, _ := fake.Lookup(ipaastest.TableProduct, "1000")
	if got["default_price"] != 4000.5 || fake.Count(ipaastest.TableProduct) != 1 {
		t.Errorf("product %v", got)
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	opts := ipaastest.Options{APIKey: "hdr-key-1", ClientID: "client-42"}
	_, rec, c := setup(t, opts, nil)
	ctx := ipaasclient.WithCorrelationID(t.Context(), "job-0001\r\nX-Evil: 1")
	if _, err := c.Upsert(ctx, ipaasclient.Location{Name: "EAST"}, "EAST"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upsert(ctx, ipaasclient.Location{Name: "EAST", City: "Boston"}, "EAST"); err != nil {
		t.Fatal(err)
	}
	calls := rec.take()
	if len(calls) != 5 {
		t.Fatalf("%d calls, want 5: %q", len(calls), lines(calls))
	}
	for _, cl := range calls {
		h := cl.Header
		if h.Get("Authorization") != "Bearer hdr-key-1" || h.Get("X-Client-Id") != "client-42" ||
			h.Get("X-Correlation-Id") != "job-0001X-Evil: 1" || h.Get("X-Evil") != "" {
			t.Errorf("%s %s headers %v", cl.Method, cl.Path, h)
		}
		wantCT := ""
		if len(cl.Body) > 0 {
			wantCT = "application/json"
		}
		if h.Get("Content-Type") != wantCT {
			t.Errorf("%s %s Content-Type %q, want %q", cl.Method, cl.Path, h.Get("Content-Type"), wantCT)
		}
	}
	// Without the client id the fake refuses.
	_, _, c2 := setup(t, opts, nil, func(cfg *ipaasclient.Config) { cfg.ClientID = "" })
	if _, err := c2.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST"); !errors.Is(err, ipaasclient.ErrUnauthorized) {
		t.Errorf("no client id: err = %v, want ErrUnauthorized", err)
	}
	// Without a correlation id no header is sent.
	_, rec3, c3 := setup(t, ipaastest.Options{}, nil)
	if _, err := c3.Deactivate(t.Context(), ipaasclient.KindLocation, "EAST"); err != nil {
		t.Fatal(err)
	}
	for _, cl := range rec3.take() {
		if _, ok := cl.Header["X-Correlation-Id"]; ok {
			t.Errorf("x-correlation-id sent without one in the context")
		}
		if _, ok := cl.Header["X-Client-Id"]; ok {
			t.Errorf("X-Client-Id sent without one configured")
		}
	}
}

// TestPathsPerKind checks every request of every Kind against the paths of
// ipaas.md, method, path and look-up body.
func TestPathsPerKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rec        ipaasclient.Record
		base, path string // path of the record collection
		table      string
	}{
		{ipaasclient.CustomerCategory{Name: "RETAIL"}, "/customers", "/customers/v2/Customer/Category", "customer category"},
		{ipaasclient.Location{Name: "EAST"}, "/products", "/products/v2/Catalog/Location", "location"},
		{ipaasclient.ShippingMethod{Name: "UPS"}, "/transactions", "/transactions/v2/ShippingMethod", "shipping method"},
		{ipaasclient.Customer{CustomerNumber: "C1", LastName: "Doe"}, "/customers", "/customers/v2/Customer", "customer"},
		{ipaasclient.Product{SKU: "1000", Name: "Bicycle", Status: ipaasclient.ProductStatusActive}, "/products", "/products/v2/Catalog/Product", "product"},
	}
	for _, tt := range tests {
		t.Run(string(tt.rec.Kind()), func(t *testing.T) {
			t.Parallel()
			fake, rec, c := setup(t, ipaastest.Options{}, nil)
			ctx := t.Context()
			const ext = "KEY-1"
			res, err := c.Upsert(ctx, tt.rec, ext)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Upsert(ctx, tt.rec, ext); err != nil {
				t.Fatal(err)
			}
			if found, err := c.Deactivate(ctx, tt.rec.Kind(), ext); err != nil || !found {
				t.Fatalf("deactivate: %v, %v", found, err)
			}
			lookup := "POST " + tt.base + "/v2/External/LookupSpecial"
			item := tt.path + "/" + res.ID
			want := []string{
				lookup, "POST " + tt.path,
				lookup, "GET " + item, "PUT " + item,
				lookup, "DELETE " + item,
			}
			calls := rec.take()
			if got := lines(calls); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			wantLookup := fmt.Sprintf(`{"table_name":%q,"system_id":%d,"external_id":%q}`, tt.table, fake.SystemID(), ext)
			for _, cl := range calls {
				if strings.HasSuffix(cl.Path, "/LookupSpecial") && string(cl.Body) != wantLookup {
					t.Errorf("look-up body %s, want %s", cl.Body, wantLookup)
				}
			}
			var created map[string]any
			if err := json.Unmarshal(calls[1].Body, &created); err != nil {
				t.Fatal(err)
			}
			if g, w := mustJSON(t, created["external_ids"]), fmt.Sprintf(`[{"external_id":%q,"system_id":%d}]`, ext, fake.SystemID()); g != w {
				t.Errorf("create external_ids %s, want %s", g, w)
			}
			if tt.rec.Kind().TableName() != tt.table {
				t.Errorf("TableName() = %q, want %q", tt.rec.Kind().TableName(), tt.table)
			}
		})
	}
}

// TestPathTable pins the path table, inferred marks included.
func TestPathTable(t *testing.T) {
	t.Parallel()
	type p = ipaasclient.PathInfo
	want := map[ipaasclient.Kind][]p{
		ipaasclient.KindCustomerCategory: {
			{"GET", "/customers/v2/Customer/Category/{id}", false}, {"POST", "/customers/v2/Customer/Category", true},
			{"PUT", "/customers/v2/Customer/Category/{id}", true}, {"DELETE", "/customers/v2/Customer/Category/{id}", true}},
		ipaasclient.KindLocation: {
			{"GET", "/products/v2/Catalog/Location/{id}", false}, {"POST", "/products/v2/Catalog/Location", true},
			{"PUT", "/products/v2/Catalog/Location/{id}", true}, {"DELETE", "/products/v2/Catalog/Location/{id}", true}},
		ipaasclient.KindShippingMethod: {
			{"GET", "/transactions/v2/ShippingMethod/{id}", true}, {"POST", "/transactions/v2/ShippingMethod", true},
			{"PUT", "/transactions/v2/ShippingMethod/{id}", true}, {"DELETE", "/transactions/v2/ShippingMethod/{id}", true}},
		ipaasclient.KindCustomer: {
			{"GET", "/customers/v2/Customer/{id}", false}, {"POST", "/customers/v2/Customer", true},
			{"PUT", "/customers/v2/Customer/{id}", true}, {"DELETE", "/customers/v2/Customer/{id}", true}},
		ipaasclient.KindProduct: {
			{"GET", "/products/v2/Catalog/Product/{id}", false}, {"POST", "/products/v2/Catalog/Product", true},
			{"PUT", "/products/v2/Catalog/Product/{id}", true}, {"DELETE", "/products/v2/Catalog/Product/{id}", true}},
	}
	for kind, w := range want {
		if g := ipaasclient.Paths(kind); mustJSON(t, g) != mustJSON(t, w) {
			t.Errorf("%s:\n got %v\nwant %v", kind, g, w)
		}
	}
}

// bogus is a Record of a Kind with no paths.
type bogus struct{}

func (bogus) Kind() ipaasclient.Kind { return "warehouse" }

func TestRefusedBeforeSending(t *testing.T) {
	t.Parallel()
	_, rec, c := setup(t, ipaastest.Options{}, nil)
	ctx := t.Context()
	if _, err := c.Upsert(ctx, bogus{}, "X"); !errors.Is(err, ipaasclient.ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := c.Deactivate(ctx, "warehouse", "X"); !errors.Is(err, ipaasclient.ErrUnknownKind) {
		t.Errorf("deactivate unknown kind: %v", err)
	}
	if _, err := c.Upsert(ctx, nil, "X"); err == nil {
		t.Error("nil record accepted")
	}
	for _, ext := range []string{"", "A\nB", "bad\xff", strings.Repeat("x", ipaasclient.MaxExternalIDLen+1)} {
		if _, err := c.Upsert(ctx, ipaasclient.Location{Name: "X"}, ext); !errors.Is(err, ipaasclient.ErrInvalidExternalID) {
			t.Errorf("external id %q: %v", ext, err)
		}
	}
	if n := len(rec.take()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// countingLimiter counts acquires and releases, and can refuse.
type countingLimiter struct {
	acquired, released atomic.Int32
	refuse             bool
}

func (l *countingLimiter) Acquire(context.Context) (func(), error) {
	if l.refuse {
		return nil, errors.New("budget spent")
	}
	l.acquired.Add(1)
	return func() { l.released.Add(1) }, nil
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	lim := &countingLimiter{}
	_, rec, c := setup(t, ipaastest.Options{}, nil, func(cfg *ipaasclient.Config) { cfg.Limiter = lim })
	if _, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST"); err != nil {
		t.Fatal(err)
	}
	n := int32(len(rec.take()))
	if n != 2 || lim.acquired.Load() != n || lim.released.Load() != n {
		t.Errorf("%d requests, %d acquired, %d released", n, lim.acquired.Load(), lim.released.Load())
	}
	lim.refuse = true
	if _, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST"); err == nil || !strings.Contains(err.Error(), "budget spent") {
		t.Errorf("refused: err = %v", err)
	}
	if n := len(rec.take()); n != 0 {
		t.Errorf("%d requests sent without a slot", n)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { leaked.Store(true) }))
	t.Cleanup(other.Close)
	h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		return true
	}
	_, _, c := setup(t, ipaastest.Options{}, h)
	_, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST"}, "EAST")
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTemporaryRedirect {
		t.Errorf("err = %v, want an *APIError with status 307", err)
	}
	if leaked.Load() {
		t.Error("the redirect was followed")
	}
}

func TestLookupAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body    string
		id      string
		deleted bool
		err     bool
	}{
		{`"4711"`, "4711", false, false},
		{" \"4711\"\n", "4711", false, false},
		{`4711`, "4711", false, false},
		{`"DELETED:4711"`, "4711", true, false},
		{`DELETED:4711`, "4711", true, false},
		{`"deleted: 12"`, "12", true, false},
		{``, "", false, false},
		{`null`, "", false, false},
		{`""`, "", false, false},
		{`"a/b"`, "", false, true},
		{`<html>login</html>`, "", false, true},
		{`"DELETED:"`, "", false, true},
		{`"unterminated`, "", false, true},
		{`".."`, "", false, true},
	}
	for _, tt := range tests {
		id, deleted, err := ipaasclient.ParseLookup([]byte(tt.body))
		if id != tt.id || deleted != tt.deleted || (err != nil) != tt.err {
			t.Errorf("%q: %q, %v, %v; want %q, %v, error %v", tt.body, id, deleted, err, tt.id, tt.deleted, tt.err)
		}
	}
}

// TestBareLookupAnswer: an unquoted id from LookupSpecial is accepted.
func TestBareLookupAnswer(t *testing.T) {
	t.Parallel()
	var fake *ipaastest.Server
	h := func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		if !strings.HasSuffix(r.URL.Path, "/LookupSpecial") {
			return false
		}
		rr := httptest.NewRecorder()
		fake.Handler().ServeHTTP(rr, r)
		var id string
		if rr.Code != http.StatusOK || json.Unmarshal(rr.Body.Bytes(), &id) != nil {
			w.WriteHeader(rr.Code) // 404 with an empty body
			return true
		}
		_, _ = io.WriteString(w, id+"\n")
		return true
	}
	fake, _, c := setup(t, ipaastest.Options{}, h)
	for i, want := range []bool{true, false} {
		res, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST", City: fmt.Sprint(i)}, "EAST")
		if err != nil || res.Created != want {
			t.Fatalf("upsert %d: %+v, %v", i, res, err)
		}
	}
	if fake.Count(ipaastest.TableLocation) != 1 {
		t.Errorf("%d locations", fake.Count(ipaastest.TableLocation))
	}
}

// observingLimiter records what the client reports of throttling.
type observingLimiter struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (l *observingLimiter) Acquire(context.Context) (func(), error) { return func() {}, nil }

func (l *observingLimiter) Throttled(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waits = append(l.waits, d)
}

func TestThrottlingIsReportedToTheLimiter(t *testing.T) {
	t.Parallel()
	s := ipaastest.NewServer(ipaastest.Options{})
	t.Cleanup(s.Close)
	lim := &observingLimiter{}
	c, err := ipaasclient.New(ipaasclient.Config{BaseURL: s.URL(), APIKey: s.APIKey(), SystemID: s.SystemID(), Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	s.FailNext(1, http.StatusTooManyRequests, "", 3*time.Second)
	if _, err := c.Upsert(context.Background(), ipaasclient.Location{Name: "EAST"}, "EAST"); err == nil {
		t.Fatal("the 429 was not returned")
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if len(lim.waits) != 1 || lim.waits[0] != 3*time.Second {
		t.Errorf("limiter heard %v, want one 3s pause", lim.waits)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	_, _, c := setup(t, ipaastest.Options{}, nil)
	if err := c.Ping(t.Context()); err != nil {
		t.Errorf("ping with the right key: %v", err)
	}
	_, _, bad := setup(t, ipaastest.Options{}, nil, func(cfg *ipaasclient.Config) { cfg.APIKey = "expired-key-0000000000000000" })
	err := bad.Ping(t.Context())
	var ae *ipaasclient.APIError
	if !errors.As(err, &ae) || ae.Family() != "AUTH" {
		t.Errorf("ping with a wrong key = %v, want an AUTH APIError", err)
	}
}

// TestUpsertCreateFirst: a record the caller believes new is created in one
// call; one that exists after all is updated, never duplicated, and so is a
// link to a deleted record recreated.
func TestUpsertCreateFirst(t *testing.T) {
	t.Parallel()
	fake, rec, c := setup(t, ipaastest.Options{}, nil)
	ctx := t.Context()
	res, err := c.Upsert(ctx, ipaasclient.Location{Name: "NORTH", City: "Oslo"}, "NORTH", ipaasclient.CreateFirst())
	if err != nil || !res.Created {
		t.Fatalf("create first of a new record: %+v, %v", res, err)
	}
	if got := lines(rec.take()); strings.Join(got, "\n") != "POST /products/v2/Catalog/Location" {
		t.Errorf("calls for a new record:\n%s\nwant only the create", strings.Join(got, "\n"))
	}
	// Believed new, but it exists: the refused create leads to an update.
	res2, err := c.Upsert(ctx, ipaasclient.Location{Name: "NORTH", City: "Bergen"}, "NORTH", ipaasclient.CreateFirst())
	if err != nil || res2.Created || res2.ID != res.ID {
		t.Fatalf("create first of an existing record: %+v, %v; want an update of %s", res2, err, res.ID)
	}
	want := []string{
		"POST /products/v2/Catalog/Location",
		"POST /products/v2/External/LookupSpecial",
		"GET /products/v2/Catalog/Location/" + res.ID,
		"PUT /products/v2/Catalog/Location/" + res.ID,
	}
	if got := lines(rec.take()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, _ := fake.Lookup(ipaastest.TableLocation, "NORTH"); got["city"] != "Bergen" || fake.Count(ipaastest.TableLocation) != 1 {
		t.Errorf("record %v (of %d), want city Bergen (of 1)", got, fake.Count(ipaastest.TableLocation))
	}
	// Deactivated in iPaaS.com: created anew, as without CreateFirst.
	if found, err := c.Deactivate(ctx, ipaasclient.KindLocation, "NORTH"); err != nil || !found {
		t.Fatalf("deactivate: %v, %v", found, err)
	}
	res3, err := c.Upsert(ctx, ipaasclient.Location{Name: "NORTH", City: "Tromsø"}, "NORTH", ipaasclient.CreateFirst())
	if err != nil || !res3.Created || res3.ID == res.ID {
		t.Fatalf("create first after a delete: %+v, %v", res3, err)
	}
}

// deletedBehind is a fake that deletes, on the first request of method for
// a record, that record first, as a user or another integration would
// between the client's look-up and its request.
func deletedBehind(t *testing.T, method string) (*ipaastest.Server, *ipaasclient.Client) {
	t.Helper()
	var (
		fake *ipaastest.Server
		once sync.Once
	)
	h := func(_ http.ResponseWriter, r *http.Request, _ []byte) bool {
		if r.Method == method {
			once.Do(func() {
				del := httptest.NewRequest(http.MethodDelete, r.URL.Path, nil)
				del.Header.Set("Authorization", "Bearer "+fake.APIKey())
				w := httptest.NewRecorder()
				fake.Handler().ServeHTTP(w, del)
				if w.Code != http.StatusNoContent {
					t.Errorf("DELETE: HTTP %d %s", w.Code, w.Body)
				}
			})
		}
		return false
	}
	fake, _, c := setup(t, ipaastest.Options{}, h)
	return fake, c
}

// A record deleted at iPaaS.com between the client's look-up, which still
// found it live, and its GET: the upsert must not end with a not-found
// error, which the worker dead-letters at once; a retry's look-up answers
// DELETED: and creates it anew.
func TestUpsertOfARecordDeletedAfterItsLookup(t *testing.T) {
	t.Parallel()
	fake, c := deletedBehind(t, http.MethodGet)
	if _, err := fake.Create(ipaastest.TableLocation, "EAST", map[string]any{"name": "EAST"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST", City: "Boston"}, "EAST")
	if !errors.Is(err, ipaasclient.ErrDeletedMeanwhile) || errors.Is(err, ipaasclient.ErrNotFound) {
		t.Fatalf("upsert: %v, want ErrDeletedMeanwhile (a retry looks it up again), not ErrNotFound", err)
	}
	if _, err := c.Upsert(t.Context(), ipaasclient.Location{Name: "EAST", City: "Boston"}, "EAST"); err != nil {
		t.Fatalf("upsert retried: %v", err)
	}
	if got, ok := fake.Lookup(ipaastest.TableLocation, "EAST"); !ok || got["city"] != "Boston" {
		t.Errorf("EAST = %v, %v; want a live record with city Boston", got, ok)
	}
}

// The same race for a delete: the record is deleted at iPaaS.com between
// the look-up and the DELETE. Nothing is left to deactivate: found=false,
// not a not-found error that the worker dead-letters.
func TestDeactivateOfARecordDeletedAfterItsLookup(t *testing.T) {
	t.Parallel()
	fake, c := deletedBehind(t, http.MethodDelete)
	if _, err := fake.Create(ipaastest.TableCustomer, "C1", map[string]any{"last_name": "Doe"}); err != nil {
		t.Fatal(err)
	}
	if found, err := c.Deactivate(t.Context(), ipaasclient.KindCustomer, "C1"); err != nil || found {
		t.Fatalf("deactivate: %v, %v; want nothing found, no error", found, err)
	}
}
