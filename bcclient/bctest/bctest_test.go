package bctest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

func newServer(t *testing.T, opts bctest.Options) *bctest.Server {
	t.Helper()
	s := bctest.NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// form returns the token request body a correct client sends.
func form(s *bctest.Server) url.Values {
	return url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.ClientID()},
		"client_secret": {s.ClientSecret()},
		"scope":         {bctest.Scope},
	}
}

func postToken(t *testing.T, tokenURL string, v url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(tokenURL, v)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
	}
	return resp.StatusCode, m
}

func token(t *testing.T, s *bctest.Server) string {
	t.Helper()
	status, body := postToken(t, s.TokenURL(), form(s))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// get sends an authenticated GET to s.URL()+path.
func get(t *testing.T, s *bctest.Server, tok, path string, header ...string) (*http.Response, map[string]any) {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = s.URL() + path
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, body := decode(t, resp)
	return resp, body
}

func apiRoot(s *bctest.Server) string {
	return "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/api/v2.0"
}

func companyPath(s *bctest.Server) string {
	return apiRoot(s) + "/companies(" + s.CompanyID() + ")"
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	with := func(k, v string) url.Values {
		f := form(s)
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name      string
		tenant    string
		form      url.Values
		status    int
		errorCode string
		aadsts    int
	}{
		{"unknown tenant", "00000000-0000-0000-0000-000000000001", form(s), 400, "invalid_request", 90002},
		{"no grant type", "", with("grant_type", ""), 400, "invalid_request", 900144},
		{"wrong grant type", "", with("grant_type", "password"), 400, "unsupported_grant_type", 70003},
		{"no client id", "", with("client_id", ""), 400, "invalid_request", 900144},
		{"unknown client", "", with("client_id", "11111111-2222-3333-4444-555555555555"), 400, "unauthorized_client", 700016},
		{"no secret", "", with("client_secret", ""), 400, "invalid_client", 7000218},
		{"wrong secret", "", with("client_secret", "secret-id-not-value"), 401, "invalid_client", 7000215},
		{"no scope", "", with("scope", ""), 400, "invalid_request", 900144},
		{"bad scope", "", with("scope", "https://graph.microsoft.com/.default"), 400, "invalid_scope", 70011},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := s.TokenURL()
			if tt.tenant != "" {
				u = s.URL() + "/" + tt.tenant + "/oauth2/v2.0/token"
			}
			status, body := postToken(t, u, tt.form)
			checkEntraError(t, status, body, tt.status, tt.errorCode, tt.aadsts)
		})
	}

	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(s.TokenURL())
		if err != nil {
			t.Fatal(err)
		}
		status, body := decode(t, resp)
		checkEntraError(t, status, body, 400, "invalid_request", 900561)
	})
	t.Run("JSON body", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials"})
		resp, err := http.Post(s.TokenURL(), "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		status, body := decode(t, resp)
		checkEntraError(t, status, body, 400, "invalid_request", 900144)
	})
	t.Run("secret in basic auth only", func(t *testing.T) {
		f := with("client_secret", "")
		req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(s.ClientID(), s.ClientSecret())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		status, body := decode(t, resp)
		checkEntraError(t, status, body, 400, "invalid_client", 7000218)
	})
	t.Run("success", func(t *testing.T) {
		before := s.Stats().TokensIssued
		status, body := postToken(t, s.TokenURL(), form(s))
		if status != 200 {
			t.Fatalf("status %d %v", status, body)
		}
		want := map[string]any{"token_type": "Bearer", "expires_in": 3599.0, "ext_expires_in": 3599.0}
		for k, v := range want {
			if body[k] != v {
				t.Errorf("%s = %v, want %v", k, body[k], v)
			}
		}
		if tok, _ := body["access_token"].(string); len(tok) < 20 {
			t.Errorf("access_token %q", tok)
		}
		if got := s.Stats().TokensIssued - before; got != 1 {
			t.Errorf("TokensIssued grew by %d", got)
		}
	})
}

func TestTokenEndpointAppState(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	s.SetSecretExpired(true)
	status, body := postToken(t, s.TokenURL(), form(s))
	checkEntraError(t, status, body, 401, "invalid_client", 7000222)
	s.SetSecretExpired(false)
	s.SetAppDisabled(true)
	status, body = postToken(t, s.TokenURL(), form(s))
	checkEntraError(t, status, body, 400, "unauthorized_client", 7000112)
	s.SetAppDisabled(false)
	token(t, s)
}

func checkEntraError(t *testing.T, status int, body map[string]any, wantStatus int, wantErr string, aadsts int) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d", status, wantStatus)
	}
	if body["error"] != wantErr {
		t.Errorf("error %v, want %s", body["error"], wantErr)
	}
	if desc, _ := body["error_description"].(string); !strings.HasPrefix(desc, fmt.Sprintf("AADSTS%d: ", aadsts)) {
		t.Errorf("error_description %q does not start with AADSTS%d", desc, aadsts)
	}
	if codes, _ := body["error_codes"].([]any); len(codes) != 1 || codes[0] != float64(aadsts) {
		t.Errorf("error_codes %v, want [%d]", body["error_codes"], aadsts)
	}
	for _, k := range []string{"timestamp", "trace_id", "correlation_id"} {
		if v, _ := body[k].(string); v == "" {
			t.Errorf("%s missing", k)
		}
	}
	if _, ok := body["access_token"]; ok {
		t.Error("a failure carries an access_token")
	}
}

func TestAPIRejectsBadTokens(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	good := token(t, s)
	otherTenant := "/v2.0/11111111-1111-1111-1111-111111111111/" + s.Environment() + "/api/v2.0/companies"
	tests := []struct {
		name, tok, path string
	}{
		{"missing", "", apiRoot(s) + "/companies"},
		{"unknown", "not-a-token", apiRoot(s) + "/companies"},
		{"other tenant", good, otherTenant},
	}
	for _, tt := range tests {
		resp, body := get(t, s, tt.tok, tt.path)
		if resp.StatusCode != 401 || errorCode(body) != "Authentication_InvalidCredentials" {
			t.Errorf("%s: %d %v", tt.name, resp.StatusCode, body)
		}
	}
	// Basic instead of Bearer.
	req, _ := http.NewRequest(http.MethodGet, s.URL()+apiRoot(s)+"/companies", nil)
	req.Header.Set("Authorization", "Basic "+good)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := decode(t, resp); status != 401 {
		t.Errorf("Basic: %d", status)
	}

	if resp, body := get(t, s, good, apiRoot(s)+"/companies"); resp.StatusCode != 200 {
		t.Fatalf("good token: %d %v", resp.StatusCode, body)
	}
	s.ExpireTokens()
	resp, body := get(t, s, good, apiRoot(s)+"/companies")
	if resp.StatusCode != 401 || errorCode(body) != "Authentication_InvalidCredentials" {
		t.Errorf("expired: %d %v", resp.StatusCode, body)
	}
	if msg := body["error"].(map[string]any)["message"].(string); !regexp.MustCompile(`CorrelationId:\s+[0-9a-f-]{36}\.$`).MatchString(msg) {
		t.Errorf("message %q has no correlation id", msg)
	}
	if st := s.Stats(); st.Unauthorized != 5 || st.DataRequests[bctest.SetCompanies] != 1 {
		t.Errorf("stats %+v", st)
	}
	if resp, _ := get(t, s, token(t, s), apiRoot(s)+"/companies"); resp.StatusCode != 200 {
		t.Errorf("new token: %d", resp.StatusCode)
	}
}

func TestTokenLifetime(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{TokenLifetime: 1500 * time.Millisecond})
	status, body := postToken(t, s.TokenURL(), form(s))
	if status != 200 || body["expires_in"] != 2.0 {
		t.Fatalf("%d %v: want expires_in 2 (rounded up)", status, body)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	loc := s.Rows(bctest.SetLocations)[0]
	odata := "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company('CRONUS%20USA%2C%20Inc.')/"
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"wrong environment", "/v2.0/" + s.TenantID() + "/Sandbox/api/v2.0/companies", 404, "Internal_EnvironmentNotFound"},
		{"unknown company", apiRoot(s) + "/companies(00000000-0000-0000-0000-000000000001)/locations", 404, "Internal_CompanyNotFound"},
		{"malformed company id", apiRoot(s) + "/companies(CRONUS)/locations", 400, "BadRequest_InvalidKey"},
		{"unknown entity set", companyPath(s) + "/vendors", 404, "BadRequest_NotFound"},
		{"unknown location", companyPath(s) + "/locations(00000000-0000-0000-0000-000000000001)", 404, "Internal_RecordNotFound"},
		{"location by code in key", companyPath(s) + "/locations(L0001)", 400, "BadRequest_InvalidKey"},
		{"location by quoted code", companyPath(s) + "/locations('L0001')", 400, "BadRequest_InvalidKey"},
		{"$top", companyPath(s) + "/locations?$top=5", 400, "BadRequest_NotSupported"},
		{"$skip", companyPath(s) + "/locations?$skip=5", 400, "BadRequest_NotSupported"},
		{"$orderby", companyPath(s) + "/locations?$orderby=code", 400, "BadRequest_NotSupported"},
		{"filter other field", companyPath(s) + "/locations?$filter=" + url.QueryEscape("displayName eq 'x'"), 400, "BadRequest_InvalidFilter"},
		{"filter unescaped quote", companyPath(s) + "/locations?$filter=" + url.QueryEscape("code eq 'O'NEIL'"), 400, "BadRequest_InvalidFilter"},
		{"filter unquoted", companyPath(s) + "/locations?$filter=" + url.QueryEscape("code eq L0001"), 400, "BadRequest_InvalidFilter"},
		{"filter or across fields", companyPath(s) + "/locations?$filter=" + url.QueryEscape("code eq 'A' or displayName eq 'B'"), 400, "BadRequest_InvalidFilter"},
		{"filter or and", companyPath(s) + "/locations?$filter=" + url.QueryEscape("code eq 'A' or code eq 'B' and code eq 'C'"), 400, "BadRequest_InvalidFilter"},
		{"filter twice", companyPath(s) + "/locations?$filter=" + url.QueryEscape("code eq 'A'") + "&$filter=" + url.QueryEscape("code eq 'B'"), 400, "BadRequest_InvalidRequestUrl"},
		{"filter on an entity", companyPath(s) + "/locations(" + loc["id"].(string) + ")?$filter=" + url.QueryEscape("code eq 'A'"), 400, "BadRequest_NotSupported"},
		{"forged skiptoken", companyPath(s) + "/locations?$skiptoken=10", 400, "BadRequest_InvalidSkipToken"},
		{"odata unknown company", "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company('Nobody')/CustomerPriceGroups", 404, "Internal_CompanyNotFound"},
		{"odata unescaped quote", "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company('O'Brien')/CustomerPriceGroups", 400, "BadRequest_InvalidKey"},
		{"odata unknown service", odata + "PriceGroups", 404, "BadRequest_NotFound"},
		{"odata unknown price group", odata + "CustomerPriceGroups('NOPE')", 404, "Internal_RecordNotFound"},
		{"odata $top", odata + "CustomerPriceGroups?$top=1", 400, "BadRequest_NotSupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, s, tok, tt.path)
			if resp.StatusCode != tt.status || errorCode(body) != tt.code {
				t.Errorf("%d %s, want %d %s (%v)", resp.StatusCode, errorCode(body), tt.status, tt.code, body)
			}
			if resp.Header.Get("request-id") == "" {
				t.Error("no request-id header")
			}
		})
	}
	t.Run("POST", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+companyPath(s)+"/locations", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if status, body := decode(t, resp); status != 405 || errorCode(body) != "BadRequest_MethodNotAllowed" {
			t.Errorf("%d %v", status, body)
		}
	})
}

func TestPaging(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	next := s.URL() + companyPath(s) + "/locations"
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		resp, body := get(t, s, tok, next, "Prefer", "odata.maxpagesize=7")
		if resp.StatusCode != 200 {
			t.Fatalf("page %d: %d %v", pages, resp.StatusCode, body)
		}
		pages++
		if got := resp.Header.Get("Preference-Applied"); got != "odata.maxpagesize=7" {
			t.Errorf("Preference-Applied %q", got)
		}
		rows := body["value"].([]any)
		if len(rows) > 7 {
			t.Errorf("page of %d rows", len(rows))
		}
		for _, r := range rows {
			id := r.(map[string]any)["id"].(string)
			if seen[id] {
				t.Errorf("duplicate %s", id)
			}
			seen[id] = true
		}
		next, _ = body["@odata.nextLink"].(string)
		if next == "" {
			break
		}
		u, err := url.Parse(next)
		if err != nil || u.Scheme+"://"+u.Host != s.URL() {
			t.Fatalf("nextLink %q is not absolute on %s", next, s.URL())
		}
		st := u.Query().Get("$skiptoken")
		if _, err := strconv.Atoi(st); st == "" || err == nil {
			t.Errorf("skiptoken %q is empty or a plain number", st)
		}
		if u.Query().Has("$top") || u.Query().Has("$skip") {
			t.Errorf("nextLink %q pages with $top/$skip", next)
		}
	}
	if len(seen) != bctest.DefaultLocations || pages != 8 {
		t.Errorf("%d rows in %d pages, want %d in 8", len(seen), pages, bctest.DefaultLocations)
	}
	if got := s.Stats().DataRequests[bctest.SetLocations]; got != 8 {
		t.Errorf("DataRequests[locations] = %d, want 8", got)
	}

	// A skiptoken is bound to its entity set.
	resp, body := get(t, s, tok, companyPath(s)+"/locations", "Prefer", "odata.maxpagesize=7")
	link := strings.Replace(body["@odata.nextLink"].(string), "/locations?", "/customers?", 1)
	if resp, body = get(t, s, tok, link); resp.StatusCode != 400 {
		t.Errorf("skiptoken reused on another set: %d %v", resp.StatusCode, body)
	}

	// Too large a page is capped; no Prefer gets the server's maximum.
	resp, body = get(t, s, tok, companyPath(s)+"/customers", "Prefer", "odata.maxpagesize=50000")
	if got := resp.Header.Get("Preference-Applied"); got != "odata.maxpagesize=20000" || len(body["value"].([]any)) != bctest.DefaultCustomers {
		t.Errorf("Preference-Applied %q, %d rows", got, len(body["value"].([]any)))
	}
	small := newServer(t, bctest.Options{MaxPageSize: 5})
	resp, body = get(t, small, token(t, small), companyPath(small)+"/shipmentMethods")
	if len(body["value"].([]any)) != 5 || body["@odata.nextLink"] == nil || resp.Header.Get("Preference-Applied") != "" {
		t.Errorf("default page: %d rows, next %v", len(body["value"].([]any)), body["@odata.nextLink"])
	}
}

func TestFilterAndODataV4(t *testing.T) {
	t.Parallel()
	name := "O'Brien & Sons, Inc."
	s := newServer(t, bctest.Options{CompanyName: name, PriceGroups: 3})
	tok := token(t, s)

	resp, body := get(t, s, tok, apiRoot(s)+"/companies?$filter="+url.QueryEscape("name eq 'O''Brien & Sons, Inc.'"))
	rows := body["value"].([]any)
	if resp.StatusCode != 200 || len(rows) != 1 || rows[0].(map[string]any)["id"] != s.CompanyID() {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	_, body = get(t, s, tok, apiRoot(s)+"/companies")
	if n := len(body["value"].([]any)); n != 3 {
		t.Errorf("%d companies, want 3 (two decoys)", n)
	}
	_, body = get(t, s, tok, companyPath(s)+"/customers?$filter=number%20eq%20%27C000002%27")
	if rows := body["value"].([]any); len(rows) != 1 || rows[0].(map[string]any)["type"] != "Person" {
		t.Errorf("customer filter: %v", body)
	}
	_, body = get(t, s, tok, companyPath(s)+"/locations?$filter="+url.QueryEscape("code eq 'NOPE'"))
	if rows := body["value"].([]any); len(rows) != 0 {
		t.Errorf("no match: %v", body)
	}

	odata := "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company('" + url.PathEscape("O''Brien & Sons, Inc.") + "')/CustomerPriceGroups"
	resp, body = get(t, s, tok, odata)
	if resp.StatusCode != 200 || len(body["value"].([]any)) != 3 {
		t.Fatalf("price groups: %d %v", resp.StatusCode, body)
	}
	resp, body = get(t, s, tok, odata+"('PG002')")
	if resp.StatusCode != 200 || body["Code"] != "PG002" || body["Description"] == "" || !strings.HasPrefix(body["@odata.etag"].(string), `W/"`) {
		t.Errorf("price group: %d %v", resp.StatusCode, body)
	}
	if _, ok := body["id"]; ok {
		t.Error("an OData V4 row serves id")
	}
	if got := s.Stats().DataRequests["CustomerPriceGroups"]; got != 2 {
		t.Errorf("DataRequests[CustomerPriceGroups] = %d", got)
	}
}

func TestRows(t *testing.T) {
	t.Parallel()
	s := bctest.New(bctest.Options{})
	guid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	ts := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	for _, set := range []string{bctest.SetLocations, bctest.SetShipmentMethods, bctest.SetCustomers} {
		for _, r := range s.Rows(set) {
			if !guid.MatchString(r["id"].(string)) || !ts.MatchString(r["lastModifiedDateTime"].(string)) ||
				!regexp.MustCompile(`^W/".+"$`).MatchString(r["@odata.etag"].(string)) {
				t.Fatalf("%s row %v", set, r)
			}
		}
	}
	for _, code := range append(s.LocationCodes(), s.ShipmentMethodCodes()...) {
		if len(code) > 10 || strings.ToUpper(code) != code {
			t.Errorf("code %q", code)
		}
	}
	if c := s.LocationCodes(); len(c) != 50 || c[0] != "L0001" {
		t.Errorf("location codes %v", c)
	}
	if c := s.ShipmentMethodCodes(); len(c) != 20 || c[0] != "SM001" {
		t.Errorf("shipment method codes %v", c)
	}
	if c := s.PriceGroupCodes(); len(c) != 10 || c[0] != "PG001" {
		t.Errorf("price group codes %v", c)
	}
	for i, r := range s.Rows(bctest.SetCustomers) {
		want := "Company"
		if i%2 == 1 {
			want = "Person"
			if len(strings.Fields(r["displayName"].(string))) != 2 {
				t.Errorf("person %v", r["displayName"])
			}
		}
		if r["type"] != want || r["number"] != fmt.Sprintf("C%06d", i+1) {
			t.Errorf("customer %d: %v %v", i, r["number"], r["type"])
		}
	}
	if n := len(bctest.New(bctest.Options{Customers: -1}).CustomerNumbers()); n != 0 {
		t.Errorf("Customers: -1 gave %d", n)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, b, c := bctest.New(bctest.Options{Seed: 7}), bctest.New(bctest.Options{Seed: 7}), bctest.New(bctest.Options{Seed: 8})
	for _, set := range []string{bctest.SetLocations, bctest.SetShipmentMethods, bctest.SetCustomers, "CustomerPriceGroups"} {
		if !reflect.DeepEqual(a.Rows(set), b.Rows(set)) {
			t.Errorf("%s differs for the same seed", set)
		}
		if reflect.DeepEqual(a.Rows(set), c.Rows(set)) {
			t.Errorf("%s is the same for another seed", set)
		}
	}
	if a.CompanyID() != b.CompanyID() {
		t.Error("company id differs for the same seed")
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	before, _ := s.Record(bctest.SetLocations, "L0002")
	if !s.UpdateLocation("L0002", func(f map[string]any) { f["displayName"] = "Renamed"; f["code"] = "HACK" }) {
		t.Fatal("UpdateLocation found no row")
	}
	if s.UpdateLocation("NOPE", func(map[string]any) {}) {
		t.Error("UpdateLocation changed a missing row")
	}
	if s.Rename(bctest.SetLocations, "L0003", "L0004") || s.Rename(bctest.SetLocations, "NOPE", "X") {
		t.Error("Rename onto a taken key or of a missing row succeeded")
	}
	if !s.Rename(bctest.SetLocations, "L0003", "EAST") {
		t.Fatal("Rename failed")
	}
	if r, ok := s.Record(bctest.SetLocations, "EAST"); !ok || r["code"] != "EAST" {
		t.Errorf("renamed record: %v, %v", r, ok)
	}
	_, body := get(t, s, token(t, s), companyPath(s)+"/locations("+before["id"].(string)+")")
	if body["displayName"] != "Renamed" || body["code"] != "L0002" {
		t.Errorf("after update: %v", body)
	}
	if body["@odata.etag"] == before["@odata.etag"] {
		t.Error("etag unchanged")
	}
	t0, _ := time.Parse(time.RFC3339, before["lastModifiedDateTime"].(string))
	t1, _ := time.Parse(time.RFC3339, body["lastModifiedDateTime"].(string))
	if !t1.After(t0) {
		t.Errorf("lastModifiedDateTime %v not after %v", t1, t0)
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	s.FailNext(2, http.StatusTooManyRequests, 1500*time.Millisecond)
	token(t, s) // token requests are not failed
	for i := 0; i < 2; i++ {
		resp, body := get(t, s, tok, apiRoot(s)+"/companies")
		if resp.StatusCode != 429 || errorCode(body) != "Application_TooManyRequests" || resp.Header.Get("Retry-After") != "2" {
			t.Errorf("%d: %d %v Retry-After %q", i, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
	if resp, _ := get(t, s, tok, apiRoot(s)+"/companies"); resp.StatusCode != 200 {
		t.Errorf("third: %d", resp.StatusCode)
	}

	s.FailNext(1, http.StatusBadGateway, 0)
	resp, err := http.Get(s.URL() + apiRoot(s) + "/companies")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.HasPrefix(string(b), "<html>") || resp.Header.Get("Retry-After") != "" {
		t.Errorf("502: %d %q", resp.StatusCode, b)
	}
	s.FailNext(1, http.StatusServiceUnavailable, time.Second)
	resp, body := get(t, s, tok, apiRoot(s)+"/companies")
	if resp.StatusCode != 503 || !strings.HasPrefix(errorCode(body), "Internal_") || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("503: %d %v", resp.StatusCode, body)
	}
	if st := s.Stats(); st.Failures != 4 || st.TokenRequests != 2 || st.APIRequests != 5 {
		t.Errorf("stats %+v", st)
	}
	s.ResetStats()
	if st := s.Stats(); st.APIRequests != 0 || st.DataRequests[bctest.SetCompanies] != 0 {
		t.Errorf("after reset %+v", st)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	// Far apart, so that a loaded machine's slow answer is not taken for
	// the latency.
	s.SetLatency(time.Second)
	start := time.Now()
	get(t, s, tok, apiRoot(s)+"/companies")
	if d := time.Since(start); d < time.Second {
		t.Errorf("answered in %v", d)
	}
	start = time.Now()
	token(t, s)
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("token request delayed: %v", d)
	}
}

// TestRealListener serves the handler from a plain http.Server, as the
// simulator does: next links carry the listener's address.
func TestRealListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := bctest.New(bctest.Options{})
	srv := &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()

	resp, err := http.PostForm(base+"/"+fake.TenantID()+"/oauth2/v2.0/token", form(fake))
	if err != nil {
		t.Fatal(err)
	}
	_, tb := decode(t, resp)
	tok, _ := tb["access_token"].(string)
	resp, body := get(t, fake, tok, base+companyPath(fake)+"/customers", "Prefer", "odata.maxpagesize=150")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	if next, _ := body["@odata.nextLink"].(string); !strings.HasPrefix(next, base+companyPath(fake)+"/customers?$skiptoken=") {
		t.Errorf("nextLink %q", next)
	}
	if c, _ := body["@odata.context"].(string); !strings.HasPrefix(c, base+apiRoot(fake)+"/$metadata#") {
		t.Errorf("@odata.context %q", c)
	}
}

func TestConcurrentStats(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, s.URL()+companyPath(s)+"/shipmentMethods", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			s.UpdateLocation("L0001", func(f map[string]any) { f["contact"] = "x" })
			_ = s.Stats()
		}()
	}
	wg.Wait()
	if st := s.Stats(); st.APIRequests != 16 || st.DataRequests[bctest.SetShipmentMethods] != 16 {
		t.Errorf("stats %+v", st)
	}
}

func TestSetOutage(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	tok := token(t, s)
	s.SetOutage(http.StatusServiceUnavailable)
	for i := range 5 {
		resp, body := get(t, s, tok, apiRoot(s)+"/companies")
		if resp.StatusCode != 503 || errorCode(body) != "Internal_ServiceUnavailable" {
			t.Errorf("request %d during the outage: %d %v", i, resp.StatusCode, body)
		}
	}
	token(t, s) // the token endpoint is Entra's, not BC's: it still answers
	s.SetOutage(0)
	if resp, _ := get(t, s, tok, apiRoot(s)+"/companies"); resp.StatusCode != 200 {
		t.Errorf("after the outage: %d", resp.StatusCode)
	}
}

func TestSetClientSecret(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{})
	old := form(s)
	s.SetClientSecret("Rotated~Secret.Value_0123456789abcdef")
	status, body := postToken(t, s.TokenURL(), old)
	checkEntraError(t, status, body, 401, "invalid_client", 7000215)
	if s.ClientSecret() != "Rotated~Secret.Value_0123456789abcdef" {
		t.Errorf("ClientSecret() = %q after SetClientSecret", s.ClientSecret())
	}
	token(t, s) // with the new secret
}
