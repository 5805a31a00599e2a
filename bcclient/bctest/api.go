package bctest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// route dispatches to the token endpoint or the BC API.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	segs, ok := splitPath(r.URL.EscapedPath())
	switch {
	case !ok:
		http.Error(w, "malformed path", http.StatusBadRequest)
	case len(segs) == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token":
		s.serveToken(w, r, segs[0])
	case len(segs) >= 4 && segs[0] == "v2.0":
		c := &call{s: s, w: w, r: r, corr: newGUID()}
		c.serve(segs[1], segs[2], segs[3:])
	default:
		http.NotFound(w, r)
	}
}

// splitPath splits an escaped path into unescaped segments.
func splitPath(p string) ([]string, bool) {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return nil, false
		}
		segs[i] = u
	}
	return segs, true
}

// call is one BC API request.
type call struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	corr string // correlation id, in the request-id header and error messages
}

// fail writes BC's error body.
func (c *call) fail(status int, code, msg string) {
	c.w.Header().Set("request-id", c.corr)
	writeJSON(c.w, status, map[string]any{"error": map[string]any{
		"code": code, "message": msg + "  CorrelationId:  " + c.corr + ".",
	}})
}

func (c *call) serve(tenant, env string, rest []string) {
	s := c.s
	s.apiReqs.Add(1)
	latency := time.Duration(s.latency.Load())
	if f, ok := s.nextFailure(); ok {
		sleep(c.r.Context(), latency)
		s.failures.Add(1)
		c.injected(f)
		return
	}
	if !c.authenticated() || !strings.EqualFold(tenant, s.opts.TenantID) {
		// A token is issued for one tenant: another tenant in the URL is a
		// token for the wrong audience.
		sleep(c.r.Context(), latency)
		s.unauthorized.Add(1)
		c.w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`Bearer authorization_uri="https://login.microsoftonline.com/%s/oauth2/authorize", resource_id="https://api.businesscentral.dynamics.com"`,
			s.opts.TenantID))
		c.fail(http.StatusUnauthorized, "Authentication_InvalidCredentials", "The server has rejected the client credentials.")
		return
	}
	// The limits belong to the app registration the token was issued to.
	done, ok := c.admit()
	if !ok {
		return
	}
	defer done()
	sleep(c.r.Context(), latency)
	if !strings.EqualFold(env, s.opts.Environment) {
		c.fail(http.StatusNotFound, "Internal_EnvironmentNotFound", fmt.Sprintf(
			"The environment '%s' does not exist in tenant '%s'.", env, tenant))
		return
	}
	switch {
	case len(rest) >= 3 && rest[0] == "api" && rest[1] == "v2.0":
		c.serveV2(rest[2:])
	case len(rest) >= 2 && rest[0] == "ODataV4":
		if c.method(http.MethodGet) {
			c.serveODataV4(rest[1:])
		}
	default:
		c.notFound(strings.Join(rest, "/"))
	}
}

// method checks the request's method against those allowed and answers 405
// when it is not one of them.
func (c *call) method(allowed ...string) bool {
	if slices.Contains(allowed, c.r.Method) {
		return true
	}
	c.w.Header().Set("Allow", strings.Join(allowed, ", "))
	c.fail(http.StatusMethodNotAllowed, "BadRequest_MethodNotAllowed", fmt.Sprintf(
		"The method %s is not allowed here: bctest serves %s.", c.r.Method, strings.Join(allowed, ", ")))
	return false
}

func (c *call) notFound(seg string) {
	c.fail(http.StatusNotFound, "BadRequest_NotFound", fmt.Sprintf(
		"No HTTP resource was found that matches the request URI segment '%s'.", seg))
}

func (c *call) authenticated() bool {
	scheme, tok, ok := strings.Cut(c.r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && tok != "" && c.s.tokenValid(tok, c.s.now())
}

// injected answers a failure set by FailNext, in the shape BC and its
// gateways use.
func (c *call) injected(f failure) {
	if f.retryAfter > 0 {
		secs := (f.retryAfter + time.Second - 1) / time.Second
		c.w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	c.w.Header().Set("request-id", c.corr)
	switch f.status {
	case http.StatusTooManyRequests:
		c.tooMany(101, 100)
	case http.StatusBadGateway:
		c.w.Header().Set("Content-Type", "text/html")
		c.w.WriteHeader(f.status)
		_, _ = c.w.Write([]byte("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"))
	case http.StatusGatewayTimeout:
		c.w.WriteHeader(f.status)
	default:
		code := map[int]string{
			400: "BadRequest", 401: "Authentication_InvalidCredentials", 403: "Authorization_InsufficientPermissions",
			404: "BadRequest_NotFound", 408: "Application_RequestTimeout", 409: "Request_EntityChanged",
			500: "Internal_ServerError", 503: "Internal_ServiceUnavailable",
		}[f.status]
		if code == "" {
			code = "Unknown"
		}
		c.fail(f.status, code, fmt.Sprintf("bctest injected a failure (HTTP %d).", f.status))
	}
}

// segment splits "name(key)" into its name and key.
func segment(seg string) (name, key string, hasKey bool) {
	name, key, hasKey = strings.Cut(seg, "(")
	if hasKey {
		if !strings.HasSuffix(key, ")") {
			return seg, "", false
		}
		key = strings.TrimSuffix(key, ")")
	}
	return name, key, hasKey
}

// v2Sets are the API v2.0 entity sets served under a company, with
// whether they take $expand=salesOrderLines.
var v2Sets = map[string]bool{
	SetLocations: false, SetShipmentMethods: false, SetCustomers: false, SetItems: false, SetSalesOrders: true,
}

// serveV2 serves .../api/v2.0/{segs}.
func (c *call) serveV2(segs []string) {
	name, key, hasKey := segment(segs[0])
	if name == SetSubscriptions {
		c.serveSubscriptions(segs, key, hasKey)
		return
	}
	if !c.method(http.MethodGet) {
		return
	}
	if name != SetCompanies {
		c.notFound(segs[0])
		return
	}
	s := c.s
	if !hasKey {
		if len(segs) > 1 {
			c.notFound(segs[1])
			return
		}
		if c.denied(SetCompanies) {
			return
		}
		s.counters[SetCompanies].Add(1)
		rows := make(mapSource, len(s.companies))
		for i, co := range s.companies {
			rows[i] = co.json()
		}
		c.collection(listing{set: SetCompanies, ctxPath: "companies", spec: filterSpec{eqField: "name"}}, rows)
		return
	}
	if !c.guidKey(key) {
		return
	}
	co := s.companyByID(key)
	if co == nil {
		c.fail(http.StatusNotFound, "Internal_CompanyNotFound", fmt.Sprintf("The company with id '%s' does not exist.", key))
		return
	}
	ctxPath := "companies(" + co.id + ")"
	if len(segs) == 1 {
		if c.query(queryOptions{}) && !c.denied(SetCompanies) {
			s.counters[SetCompanies].Add(1)
			c.entity(ctxPath, co.json())
		}
		return
	}
	set, key, hasKey := segment(segs[1])
	expandable, ok := v2Sets[set]
	switch {
	case !ok || len(segs) > 3:
		c.notFound(strings.Join(segs[1:], "/"))
		return
	case len(segs) == 3:
		if set != SetSalesOrders || !hasKey {
			c.notFound(strings.Join(segs[1:], "/"))
			return
		}
		c.serveLines(co, key, segs[2])
		return
	}
	t := co.tables[set]
	ctxPath += "/" + set
	if c.denied(set) {
		return
	}
	if !hasKey {
		s.counters[set].Add(1)
		c.collection(listing{set: set, ctxPath: ctxPath, spec: filterSpec{eqField: t.eqField, delta: true}, expand: expandable}, tableSource(t))
		return
	}
	if !c.guidKey(key) {
		return
	}
	q, ok := c.queryValues(queryOptions{expand: expandable})
	if !ok {
		return
	}
	s.counters[set].Add(1)
	s.mu.RLock()
	var row map[string]any
	if r := t.byID[strings.ToLower(key)]; r != nil {
		if q.Has("$expand") {
			row = r.jsonExpanded()
		} else {
			row = r.json()
		}
	}
	s.mu.RUnlock()
	if row == nil {
		c.recordNotFound(set, key)
		return
	}
	c.entity(ctxPath, row)
}

// tables names the BC table behind each entity set, for the permission
// error; the price group service reads Customer Price Group.
var tables = map[string]string{
	SetCompanies: "Company", SetLocations: "Location", SetShipmentMethods: "Shipment Method",
	SetCustomers: "Customer", SetItems: "Item", SetSalesOrders: "Sales Header", SetSalesOrderLines: "Sales Line",
}

// denied answers 403 Authorization_InsufficientPermissions when set was
// forbidden with SetForbidden.
func (c *call) denied(set string) bool {
	c.s.mu.RLock()
	forbidden := c.s.forbidden[set]
	c.s.mu.RUnlock()
	if !forbidden {
		return false
	}
	table, ok := tables[set]
	if !ok {
		table = "Customer Price Group"
	}
	c.fail(http.StatusForbidden, "Authorization_InsufficientPermissions", fmt.Sprintf(
		"You do not have the following permissions on TableData %s: Read. To view details about your permissions, see the Effective Permissions page.", table))
	return true
}

func (c *call) recordNotFound(set, id string) {
	c.fail(http.StatusNotFound, "Internal_RecordNotFound", fmt.Sprintf(
		"The %s does not exist. Identification fields and values: Id='{%s}'", set, strings.ToUpper(id)))
}

// serveLines serves .../companies({id})/salesOrders({orderID})/{seg}.
func (c *call) serveLines(co *company, orderID, seg string) {
	if !c.guidKey(orderID) {
		return
	}
	s := c.s
	order := co.tables[SetSalesOrders].byID[strings.ToLower(orderID)]
	if order == nil {
		c.recordNotFound(SetSalesOrders, orderID)
		return
	}
	name, key, hasKey := segment(seg)
	if name != SetSalesOrderLines {
		c.notFound(seg)
		return
	}
	if c.denied(SetSalesOrderLines) {
		return
	}
	ctxPath := "companies(" + co.id + ")/salesOrders(" + order.id + ")/" + SetSalesOrderLines
	if !hasKey {
		s.counters[SetSalesOrderLines].Add(1)
		c.collection(listing{set: SetSalesOrderLines, parent: order.id, ctxPath: ctxPath, spec: filterSpec{delta: true}}, rowSource{rows: order.lines})
		return
	}
	if !c.guidKey(key) || !c.query(queryOptions{}) {
		return
	}
	s.counters[SetSalesOrderLines].Add(1)
	s.mu.RLock()
	var row map[string]any
	for _, l := range order.lines {
		if equalFoldASCII(l.id, key) {
			row = l.json()
		}
	}
	s.mu.RUnlock()
	if row == nil {
		c.recordNotFound(SetSalesOrderLines, key)
		return
	}
	c.entity(ctxPath, row)
}

// serveODataV4 serves .../ODataV4/Company('{name}')/{service}[('{code}')].
func (c *call) serveODataV4(segs []string) {
	name, lit, hasKey := segment(segs[0])
	if name != "Company" || !hasKey || len(segs) != 2 {
		c.notFound(strings.Join(segs, "/"))
		return
	}
	companyName, err := unquote(lit)
	if err != nil {
		c.fail(http.StatusBadRequest, "BadRequest_InvalidKey", "Bad company name literal "+lit+": "+err.Error())
		return
	}
	s := c.s
	co := s.companyByName(companyName)
	if co == nil {
		c.fail(http.StatusNotFound, "Internal_CompanyNotFound", fmt.Sprintf("Cannot open company '%s'.", companyName))
		return
	}
	service, lit, hasKey := segment(segs[1])
	if service != s.opts.PriceGroupService {
		c.notFound(segs[1])
		return
	}
	if c.denied(service) {
		return
	}
	t := co.tables[service]
	ctxPath := "Company(" + url.PathEscape(quote(co.name)) + ")/" + service
	if !hasKey {
		s.counters[service].Add(1)
		c.collection(listing{set: service, ctxPath: ctxPath, spec: filterSpec{eqField: t.eqField}}, tableSource(t))
		return
	}
	code, err := unquote(lit)
	if err != nil {
		c.fail(http.StatusBadRequest, "BadRequest_InvalidKey", "Bad key literal "+lit+": "+err.Error())
		return
	}
	if !c.query(queryOptions{}) {
		return
	}
	s.counters[service].Add(1)
	s.mu.RLock()
	var row map[string]any
	if r := t.byKey[code]; r != nil {
		row = r.json()
	}
	s.mu.RUnlock()
	if row == nil {
		c.fail(http.StatusNotFound, "Internal_RecordNotFound", fmt.Sprintf(
			"The Customer Price Group does not exist. Identification fields and values: Code='%s'", code))
		return
	}
	c.entity(ctxPath, row)
}

// guidKey checks an API v2.0 key; a malformed one is answered with 400.
func (c *call) guidKey(key string) bool {
	if isGUID(key) {
		return true
	}
	c.fail(http.StatusBadRequest, "BadRequest_InvalidKey", fmt.Sprintf(
		"The key '%s' is not a valid GUID: use the record's id.", key))
	return false
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if r != '-' {
				return false
			}
		} else if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// listing describes a collection request.
type listing struct {
	set     string // names the collection in skip tokens
	parent  string // the id of the row the collection hangs from, if any
	ctxPath string
	spec    filterSpec
	expand  bool // $expand=salesOrderLines is accepted
}

// source is the rows of a collection, in a stable order. Read it under
// Server.mu.
type source interface {
	len() int
	match(i int, f filter) bool
	raw(i int, expand bool) []byte // the row as served, marshalled
	// lookup returns the positions, ascending, of the rows that may pass
	// f, when an index narrows f down; false when every row must be tried.
	lookup(f filter) ([]int, bool)
}

// rowSource is a collection of rows, with the index of one field if at is
// not nil (see table.at).
type rowSource struct {
	rows  []*row
	field string
	at    map[string][]int
}

// tableSource is the rows of t, with its index.
func tableSource(t *table) rowSource { return rowSource{rows: t.rows, field: t.eqField, at: t.at} }

func (rs rowSource) len() int { return len(rs.rows) }
func (rs rowSource) match(i int, f filter) bool {
	return f.match(rs.rows[i].fields, rs.rows[i].modified)
}
func (rs rowSource) raw(i int, expand bool) []byte {
	if expand {
		b, _ := json.Marshal(rs.rows[i].jsonExpanded())
		return b
	}
	return rs.rows[i].raw()
}

// lookup uses the index for the first "eq" term on the indexed field: only
// rows holding one of its values can pass f.
func (rs rowSource) lookup(f filter) ([]int, bool) {
	if rs.at == nil {
		return nil, false
	}
	for _, t := range f {
		if t.op != "eq" || t.field != rs.field {
			continue
		}
		if len(t.values) == 1 {
			return rs.at[t.values[0]], true
		}
		var pos []int
		for _, v := range t.values {
			pos = append(pos, rs.at[v]...)
		}
		slices.Sort(pos)
		return slices.Compact(pos), true
	}
	return nil, false
}

// mapSource is a collection of rows already as served (companies).
type mapSource []map[string]any

func (ms mapSource) len() int                    { return len(ms) }
func (ms mapSource) match(i int, f filter) bool  { return f.match(ms[i], time.Time{}) }
func (ms mapSource) lookup(filter) ([]int, bool) { return nil, false }
func (ms mapSource) raw(i int, _ bool) []byte {
	b, _ := json.Marshal(ms[i])
	return b
}

// skipToken is the opaque state of a next link.
type skipToken struct {
	Set    string `json:"s"`
	Parent string `json:"p,omitempty"`
	Offset int    `json:"o"` // index in the source of the next page's first row
	Filter string `json:"f,omitempty"`
}

// collection serves the rows of src that pass the $filter, one page at a
// time. A next link holds the position in src, so rows changed between
// pages are neither served twice nor skipped.
func (c *call) collection(l listing, src source) {
	q, ok := c.queryValues(queryOptions{filter: true, skiptoken: true, expand: l.expand})
	if !ok {
		return
	}
	raw := q.Get("$filter")
	var f filter
	if q.Has("$filter") {
		var err error
		if f, err = parseFilter(raw, l.spec); err != nil {
			c.fail(http.StatusBadRequest, "BadRequest_InvalidFilter", fmt.Sprintf(
				"The $filter '%s' is not supported: %v.", raw, err))
			return
		}
	}
	expand := q.Has("$expand")
	offset := 0
	if st := q.Get("$skiptoken"); st != "" {
		tok, err := decodeSkipToken(st)
		if err != nil || tok.Set != l.set || tok.Parent != l.parent || tok.Filter != raw || tok.Offset <= 0 || tok.Offset >= src.len() {
			c.fail(http.StatusBadRequest, "BadRequest_InvalidSkipToken",
				"The $skiptoken is not valid for this request: follow @odata.nextLink verbatim.")
			return
		}
		offset = tok.Offset
	}
	size := c.s.opts.MaxPageSize
	if n, ok := maxPageSize(c.r.Header.Values("Prefer")); ok {
		size = min(n, size)
		c.w.Header().Set("Preference-Applied", "odata.maxpagesize="+strconv.Itoa(size))
	}
	// The page is written from each row's marshalled JSON: marshalling
	// maps row by row would make the fake the bottleneck of benchmarks.
	var body bytes.Buffer
	body.WriteString(`{"@odata.context":`)
	body.Write(jsonString(c.base() + "/$metadata#" + l.ctxPath))
	body.WriteString(`,"value":[`) // [], never null
	n, next := 0, 0
	c.s.mu.RLock()
	for i := range candidates(src, f, offset) {
		if !src.match(i, f) {
			continue
		}
		if n == size {
			next = i
			break
		}
		if n > 0 {
			body.WriteByte(',')
		}
		body.Write(src.raw(i, expand))
		n++
	}
	c.s.mu.RUnlock()
	body.WriteByte(']')
	if next > 0 {
		link := c.origin() + c.r.URL.EscapedPath() + "?"
		if q.Has("$filter") {
			link += "$filter=" + queryEscape(raw) + "&"
		}
		if expand {
			link += "$expand=" + SetSalesOrderLines + "&"
		}
		link += "$skiptoken=" + encodeSkipToken(skipToken{Set: l.set, Parent: l.parent, Offset: next, Filter: raw})
		body.WriteString(`,"@odata.nextLink":`)
		body.Write(jsonString(link))
	}
	body.WriteByte('}')
	c.w.Header().Set("OData-Version", "4.0")
	c.w.Header().Set("request-id", c.corr)
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(body.Bytes())
}

// candidates yields, ascending, the positions from offset on of the rows
// of src that may pass f: those its index finds, else every one.
func candidates(src source, f filter, offset int) iter.Seq[int] {
	return func(yield func(int) bool) {
		if pos, ok := src.lookup(f); ok {
			j, _ := slices.BinarySearch(pos, offset)
			for _, i := range pos[j:] {
				if !yield(i) {
					return
				}
			}
			return
		}
		for i := offset; i < src.len(); i++ {
			if !yield(i) {
				return
			}
		}
	}
}

// jsonString marshals a string.
func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// entity serves one row.
func (c *call) entity(ctxPath string, row map[string]any) {
	row["@odata.context"] = c.base() + "/$metadata#" + ctxPath + "/$entity"
	c.ok(row)
}

func (c *call) ok(body any) { c.reply(http.StatusOK, body) }

// reply writes a successful answer.
func (c *call) reply(status int, body any) {
	c.w.Header().Set("OData-Version", "4.0")
	c.w.Header().Set("request-id", c.corr)
	writeJSON(c.w, status, body)
}

// base is the absolute URL of the API root the request used:
// scheme://host/v2.0/{tenant}/{env}/api/v2.0 or .../ODataV4.
func (c *call) base() string {
	segs := strings.SplitN(strings.TrimPrefix(c.r.URL.EscapedPath(), "/"), "/", 6)
	root := strings.Join(segs[:min(4, len(segs))], "/")
	if len(segs) > 4 && segs[3] == "api" {
		root += "/" + segs[4]
	}
	return c.origin() + "/" + root
}

// origin is scheme://host of the request, as the client addressed it.
func (c *call) origin() string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.r.Host
}

// queryOptions are the query options a request accepts.
type queryOptions struct {
	filter, skiptoken bool
	expand            bool // $expand=salesOrderLines
}

// query checks the query of a request.
func (c *call) query(allowed queryOptions) bool {
	_, ok := c.queryValues(allowed)
	return ok
}

// queryValues parses the query strictly: only the options allowed, each at
// most once.
func (c *call) queryValues(allowed queryOptions) (url.Values, bool) {
	q, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		c.fail(http.StatusBadRequest, "BadRequest_InvalidRequestUrl", "The query string is malformed: "+err.Error())
		return nil, false
	}
	for k, v := range q {
		switch {
		case k == "$top" || k == "$skip":
			c.fail(http.StatusBadRequest, "BadRequest_NotSupported", fmt.Sprintf(
				"The query option '%s' is not supported by bctest: page with Prefer: odata.maxpagesize and follow @odata.nextLink.", k))
			return nil, false
		case k == "$filter" && allowed.filter, k == "$skiptoken" && allowed.skiptoken, k == "$expand" && allowed.expand:
			if len(v) != 1 {
				c.fail(http.StatusBadRequest, "BadRequest_InvalidRequestUrl", "The query option '"+k+"' is given more than once.")
				return nil, false
			}
			if k == "$expand" && v[0] != SetSalesOrderLines {
				c.fail(http.StatusBadRequest, "BadRequest_NotSupported", fmt.Sprintf(
					"The $expand '%s' is not supported: bctest expands salesOrderLines only.", v[0]))
				return nil, false
			}
		default:
			c.fail(http.StatusBadRequest, "BadRequest_NotSupported", fmt.Sprintf(
				"The query option '%s' is not supported here.", k))
			return nil, false
		}
	}
	return q, true
}

// maxPageSize reads odata.maxpagesize from Prefer headers; other
// preferences are ignored, as OData requires.
func maxPageSize(prefer []string) (int, bool) {
	for _, h := range prefer {
		for _, p := range strings.Split(h, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "odata.maxpagesize") {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
					return n, true
				}
			}
		}
	}
	return 0, false
}

// unquote parses an OData string literal: in single quotes, inner quotes
// doubled.
func unquote(lit string) (string, error) {
	if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		return "", fmt.Errorf("a string literal must be in single quotes")
	}
	inner := lit[1 : len(lit)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		if inner[i] == '\'' {
			if i+1 == len(inner) || inner[i+1] != '\'' {
				return "", fmt.Errorf("a single quote inside a string literal must be doubled")
			}
			i++
		}
		b.WriteByte(inner[i])
	}
	return b.String(), nil
}

// quote writes an OData string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// queryEscape percent-encodes a query value with spaces as %20.
func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

func encodeSkipToken(t skipToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSkipToken(s string) (skipToken, error) {
	var t skipToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	return t, err
}
