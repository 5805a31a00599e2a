// Package ipaastest is a strict fake of the iPaaS.com API, for tests,
// demos, benchmarks and the standalone simulator.
//
// It serves, under each base path (/customers, /products, /transactions):
//
//	POST {base}/v2/External/LookupSpecial     external id -> "id", "DELETED:id" or 404
//	POST {base}/v2/External/UpdateExternalId  link an external id to an existing record
//
// and per data type (external id table_name in brackets):
//
//	/customers/v2/Customer/Category[/{id}]    [customer category]
//	/products/v2/Catalog/Location[/{id}]      [location]
//	/transactions/v2/ShippingMethod[/{id}]    [shipping method], and GET /transactions/v2/ShippingMethods
//	/customers/v2/Customer[/{id}]             [customer]
//	/products/v2/Catalog/Product[/{id}]       [product]
//
// POST on the collection creates, GET/PUT/DELETE on {id} read, replace and
// deactivate. Paths, field names and the external id tables are hard-coded
// from ipaas.md: this package does not import ipaasclient, so that a wrong
// path or JSON field in the client is caught.
//
// It is stricter than iPaaS.com is known to be, so that client mistakes
// show: every call needs "Authorization: Bearer <key>" (and X-Client-Id
// when Options.ClientID is set), else 401 AUTH-1001 (AUTH-1002 for the
// client id); bodies must be JSON objects sent as application/json (415
// VALD-1001, 400 VALD-1000); paths are case-sensitive (404 NFND-1000) and
// methods checked (405 VALD-1002); records may hold only their documented
// fields plus id, external_ids and custom_fields, with the right JSON types
// (400 VALD-1003); a LookupSpecial table_name must belong to the base path
// it is posted to and system_id must be Options.SystemID (400 VALD-1005).
//
// Records are stored per data type in memory, with a server-assigned
// numeric-looking string id ("4711", "4712", ...):
//   - POST creates; with external_ids it creates the links too. A link that
//     already points to a live record makes it answer 409 BIZL-1003 and
//     create nothing. A link to a deactivated record is moved to the new one;
//   - GET answers every documented field (null when unset), id,
//     external_ids (rendered from the links) and custom_fields;
//   - PUT replaces the WHOLE record: fields left out are cleared; the id is
//     the URL's; external_ids is checked, and the record's links it leaves
//     out are cleared (it adds none: links are made by POST and
//     UpdateExternalId);
//   - DELETE deactivates: the record is kept but GET, PUT and DELETE answer
//     404 NFND-1001, it no longer counts, and LookupSpecial answers
//     "DELETED:<id>" for its links;
//   - validation: a customer needs first_name or last_name (400 VALD-1049);
//     a customer category, location and shipping method need name, a
//     product sku (400 VALD-1004); shipping method names are unique among
//     live records, case-sensitively (400 VALD-1050).
//
// The codes other than AUTH-1001, VALD-1049, BIZL-1003 and BIZL-1005 are this
// fake's own. The Server can be told to fail and slow down, and counts
// what it serves. All its methods are safe for concurrent use.
package ipaastest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	// DefaultAPIKey is the API key accepted unless Options.APIKey is set.
	DefaultAPIKey = "ipaastest-key-7c1e9a4f2b6d4e8a9f0b3c5d7e9f1a2b"
	// DefaultSystemID is the subscription id of the BC connection.
	DefaultSystemID = 1001
	// FirstID is the id of the first record created.
	FirstID = 4711
	// MaxBodyBytes is the largest request body accepted (413 above).
	MaxBodyBytes = 1 << 20
)

// External id tables (table_name values), which name the data types in the
// Server's test controls.
const (
	TableCustomerCategory = "customer category"
	TableLocation         = "location"
	TableShippingMethod   = "shipping method"
	TableCustomer         = "customer"
	TableProduct          = "product"
)

// Options configure a Server. The zero value of a field means its default.
type Options struct {
	// APIKey is the only API key accepted. Default DefaultAPIKey.
	APIKey string
	// ClientID, when set, must be sent as X-Client-Id on every call.
	ClientID string
	// SystemID is the only system_id accepted in look-ups and links.
	// Default DefaultSystemID (1001).
	SystemID int
	// OnWrite, when set, is called after each successful create or update
	// (PUT) with the table (e.g. "customer") and the external ids linked to
	// the record: benchmarks time jobs by it. It must not call the Server.
	OnWrite func(table string, externalIDs []string)
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	handler http.Handler
	hs      *httptest.Server

	mu     sync.Mutex // guards the fields below
	tables map[string]*table
	nextID int
	fail   failure

	reqMu    sync.Mutex
	requests map[string]int64

	latency atomic.Int64 // time.Duration
	counts  counters
}

type counters struct {
	lookups, linkUpdates, gets, creates, createConflicts, updates, deletes,
	failures, unauthorized, validation atomic.Int64
}

type failure struct {
	n          int
	status     int
	code       string
	retryAfter time.Duration
}

// New returns a Server, not listening: serve Handler from any http.Server.
func New(opts Options) *Server {
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.SystemID <= 0 {
		opts.SystemID = DefaultSystemID
	}
	s := &Server{
		opts:     opts,
		tables:   make(map[string]*table, len(schemas)),
		nextID:   FirstID,
		requests: make(map[string]int64),
	}
	for _, sc := range schemas {
		s.tables[sc.table] = &table{schema: sc, records: map[string]*record{}, links: map[linkKey]string{}}
	}
	s.handler = http.HandlerFunc(s.serve)
	return s
}

// NewServer returns a Server listening on a local httptest.Server; Close it
// when done.
func NewServer(opts Options) *Server {
	s := New(opts)
	s.hs = httptest.NewServer(s.handler)
	return s
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return s.handler }

// URL is the base URL of the server started by NewServer ("" for New).
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

// APIKey is the API key the server accepts.
func (s *Server) APIKey() string { return s.opts.APIKey }

// ClientID is the X-Client-Id the server requires, "" for none.
func (s *Server) ClientID() string { return s.opts.ClientID }

// SystemID is the system_id the server accepts.
func (s *Server) SystemID() int { return s.opts.SystemID }

// FailNext makes the next n record writes (POST creating a record, PUT,
// DELETE) fail with status and an {"errors":[{"code":code,...}]} body,
// without writing. Look-ups, UpdateExternalId and reads are not failed.
// A retryAfter > 0 is sent as Retry-After in whole seconds, rounded up. An
// empty code is derived from status (5xx: INTL-1000). Calls are checked for
// their key before a failure is injected. n = 0 cancels.
func (s *Server) FailNext(n int, status int, code string, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = failure{n: n, status: status, code: code, retryAfter: retryAfter}
}

func (s *Server) nextFailure() (failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail.n <= 0 {
		return failure{}, false
	}
	s.fail.n--
	return s.fail, true
}

// SetLatency delays every answer by d (0 for none).
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Stats counts what the server served.
type Stats struct {
	// Requests counts every request by HTTP method, rejected ones included.
	Requests map[string]int64
	// Lookups counts LookupSpecial calls answered after authentication and
	// the body's content type and syntax passed (whatever the answer).
	Lookups int64
	// LinkUpdates counts UpdateExternalId calls that set a link.
	LinkUpdates int64
	// Gets counts authenticated GET calls on a record or the list, found
	// or not.
	Gets int64
	// Creates, Updates and Deletes count records created, replaced and
	// deactivated through the API.
	Creates, Updates, Deletes int64
	// CreateConflicts counts creates refused with BIZL-1003.
	CreateConflicts int64
	// FailuresInjected counts answers made by FailNext.
	FailuresInjected int64
	// Unauthorized counts 401 answers.
	Unauthorized int64
	// ValidationErrors counts VALD answers.
	ValidationErrors int64
}

// Stats returns a snapshot of the counters. The test controls (Create,
// Patch) are not counted.
func (s *Server) Stats() Stats {
	s.reqMu.Lock()
	req := make(map[string]int64, len(s.requests))
	for k, v := range s.requests {
		req[k] = v
	}
	s.reqMu.Unlock()
	c := &s.counts
	return Stats{
		Requests: req,
		Lookups:  c.lookups.Load(), LinkUpdates: c.linkUpdates.Load(), Gets: c.gets.Load(),
		Creates: c.creates.Load(), Updates: c.updates.Load(), Deletes: c.deletes.Load(),
		CreateConflicts:  c.createConflicts.Load(),
		FailuresInjected: c.failures.Load(),
		Unauthorized:     c.unauthorized.Load(),
		ValidationErrors: c.validation.Load(),
	}
}

// Count is the number of live (not deactivated) records of table; 0 for an
// unknown table.
func (s *Server) Count(table string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[table]
	if !ok {
		return 0
	}
	n := 0
	for _, r := range t.records {
		if r.active {
			n++
		}
	}
	return n
}

// Records returns copies of the live records of table, as a GET answers
// them and encoding/json decodes them (numbers are float64), in id order.
func (s *Server) Records(table string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[table]
	if !ok {
		return nil
	}
	var live []*record
	for _, r := range t.records {
		if r.active {
			live = append(live, r)
		}
	}
	slices.SortFunc(live, func(a, b *record) int { return a.seq - b.seq })
	out := make([]map[string]any, 0, len(live))
	for _, r := range live {
		out = append(out, copyOf(t.render(r)))
	}
	return out
}

// Lookup returns a copy of the live record of table linked to externalID in
// Options.SystemID, as Records does.
func (s *Server) Lookup(table, externalID string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[table]
	if !ok {
		return nil, false
	}
	r := t.linked(linkKey{system: int64(s.opts.SystemID), external: externalID})
	if r == nil || !r.active {
		return nil, false
	}
	return copyOf(t.render(r)), true
}

// Links is the number of external id links of table, those to deactivated
// records included.
func (s *Server) Links(table string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[table]; ok {
		return len(t.links)
	}
	return 0
}

// Create stores a record in table as a POST would (validated the same way),
// linked to externalID in Options.SystemID unless externalID is "", and
// returns its id. It stands for a write by another system or an earlier
// attempt, and is not counted in Stats.
func (s *Server) Create(table, externalID string, fields map[string]any) (string, error) {
	body, err := normalize(fields)
	if err != nil {
		return "", err
	}
	if externalID != "" {
		body["external_ids"] = []any{map[string]any{
			"system_id": json.Number(strconv.Itoa(s.opts.SystemID)), "external_id": externalID,
		}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[table]
	if !ok {
		return "", fmt.Errorf("ipaastest: no table %q", table)
	}
	r, aerr := s.create(t, body)
	if aerr != nil {
		return "", aerr
	}
	return r.id, nil
}

// Patch sets fields of the live record of table linked to externalID, as
// another system would by GET, change, PUT (validated the same way). A nil
// value clears a field. It is not counted in Stats.
func (s *Server) Patch(table, externalID string, fields map[string]any) error {
	patch, err := normalize(fields)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[table]
	if !ok {
		return fmt.Errorf("ipaastest: no table %q", table)
	}
	r := t.linked(linkKey{system: int64(s.opts.SystemID), external: externalID})
	if r == nil || !r.active {
		return fmt.Errorf("ipaastest: no live %s linked to %q", table, externalID)
	}
	body := make(map[string]any, len(r.fields)+len(patch))
	for k, v := range r.fields {
		body[k] = v
	}
	for k, v := range patch {
		body[k] = v
	}
	if aerr := s.replace(t, r, body, true); aerr != nil {
		return aerr
	}
	return nil
}

// normalize turns Go values into what decoding a request body gives.
func normalize(fields map[string]any) (map[string]any, error) {
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("ipaastest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	m := map[string]any{}
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("ipaastest: %w", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// copyOf deep-copies v as encoding/json would decode it.
func copyOf(v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // stored records are decoded JSON
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}
