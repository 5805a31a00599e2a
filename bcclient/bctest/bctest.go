package bctest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	DefaultTenantID          = "4a1c9e2b-7d3f-4b8a-9c6e-0f1d2e3a4b5c"
	DefaultEnvironment       = "Production"
	DefaultCompanyName       = "CRONUS USA, Inc."
	DefaultClientID          = "0b7e3c1a-2f4d-4e5a-8b9c-6d7e8f9a0b1c"
	DefaultClientSecret      = "bctest~Secret.Value_0123456789abcdefABCDEF"
	DefaultTokenLifetime     = 3599 * time.Second
	DefaultLocations         = 50
	DefaultShipmentMethods   = 20
	DefaultCustomers         = 200
	DefaultPriceGroups       = 10
	DefaultItems             = 30
	DefaultSalesOrders       = 20
	DefaultLinesPerOrder     = 3
	DefaultPriceGroupService = "CustomerPriceGroups"
	// BC's per-app limits (business-central.md, "Operational limits").
	DefaultMaxConcurrent    = 5
	DefaultMaxQueued        = 95
	DefaultMaxQueueWait     = 8 * time.Minute
	DefaultBudget           = 6000
	DefaultBudgetWindow     = 5 * time.Minute
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultMaxSubscriptions = 200
	// SubscriptionLifetime is how long a webhook subscription lives after
	// it is created or renewed.
	SubscriptionLifetime = 3 * 24 * time.Hour
	// MaxClientState is the longest clientState a subscription accepts.
	MaxClientState = 2048
	// MaxPageSize is BC's largest page, the default and cap of
	// Options.MaxPageSize.
	MaxPageSize = 20000
	// Scope is the only scope the token endpoint accepts.
	Scope = "https://api.businesscentral.dynamics.com/.default"
)

// API v2.0 entity sets served.
const (
	SetCompanies       = "companies"
	SetLocations       = "locations"
	SetShipmentMethods = "shipmentMethods"
	SetCustomers       = "customers"
	SetItems           = "items"
	SetSalesOrders     = "salesOrders"
	// SetSalesOrderLines is served under a sales order:
	// companies({id})/salesOrders({id})/salesOrderLines, and inline with
	// $expand=salesOrderLines.
	SetSalesOrderLines = "salesOrderLines"
	// SetSubscriptions is the webhook subscription set,
	// .../api/v2.0/subscriptions (not under a company). It counts in
	// Stats.DataRequests.
	SetSubscriptions = "subscriptions"
)

// Options configure a Server. The zero value of a field means its default.
type Options struct {
	// TenantID is the only tenant known. Default DefaultTenantID.
	TenantID string
	// Environment is the only environment. Default "Production".
	Environment string
	// CompanyName is the company holding the data. Default
	// "CRONUS USA, Inc.". Two more, empty companies exist next to it.
	CompanyName string
	// ClientID and ClientSecret are the only app registration known.
	// Defaults DefaultClientID and DefaultClientSecret.
	ClientID     string
	ClientSecret string
	// TokenLifetime is the expires_in of issued tokens, rounded up to whole
	// seconds. Default 3599s.
	TokenLifetime time.Duration
	// Rows generated per entity set. Defaults 50, 20, 200, 10, 30 and 20;
	// a negative count means none. Sales orders reference customers and
	// are generated only when there are customers.
	Locations, ShipmentMethods, Customers, PriceGroups, Items, SalesOrders int
	// LinesPerOrder is the number of lines of every sales order, each
	// referencing an item (none when there are no items). Default 3; a
	// negative count means none.
	LinesPerOrder int
	// MaxPageSize is the page size when the client sends no
	// "Prefer: odata.maxpagesize" and the cap on what it asks. Default and
	// maximum MaxPageSize (20000).
	MaxPageSize int
	// PriceGroupService is the OData V4 web service name serving Customer
	// Price Groups. Default "CustomerPriceGroups".
	PriceGroupService string
	// Seed makes the generated data set; the same seed, the same data.
	Seed int64

	// BC's limits, per app registration (client id); they apply to BC API
	// requests that carry a valid token, not to the token endpoint nor to
	// requests rejected with 401 or failed by FailNext. For each, zero
	// means the default and a negative value disables the limit.
	//
	// MaxConcurrent requests are served at once (default 5); up to
	// MaxQueued more wait for a slot, first in first out (default 95;
	// negative: no bound); a request beyond that is answered 429
	// Application_TooManyRequests at once. A request that waited
	// MaxQueueWait (default 8 minutes) without a slot is answered 503. A
	// request whose client goes away while queued leaves the queue.
	MaxConcurrent, MaxQueued int
	MaxQueueWait             time.Duration
	// Budget is the number of requests accepted in any BudgetWindow, a
	// sliding window (defaults 6000 and 5 minutes; a negative value of
	// either disables the budget). A request beyond it is answered 429
	// Application_TooManyRequests with Retry-After: the seconds, rounded
	// up, until the oldest request in the window leaves it. Requests
	// refused by the budget do not count in it; requests refused later by
	// the queue do. The window is read from Now.
	Budget       int
	BudgetWindow time.Duration

	// HandshakeTimeout bounds the validation call to a webhook's
	// notificationUrl. Default 5s.
	HandshakeTimeout time.Duration
	// MaxSubscriptions is the number of live webhook subscriptions in the
	// environment. Default 200; negative: no bound.
	MaxSubscriptions int
	// HTTPClient makes the handshake calls and the notifications. Default:
	// a client that does not follow redirects (a redirect fails the
	// handshake). Pass httptest.Server.Client() to reach a TLS test server.
	HTTPClient *http.Client

	// Now is the clock of token expiry, lastModifiedDateTime of changed
	// rows, subscription expiry and the budget window. Default time.Now.
	// The wait in the queue and SetLatency use real time.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.TenantID, DefaultTenantID)
	def(&o.Environment, DefaultEnvironment)
	def(&o.CompanyName, DefaultCompanyName)
	def(&o.ClientID, DefaultClientID)
	def(&o.ClientSecret, DefaultClientSecret)
	def(&o.PriceGroupService, DefaultPriceGroupService)
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = DefaultTokenLifetime
	}
	count := func(n *int, v int) {
		switch {
		case *n == 0:
			*n = v
		case *n < 0:
			*n = 0
		}
	}
	count(&o.Locations, DefaultLocations)
	count(&o.ShipmentMethods, DefaultShipmentMethods)
	count(&o.Customers, DefaultCustomers)
	count(&o.PriceGroups, DefaultPriceGroups)
	count(&o.Items, DefaultItems)
	count(&o.SalesOrders, DefaultSalesOrders)
	count(&o.LinesPerOrder, DefaultLinesPerOrder)
	limit := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	limit(&o.MaxConcurrent, DefaultMaxConcurrent)
	limit(&o.MaxQueued, DefaultMaxQueued)
	limit(&o.Budget, DefaultBudget)
	limit(&o.MaxSubscriptions, DefaultMaxSubscriptions)
	dur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	dur(&o.MaxQueueWait, DefaultMaxQueueWait)
	dur(&o.BudgetWindow, DefaultBudgetWindow)
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPageSize <= 0 || o.MaxPageSize > MaxPageSize {
		o.MaxPageSize = MaxPageSize
	}
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	handler  http.Handler
	hs       *httptest.Server
	counters map[string]*atomic.Int64 // data requests by entity set; keys fixed at New
	limits   *limiter                 // the one app registration's limits
	userID   string                   // the app's user, the userId of subscriptions

	mu        sync.RWMutex // guards the fields below
	companies []*company   // the first holds the data
	tokens    map[string]time.Time
	fail      failure
	outage    failure // n unused: every API request fails while status != 0
	secret    string  // the accepted client secret (SetClientSecret)
	secretExp bool
	disabled  bool
	forbidden map[string]bool // entity sets answered 403 (SetForbidden)
	subs      []*subscription // live or expired, in creation order

	latency       atomic.Int64 // time.Duration
	tokenReqs     atomic.Int64
	tokensIssued  atomic.Int64
	apiReqs       atomic.Int64
	unauthorized  atomic.Int64
	failures      atomic.Int64
	serving       atomic.Int64 // requests in the served section now
	peak          atomic.Int64
	queued        atomic.Int64
	throttled     atomic.Int64
	queueTimeouts atomic.Int64
}

type failure struct {
	n          int
	status     int
	retryAfter time.Duration
}

// New returns a Server with its data set generated, not listening: serve
// Handler from any http.Server (next links are built from each request's
// Host).
func New(opts Options) *Server {
	opts.setDefaults()
	s := &Server{
		opts:      opts,
		secret:    opts.ClientSecret,
		tokens:    make(map[string]time.Time),
		forbidden: make(map[string]bool),
		counters:  make(map[string]*atomic.Int64),
		limits:    newLimiter(opts),
		userID:    hashGUID("user:" + strings.ToLower(opts.ClientID)),
	}
	for _, set := range []string{SetCompanies, SetLocations, SetShipmentMethods, SetCustomers,
		SetItems, SetSalesOrders, SetSalesOrderLines, SetSubscriptions, opts.PriceGroupService} {
		s.counters[set] = new(atomic.Int64)
	}
	s.companies = generate(opts)
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.route)
	s.handler = mux
	return s
}

// NewServer returns a Server listening on a local httptest.Server; Close it
// when done.
func NewServer(opts Options) *Server {
	s := New(opts)
	s.hs = httptest.NewServer(s.handler)
	return s
}

// Handler serves the token endpoint and the BC API.
func (s *Server) Handler() http.Handler { return s.handler }

// URL is the base URL of the server started by NewServer ("" for New): use
// it as both the authority URL and the API URL.
func (s *Server) URL() string {
	if s.hs == nil {
		return ""
	}
	return s.hs.URL
}

// Close stops the server started by NewServer.
func (s *Server) Close() {
	if s.hs != nil {
		s.hs.Close()
	}
}

// TokenURL is the token endpoint of the server started by NewServer.
func (s *Server) TokenURL() string { return s.URL() + "/" + s.opts.TenantID + "/oauth2/v2.0/token" }

// Options returns the options in effect, defaults applied.
func (s *Server) Options() Options { return s.opts }

// TenantID returns the tenant id.
func (s *Server) TenantID() string { return s.opts.TenantID }

// Environment returns the environment name.
func (s *Server) Environment() string { return s.opts.Environment }

// CompanyName returns the name of the company holding the data.
func (s *Server) CompanyName() string { return s.opts.CompanyName }

// CompanyID returns the id of the company holding the data.
func (s *Server) CompanyID() string { return s.companies[0].id }

// ClientID returns the app registration's client id.
func (s *Server) ClientID() string { return s.opts.ClientID }

// ClientSecret returns the app registration's client secret.
func (s *Server) ClientSecret() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.secret
}

// PriceGroupService returns the OData V4 service name for price groups.
func (s *Server) PriceGroupService() string { return s.opts.PriceGroupService }

// LocationCodes returns every location code, in order.
func (s *Server) LocationCodes() []string { return s.keys(SetLocations) }

// ShipmentMethodCodes returns every shipment method code, in order.
func (s *Server) ShipmentMethodCodes() []string { return s.keys(SetShipmentMethods) }

// CustomerNumbers returns every customer number, in order.
func (s *Server) CustomerNumbers() []string { return s.keys(SetCustomers) }

// PriceGroupCodes returns every customer price group code, in order.
func (s *Server) PriceGroupCodes() []string { return s.keys(s.opts.PriceGroupService) }

// ItemNumbers returns every item number, in order.
func (s *Server) ItemNumbers() []string { return s.keys(SetItems) }

// SalesOrderNumbers returns every sales order number, in order.
func (s *Server) SalesOrderNumbers() []string { return s.keys(SetSalesOrders) }

// now reads the clock of Options.Now.
func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) keys(set string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.companies[0].tables[set]
	keys := make([]string, len(t.rows))
	for i, r := range t.rows {
		keys[i] = r.key
	}
	return keys
}

// Rows returns a copy of every row of an entity set (SetLocations,
// SetShipmentMethods, SetCustomers, SetItems, SetSalesOrders,
// SetSalesOrderLines or the price group service name), in order, as served
// (with "@odata.etag"; sales orders without their lines).
func (s *Server) Rows(set string) []map[string]any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.companies[0].tables[set]
	if t == nil {
		return nil
	}
	rows := make([]map[string]any, len(t.rows))
	for i, r := range t.rows {
		rows[i] = r.json()
	}
	return rows
}

// Record returns a copy of the row of set whose key (code, number) or id is
// key. Sales order lines are found by id.
func (s *Server) Record(set, key string) (map[string]any, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.companies[0].find(set, key); r != nil {
		return r.json(), true
	}
	return nil, false
}

// Update changes the row of set whose key (code, number) or id is key: fn
// edits its fields (not "id" nor the key field), then its
// lastModifiedDateTime (from Options.Now) and @odata.etag move on. It
// reports whether the row exists. A sales order line is found by its id;
// changing it does not change its order.
func (s *Server) Update(set, key string, fn func(fields map[string]any)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.companies[0].tables[set]
	if t == nil {
		return false
	}
	r := t.find(key)
	if r == nil {
		return false
	}
	was, indexed := t.eqValue(r)
	fn(r.fields)
	r.touch(s.now())
	t.reindex(r, was, indexed)
	return true
}

// Rename changes the code (or number) of a record, as BC's Rename does, and
// reports whether key was found. The new key must not be taken. Sales
// order lines, keyed by id, cannot be renamed.
func (s *Server) Rename(set, key, newKey string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.companies[0]
	r := c.find(set, key)
	if r == nil || r.keyField == "id" || newKey == "" || c.find(set, newKey) != nil {
		return false
	}
	t := c.tables[set]
	was, indexed := t.eqValue(r)
	t.rekey(r, newKey)
	r.touch(s.now())
	t.reindex(r, was, indexed)
	return true
}

// UpdateLocation is Update(SetLocations, code, fn).
func (s *Server) UpdateLocation(code string, fn func(fields map[string]any)) bool {
	return s.Update(SetLocations, code, fn)
}

// FailNext answers the next n BC API requests (not token requests) with
// status and a BC error body, plus a Retry-After header (whole seconds,
// rounded up) when retryAfter > 0. 429 uses the code
// Application_TooManyRequests; 502 answers an HTML page and 504 an empty
// body, as gateways do.
func (s *Server) FailNext(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = failure{n: n, status: status, retryAfter: retryAfter}
}

// SetOutage makes every BC API request (not the token endpoint) answer
// status with BC's error body, as FailNext does, until SetOutage(0).
func (s *Server) SetOutage(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = failure{status: status}
}

// SetClientSecret replaces the app registration's secret, as an admin who
// deletes a secret and adds another in the Entra admin center: the old one
// is answered with AADSTS7000215. Tokens already issued stay valid (as in
// Entra); ExpireTokens ends them.
func (s *Server) SetClientSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secret = secret
}

// SetForbidden makes every request that reads set (SetCompanies,
// SetLocations, SetShipmentMethods, SetCustomers, SetItems, SetSalesOrders,
// SetSalesOrderLines or the price group service name; a list or one row)
// answer 403 Authorization_InsufficientPermissions, as BC does when none of
// the app's permission sets grants read access to the set's table, until
// SetForbidden(set, false). The request passes authentication and the
// limits first, and is not counted in Stats.DataRequests. $expand of
// salesOrderLines is not refused.
func (s *Server) SetForbidden(set string, forbidden bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if forbidden {
		s.forbidden[set] = true
	} else {
		delete(s.forbidden, set)
	}
}

// SetLatency delays every BC API request by d (the wait ends early if the
// client goes away). An admitted request waits while it holds its slot, so
// latency makes requests queue behind MaxConcurrent.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// ExpireTokens makes every token issued so far expired: the BC API rejects
// them with 401 Authentication_InvalidCredentials.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok := range s.tokens {
		s.tokens[tok] = time.Time{}
	}
}

// SetSecretExpired makes the token endpoint answer AADSTS7000222 (the
// client secret expired) for the right secret.
func (s *Server) SetSecretExpired(expired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secretExp = expired
}

// SetAppDisabled makes the token endpoint answer AADSTS7000112 (the
// application is disabled).
func (s *Server) SetAppDisabled(disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled = disabled
}

// Stats counts requests since New or the last ResetStats.
type Stats struct {
	// TokenRequests counts every request to the token endpoint.
	TokenRequests int64
	// TokensIssued counts successful token requests.
	TokensIssued int64
	// APIRequests counts every BC API request, rejected ones included.
	APIRequests int64
	// Unauthorized counts BC API requests rejected with 401.
	Unauthorized int64
	// Failures counts the answers injected by FailNext.
	Failures int64
	// PeakConcurrent is the most BC API requests seen in the served
	// section (past the limits) at once.
	PeakConcurrent int64
	// Queued counts requests that joined the queue to wait for a slot.
	Queued int64
	// Serving and Waiting are gauges, not counters: the requests in the
	// served section and in the queue now. ResetStats leaves them.
	Serving, Waiting int64
	// Throttled counts the 429s of the limits (budget and queue), not
	// those injected by FailNext.
	Throttled int64
	// QueueTimeouts counts the 503s of requests that waited MaxQueueWait.
	QueueTimeouts int64
	// DataRequests counts, by entity set ("companies", "locations",
	// "shipmentMethods", "customers", "items", "salesOrders",
	// "salesOrderLines", "subscriptions" and the price group service
	// name), the requests that passed authentication, failure injection and
	// the limits and reached the set: one per page of a list.
	// salesOrderLines counts requests to the lines endpoint, not
	// $expand.
	DataRequests map[string]int64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		TokenRequests:  s.tokenReqs.Load(),
		TokensIssued:   s.tokensIssued.Load(),
		APIRequests:    s.apiReqs.Load(),
		Unauthorized:   s.unauthorized.Load(),
		Failures:       s.failures.Load(),
		PeakConcurrent: s.peak.Load(),
		Queued:         s.queued.Load(),
		Serving:        s.serving.Load(),
		Waiting:        int64(s.limits.waiting()),
		Throttled:      s.throttled.Load(),
		QueueTimeouts:  s.queueTimeouts.Load(),
		DataRequests:   make(map[string]int64, len(s.counters)),
	}
	for set, c := range s.counters {
		st.DataRequests[set] = c.Load()
	}
	return st
}

// ResetStats sets every counter to zero. It does not reset the limits: the
// budget window keeps its requests.
func (s *Server) ResetStats() {
	for _, c := range []*atomic.Int64{&s.tokenReqs, &s.tokensIssued, &s.apiReqs, &s.unauthorized, &s.failures,
		&s.peak, &s.queued, &s.throttled, &s.queueTimeouts} {
		c.Store(0)
	}
	for _, c := range s.counters {
		c.Store(0)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// issue records a new token valid for the configured lifetime.
func (s *Server) issue(now time.Time) (string, time.Duration) {
	lifetime := s.opts.TokenLifetime.Round(time.Second)
	if lifetime < s.opts.TokenLifetime {
		lifetime += time.Second
	}
	tok := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, exp := range s.tokens { // forget long-expired tokens
		if now.Sub(exp) > time.Hour {
			delete(s.tokens, t)
		}
	}
	s.tokens[tok] = now.Add(lifetime)
	return tok, lifetime
}

// tokenValid reports whether tok was issued and has not expired.
func (s *Server) tokenValid(tok string, now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	exp, ok := s.tokens[tok]
	return ok && now.Before(exp)
}

// nextFailure consumes one injected failure, or reports the outage.
func (s *Server) nextFailure() (failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outage.status != 0 {
		return s.outage, true
	}
	if s.fail.n <= 0 {
		return failure{}, false
	}
	s.fail.n--
	return s.fail, true
}

// companyByID and companyByName find a company.
func (s *Server) companyByID(id string) *company {
	i := slices.IndexFunc(s.companies, func(c *company) bool { return equalFoldASCII(c.id, id) })
	if i < 0 {
		return nil
	}
	return s.companies[i]
}

func (s *Server) companyByName(name string) *company {
	i := slices.IndexFunc(s.companies, func(c *company) bool { return c.name == name })
	if i < 0 {
		return nil
	}
	return s.companies[i]
}
