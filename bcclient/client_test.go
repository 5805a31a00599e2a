package bcclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
)

// fake starts a bctest server for the test.
func fake(t *testing.T, opts bctest.Options) *bctest.Server {
	t.Helper()
	s := bctest.NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// credentials are the fake's correct credentials.
func credentials(s *bctest.Server) bcclient.Credentials {
	return bcclient.Credentials{
		AuthorityURL: s.URL(),
		TenantID:     s.TenantID(),
		ClientID:     s.ClientID(),
		ClientSecret: s.ClientSecret(),
	}
}

// config is a Config for s with a real token source.
func config(t *testing.T, s *bctest.Server) bcclient.Config {
	return bcclient.Config{
		APIURL:      s.URL(),
		TenantID:    s.TenantID(),
		Environment: s.Environment(),
		CompanyName: s.CompanyName(),
		TokenSource: bcclient.NewTokenSource(t.Context(), credentials(s)),
	}
}

func newClient(t *testing.T, cfg bcclient.Config) *bcclient.Client {
	t.Helper()
	c, err := bcclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCompanyWithQuoteInName(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{CompanyName: "O'Brien & Sons, Inc. #1"})
	c := newClient(t, config(t, s))
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = c.CompanyID(t.Context())
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != s.CompanyID() {
			t.Fatalf("CompanyID = %q, %v; want %q", ids[i], errs[i], s.CompanyID())
		}
	}
	if got := s.Stats().DataRequests[bctest.SetCompanies]; got != 1 {
		t.Errorf("%d company lookups, want 1 (cached)", got)
	}
	// The OData V4 path carries the name too.
	g, err := c.GetCustomerPriceGroup(t.Context(), "PG001")
	if err != nil || g.Code != "PG001" {
		t.Errorf("GetCustomerPriceGroup = %+v, %v", g, err)
	}
	if _, err := c.GetLocation(t.Context(), "L0001"); err != nil {
		t.Error(err)
	}
}

func TestCompanyNotFound(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.CompanyName = "CRONUS USA" // a prefix of the real name
	c := newClient(t, cfg)
	_, err := c.GetLocation(t.Context(), "L0001")
	var apiErr *bcclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "Internal_CompanyNotFound" || !strings.Contains(err.Error(), `"CRONUS USA"`) {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, bcclient.ErrNotFound) {
		t.Error("a missing company is ErrNotFound")
	}
	if _, err := c.CompanyID(t.Context()); err == nil {
		t.Error("second lookup succeeded")
	}
	if got := s.Stats().DataRequests[bctest.SetCompanies]; got != 2 {
		t.Errorf("%d lookups, want 2 (failures are not cached)", got)
	}
}

// hasJSONFields checks that every JSON field of T is in row, so that a
// wrong tag in types.go shows.
func hasJSONFields[T any](t *testing.T, row map[string]any) {
	t.Helper()
	typ := reflect.TypeFor[T]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if _, ok := row[name]; !ok {
			t.Errorf("%s.%s: BC has no field %q", typ.Name(), typ.Field(i).Name, name)
		}
	}
}

// asRecord decodes a fake's row into T.
func asRecord[T any](t *testing.T, row map[string]any) T {
	t.Helper()
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGet(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	c := newClient(t, config(t, s))
	ctx := t.Context()

	loc := s.Rows(bctest.SetLocations)[4]
	hasJSONFields[bcclient.Location](t, loc)
	want := asRecord[bcclient.Location](t, loc)
	for _, key := range []string{loc["code"].(string), loc["id"].(string), strings.ToUpper(loc["id"].(string))} {
		got, err := c.GetLocation(ctx, key)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("GetLocation(%q) = %+v, %v; want %+v", key, got, err, want)
		}
	}
	if want.LastModifiedDateTime.IsZero() || want.City == "" || !strings.HasPrefix(want.ETag, `W/"`) {
		t.Errorf("location decoded poorly: %+v", want)
	}

	sm := s.Rows(bctest.SetShipmentMethods)[2]
	hasJSONFields[bcclient.ShipmentMethod](t, sm)
	wantSM := asRecord[bcclient.ShipmentMethod](t, sm)
	for _, key := range []string{sm["code"].(string), sm["id"].(string)} {
		if got, err := c.GetShipmentMethod(ctx, key); err != nil || got != wantSM {
			t.Errorf("GetShipmentMethod(%q) = %+v, %v", key, got, err)
		}
	}

	for _, i := range []int{0, 1} { // a company and a person
		cu := s.Rows(bctest.SetCustomers)[i]
		hasJSONFields[bcclient.Customer](t, cu)
		wantCu := asRecord[bcclient.Customer](t, cu)
		for _, key := range []string{cu["number"].(string), cu["id"].(string)} {
			if got, err := c.GetCustomer(ctx, key); err != nil || got != wantCu {
				t.Errorf("GetCustomer(%q) = %+v, %v", key, got, err)
			}
		}
	}

	pg := s.Rows("CustomerPriceGroups")[1]
	hasJSONFields[bcclient.CustomerPriceGroup](t, pg)
	if got, err := c.GetCustomerPriceGroup(ctx, "PG002"); err != nil || got != asRecord[bcclient.CustomerPriceGroup](t, pg) {
		t.Errorf("GetCustomerPriceGroup = %+v, %v", got, err)
	}
}

func TestGetNotFound(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	c := newClient(t, config(t, s))
	ctx := t.Context()
	tests := []struct {
		name string
		get  func() error
		api  bool // BC answered 404 (not an empty filter result)
	}{
		{"location code", func() error { _, err := c.GetLocation(ctx, "NOPE"); return err }, false},
		{"location code with quote", func() error { _, err := c.GetLocation(ctx, "O'NEIL"); return err }, false},
		{"location id", func() error {
			_, err := c.GetLocation(ctx, "00000000-0000-4000-8000-000000000001")
			return err
		}, true},
		{"shipment method", func() error { _, err := c.GetShipmentMethod(ctx, "SM999"); return err }, false},
		{"customer number", func() error { _, err := c.GetCustomer(ctx, "C999999"); return err }, false},
		{"customer id", func() error {
			_, err := c.GetCustomer(ctx, "00000000-0000-4000-8000-000000000001")
			return err
		}, true},
		{"price group", func() error { _, err := c.GetCustomerPriceGroup(ctx, "NO'PE"); return err }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.get()
			if !errors.Is(err, bcclient.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			var apiErr *bcclient.APIError
			if errors.As(err, &apiErr) != tt.api {
				t.Errorf("APIError %v, want %v", apiErr, tt.api)
			}
			if tt.api && (apiErr.Status != 404 || apiErr.Code != "Internal_RecordNotFound" || apiErr.CorrelationID == "" || apiErr.Temporary()) {
				t.Errorf("APIError %+v", apiErr)
			}
			if !strings.HasPrefix(err.Error(), "bcclient: get ") {
				t.Errorf("error %q not wrapped", err)
			}
		})
	}
}

func TestInvalidKeySendsNothing(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	c := newClient(t, config(t, s))
	for _, key := range []string{"", "L0001\n", "ABCDEFGHIJKLMNOPQRSTU", "\xff"} {
		if _, err := c.GetLocation(t.Context(), key); !errors.Is(err, bcclient.ErrInvalidKey) {
			t.Errorf("GetLocation(%q): %v", key, err)
		}
		if _, err := c.GetCustomerPriceGroup(t.Context(), key); !errors.Is(err, bcclient.ErrInvalidKey) {
			t.Errorf("GetCustomerPriceGroup(%q): %v", key, err)
		}
	}
	if st := s.Stats(); st.APIRequests != 0 || st.TokenRequests != 0 {
		t.Errorf("requests sent: %+v", st)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{Locations: 23, ShipmentMethods: 9, Customers: 61, PriceGroups: 12})
	tests := []struct {
		set      string
		pageSize int
		want     int
		list     func(c *bcclient.Client, page func(keys []string)) error
	}{
		{bctest.SetLocations, 5, 23, func(c *bcclient.Client, page func([]string)) error {
			return c.ListLocations(t.Context(), func(rows []bcclient.Location) error {
				page(collect(rows, func(r bcclient.Location) string { return r.ID + "/" + r.Code }))
				return nil
			})
		}},
		{bctest.SetShipmentMethods, 3, 9, func(c *bcclient.Client, page func([]string)) error {
			return c.ListShipmentMethods(t.Context(), func(rows []bcclient.ShipmentMethod) error {
				page(collect(rows, func(r bcclient.ShipmentMethod) string { return r.ID + "/" + r.Code }))
				return nil
			})
		}},
		{bctest.SetCustomers, 7, 61, func(c *bcclient.Client, page func([]string)) error {
			return c.ListCustomers(t.Context(), func(rows []bcclient.Customer) error {
				page(collect(rows, func(r bcclient.Customer) string { return r.ID + "/" + r.Number }))
				return nil
			})
		}},
		{"CustomerPriceGroups", 4, 12, func(c *bcclient.Client, page func([]string)) error {
			return c.ListCustomerPriceGroups(t.Context(), func(rows []bcclient.CustomerPriceGroup) error {
				page(collect(rows, func(r bcclient.CustomerPriceGroup) string { return r.Code }))
				return nil
			})
		}},
	}
	for _, tt := range tests {
		for _, pageSize := range []int{tt.pageSize, 0} {
			t.Run(fmt.Sprintf("%s/%d", tt.set, pageSize), func(t *testing.T) {
				cfg := config(t, s)
				cfg.PageSize = pageSize
				c := newClient(t, cfg)
				if _, err := c.CompanyID(t.Context()); err != nil {
					t.Fatal(err)
				}
				before := s.Stats().DataRequests[tt.set]
				seen := map[string]bool{}
				pages := 0
				err := tt.list(c, func(keys []string) {
					pages++
					if pageSize > 0 && len(keys) > pageSize {
						t.Errorf("page of %d", len(keys))
					}
					for _, k := range keys {
						if seen[k] || strings.HasPrefix(k, "/") {
							t.Errorf("duplicate or empty id %q", k)
						}
						seen[k] = true
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				wantPages := 1
				if pageSize > 0 {
					wantPages = (tt.want + pageSize - 1) / pageSize
				}
				if len(seen) != tt.want || pages != wantPages {
					t.Errorf("%d rows in %d pages, want %d in %d", len(seen), pages, tt.want, wantPages)
				}
				if got := s.Stats().DataRequests[tt.set] - before; got != int64(pages) {
					t.Errorf("%d data requests for %d pages", got, pages)
				}
			})
		}
	}
}

func collect[T any](rows []T, key func(T) string) []string {
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i] = key(r)
	}
	return keys
}

func TestListStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.PageSize = 10
	c := newClient(t, cfg)
	stop := errors.New("stop")
	pages := 0
	err := c.ListCustomers(t.Context(), func([]bcclient.Customer) error {
		if pages++; pages == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || pages != 2 || s.Stats().DataRequests[bctest.SetCustomers] != 2 {
		t.Errorf("err %v after %d pages", err, pages)
	}
}

// TestForeignNextLink: a next link to another host, scheme or port is never
// requested, and a redirect is not followed.
func TestForeignNextLink(t *testing.T) {
	t.Parallel()
	var foreignHits atomic.Int64
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignHits.Add(1)
		fmt.Fprint(w, `{"value":[]}`)
	}))
	t.Cleanup(foreign.Close)

	var link atomic.Value
	var apiURL string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer test-token":
			w.WriteHeader(http.StatusUnauthorized)
		case strings.HasSuffix(r.URL.Path, "/companies"):
			fmt.Fprint(w, `{"value":[{"id":"11111111-2222-3333-4444-555555555555","name":"C"}]}`)
		case strings.HasSuffix(r.URL.Path, "/relative"):
			fmt.Fprint(w, `{"value":[{"id":"b","code":"B"}]}`)
		case strings.HasSuffix(r.URL.Path, "/redirect"):
			http.Redirect(w, r, foreign.URL+"/x", http.StatusFound)
		default:
			fmt.Fprintf(w, `{"value":[{"id":"a","code":"A"}],"@odata.nextLink":%q}`, link.Load().(string))
		}
	}))
	t.Cleanup(api.Close)
	apiURL = api.URL
	c := newClient(t, bcclient.Config{
		APIURL: apiURL, TenantID: "t", Environment: "e", CompanyName: "C",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "test-token"}),
	})
	port := apiURL[strings.LastIndex(apiURL, ":")+1:]
	for _, l := range []string{
		foreign.URL + "/v2.0/t/e/api/v2.0/locations?$skiptoken=x",
		strings.Replace(apiURL, "http://", "https://", 1) + "/next",
		"http://localhost:" + port + "/next",
		"//" + foreign.Listener.Addr().String() + "/next",
		"http://user:pw@" + strings.TrimPrefix(apiURL, "http://") + "/next",
	} {
		link.Store(l)
		err := c.ListLocations(t.Context(), func([]bcclient.Location) error { return nil })
		if !errors.Is(err, bcclient.ErrForeignNextLink) {
			t.Errorf("link %q: err = %v", l, err)
		}
	}
	link.Store(apiURL + "/redirect")
	err := c.ListLocations(t.Context(), func([]bcclient.Location) error { return nil })
	var apiErr *bcclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusFound {
		t.Errorf("redirect: err = %v", err)
	}
	if n := foreignHits.Load(); n != 0 {
		t.Errorf("the foreign host got %d requests", n)
	}

	// A relative link is resolved against the API host and followed.
	link.Store("relative?$skiptoken=2")
	var codes []string
	err = c.ListLocations(t.Context(), func(rows []bcclient.Location) error {
		for _, r := range rows {
			codes = append(codes, r.Code)
		}
		return nil
	})
	if err != nil || strings.Join(codes, ",") != "A,B" {
		t.Errorf("relative link: %v %v", codes, err)
	}
}

// TestThrottledAndUnavailable: what the client returns once it stops
// retrying (here at once).
func TestThrottledAndUnavailable(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.Retry.Disabled = true
	c := newClient(t, cfg)
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		status     int
		retryAfter time.Duration
		code       string
		message    string
		temporary  bool
	}{
		{429, 3 * time.Second, "Application_TooManyRequests", "Too many requests", true},
		{503, 2 * time.Second, "Internal_ServiceUnavailable", "injected", true},
		{502, 0, "", "502 Bad Gateway", true},
		{504, 0, "", "Gateway Timeout", true},
		{403, 0, "Authorization_InsufficientPermissions", "injected", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			s.FailNext(1, tt.status, tt.retryAfter)
			_, err := c.GetLocation(t.Context(), "L0001")
			var e *bcclient.APIError
			if !errors.As(err, &e) {
				t.Fatalf("err = %v", err)
			}
			if e.Status != tt.status || e.Code != tt.code || e.RetryAfter != tt.retryAfter ||
				!strings.Contains(e.Message, tt.message) || e.Temporary() != tt.temporary || e.CorrelationID == "" {
				t.Errorf("APIError %+v", e)
			}
			if strings.ContainsAny(e.Message, "<>") {
				t.Errorf("message keeps HTML: %q", e.Message)
			}
			if errors.Is(err, bcclient.ErrNotFound) {
				t.Error("is ErrNotFound")
			}
		})
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{TokenLifetime: time.Second})
	c := newClient(t, config(t, s))
	for range 3 {
		if _, err := c.GetShipmentMethod(t.Context(), "SM001"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().TokenRequests; n != 1 {
		t.Fatalf("%d token requests, want 1 (reused)", n)
	}
	time.Sleep(time.Second) // the fake rejects the token from now on
	if _, err := c.GetShipmentMethod(t.Context(), "SM001"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.TokenRequests != 2 || st.Unauthorized != 0 {
		t.Errorf("stats %+v, want a second token and no 401", st)
	}
}

// TestRevokedTokenRefreshed: a token BC rejects before it expires is
// replaced once, and the request succeeds; when no new token can be had,
// the Entra error comes back without a credential in it.
func TestRevokedTokenRefreshed(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	c := newClient(t, cfg)
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.TokenSource.Token()
	if err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	if _, err := c.GetLocation(t.Context(), "L0001"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Unauthorized != 1 || st.TokenRequests != 2 {
		t.Errorf("stats %+v, want one 401 and one new token", st)
	}

	s.ExpireTokens()
	s.SetSecretExpired(true)
	_, err = c.GetLocation(t.Context(), "L0001")
	var te *bcclient.TokenError
	if !errors.As(err, &te) || !te.Has(7000222) || bcclient.Classify(err) != bcclient.ClassAuth {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), tok.AccessToken) || strings.Contains(err.Error(), s.ClientSecret()) {
		t.Errorf("error holds a credential: %v", err)
	}
	if st := s.Stats(); st.Unauthorized != 2 || st.TokenRequests != 3 {
		t.Errorf("stats %+v, want one more 401 and one more token request", st)
	}
}

// limiter allows max requests at once and counts.
type limiter struct {
	sem                chan struct{}
	acquired, released atomic.Int64
	inFlight, peak     atomic.Int64
}

func (l *limiter) Acquire(ctx context.Context) (func(), error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.acquired.Add(1)
	n := l.inFlight.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.inFlight.Add(-1)
			l.released.Add(1)
			<-l.sem
		})
	}, nil
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	s.SetLatency(5 * time.Millisecond)
	l := &limiter{sem: make(chan struct{}, 2)}
	cfg := config(t, s)
	cfg.Limiter = l
	cfg.PageSize = 20
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.ListCustomers(t.Context(), func([]bcclient.Customer) error { return nil }); err != nil {
				t.Error(err)
			}
			if _, err := c.GetLocation(t.Context(), fmt.Sprintf("L%04d", i+1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	api := s.Stats().APIRequests
	if l.acquired.Load() != api || l.released.Load() != api || l.peak.Load() > 2 || l.peak.Load() < 2 {
		t.Errorf("acquired %d, released %d, peak %d, API requests %d",
			l.acquired.Load(), l.released.Load(), l.peak.Load(), api)
	}

	denied := errors.New("budget exhausted")
	cfg.Limiter = limiterFunc(func(context.Context) (func(), error) { return nil, denied })
	c = newClient(t, cfg)
	s.ResetStats()
	if _, err := c.GetLocation(t.Context(), "L0001"); !errors.Is(err, denied) {
		t.Errorf("err = %v", err)
	}
	if n := s.Stats().APIRequests; n != 0 {
		t.Errorf("%d requests sent without a slot", n)
	}
}

type limiterFunc func(context.Context) (func(), error)

func (f limiterFunc) Acquire(ctx context.Context) (func(), error) { return f(ctx) }

func TestContextAndTimeout(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	c := newClient(t, config(t, s))
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.SetLatency(2 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.GetLocation(ctx, "L0001"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	cfg := config(t, s)
	cfg.Timeout = 50 * time.Millisecond
	cfg.Retry.Disabled = true // a timeout is transient: it would be retried
	c = newClient(t, cfg)
	if _, err := c.CompanyID(t.Context()); err == nil {
		t.Error("no timeout")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{})
	cfg := config(t, s)
	cfg.MaxBodyBytes = 4096
	c := newClient(t, cfg)
	err := c.ListCustomers(t.Context(), func([]bcclient.Customer) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "MaxBodyBytes") {
		t.Errorf("err = %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	_, err := bcclient.New(bcclient.Config{PageSize: 20001, Timeout: -1})
	for _, want := range []string{"TokenSource", "TenantID", "Environment", "CompanyName", "PageSize", "Timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})
	valid := bcclient.Config{TenantID: "t", Environment: "Production", CompanyName: "C", TokenSource: ts}
	if _, err := bcclient.New(valid); err != nil {
		t.Errorf("valid config: %v", err)
	}
	for name, mod := range map[string]func(*bcclient.Config){
		"APIURL":            func(c *bcclient.Config) { c.APIURL = "ftp://example.com" },
		"APIURL query":      func(c *bcclient.Config) { c.APIURL = "https://example.com/?a=b" },
		"Environment":       func(c *bcclient.Config) { c.Environment = "Prod/../x" },
		"TenantID":          func(c *bcclient.Config) { c.TenantID = "a?b" },
		"PriceGroupService": func(c *bcclient.Config) { c.PriceGroupService = "x('y')" },
		"PageSize":          func(c *bcclient.Config) { c.PageSize = -1 },
		"CompanyName":       func(c *bcclient.Config) { c.CompanyName = "a\nb" },
		"MaxBodyBytes":      func(c *bcclient.Config) { c.MaxBodyBytes = -1 },
	} {
		cfg := valid
		mod(&cfg)
		field, _, _ := strings.Cut(name, " ")
		if _, err := bcclient.New(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// A listing interrupted after two pages resumes at its checkpoint: the
// pages already read are not read again, and every row comes once.
func TestListResumesAtItsCheckpoint(t *testing.T) {
	t.Parallel()
	s := fake(t, bctest.Options{Locations: 30})
	cfg := config(t, s)
	cfg.PageSize = 7
	c := newClient(t, cfg)
	if _, err := c.CompanyID(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.ResetStats()
	seen := map[string]int{}
	var checkpoint string
	pages := 0
	stop := errors.New("killed")
	err := c.ListLocations(t.Context(), func(rows []bcclient.Location) error {
		for _, r := range rows {
			seen[r.Code]++
		}
		return nil
	}, bcclient.AfterPage(func(next string) error {
		checkpoint, pages = next, pages+1
		if pages == 2 {
			return stop
		}
		return nil
	}))
	if !errors.Is(err, stop) || checkpoint == "" {
		t.Fatalf("first listing: %v, checkpoint %q", err, checkpoint)
	}
	err = c.ListLocations(t.Context(), func(rows []bcclient.Location) error {
		for _, r := range rows {
			seen[r.Code]++
		}
		return nil
	}, bcclient.ResumeAt(checkpoint), bcclient.AfterPage(func(next string) error { pages++; return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 30 {
		t.Errorf("%d distinct locations, want 30", len(seen))
	}
	for code, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", code, n)
		}
	}
	if got := s.Stats().DataRequests["locations"]; got != 5 || pages != 5 {
		t.Errorf("%d data requests and %d pages for 30 rows in pages of 7, want 5 and 5", got, pages)
	}
	// A checkpoint that points elsewhere is refused before any request.
	err = c.ListLocations(t.Context(), func([]bcclient.Location) error { return nil }, bcclient.ResumeAt("https://evil.example.com/api/v2.0/companies"))
	if !errors.Is(err, bcclient.ErrForeignNextLink) {
		t.Errorf("a foreign checkpoint = %v, want ErrForeignNextLink", err)
	}
}
