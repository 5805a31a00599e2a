package bctest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
	sleep(c.r.Context(), time.Duration(s.latency.Load()))
	if f, ok := s.nextFailure(); ok {
		s.failures.Add(1)
		c.injected(f)
		return
	}
	if !c.authenticated() || !strings.EqualFold(tenant, s.opts.TenantID) {
		// A token is issued for one tenant: another tenant in the URL is a
		// token for the wrong audience.
		s.unauthorized.Add(1)
		c.w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`Bearer authorization_uri="https://login.microsoftonline.com/%s/oauth2/authorize", resource_id="https://api.businesscentral.dynamics.com"`,
			s.opts.TenantID))
		c.fail(http.StatusUnauthorized, "Authentication_InvalidCredentials", "The server has rejected the client credentials.")
		return
	}
	if c.r.Method != http.MethodGet {
		c.w.Header().Set("Allow", http.MethodGet)
		c.fail(http.StatusMethodNotAllowed, "BadRequest_MethodNotAllowed",
			"bctest serves reads only: the method "+c.r.Method+" is not allowed.")
		return
	}
	if !strings.EqualFold(env, s.opts.Environment) {
		c.fail(http.StatusNotFound, "Internal_EnvironmentNotFound", fmt.Sprintf(
			"The environment '%s' does not exist in tenant '%s'.", env, tenant))
		return
	}
	switch {
	case len(rest) >= 3 && rest[0] == "api" && rest[1] == "v2.0":
		c.serveV2(rest[2:])
	case len(rest) >= 2 && rest[0] == "ODataV4":
		c.serveODataV4(rest[1:])
	default:
		c.notFound(strings.Join(rest, "/"))
	}
}

func (c *call) notFound(seg string) {
	c.fail(http.StatusNotFound, "BadRequest_NotFound", fmt.Sprintf(
		"No HTTP resource was found that matches the request URI segment '%s'.", seg))
}

func (c *call) authenticated() bool {
	scheme, tok, ok := strings.Cut(c.r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && tok != "" && c.s.tokenValid(tok, time.Now())
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
		writeJSON(c.w, f.status, map[string]any{"error": map[string]any{
			"code": "Application_TooManyRequests", "message": "Too many requests reached. Actual (101). Maximum (100).",
		}})
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

// serveV2 serves .../api/v2.0/{segs}.
func (c *call) serveV2(segs []string) {
	name, key, hasKey := segment(segs[0])
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
		s.counters[SetCompanies].Add(1)
		var rows []map[string]any
		for _, co := range s.companies {
			rows = append(rows, co.json())
		}
		c.collection(SetCompanies, "name", "companies", rows)
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
		if c.query(false, "") {
			s.counters[SetCompanies].Add(1)
			c.entity(ctxPath, co.json())
		}
		return
	}
	set, key, hasKey := segment(segs[1])
	if len(segs) > 2 || (set != SetLocations && set != SetShipmentMethods && set != SetCustomers) {
		c.notFound(strings.Join(segs[1:], "/"))
		return
	}
	t := co.tables[set]
	ctxPath += "/" + set
	if !hasKey {
		s.counters[set].Add(1)
		c.table(set, ctxPath, t)
		return
	}
	if !c.guidKey(key) || !c.query(false, "") {
		return
	}
	s.counters[set].Add(1)
	s.mu.RLock()
	var row map[string]any
	if r := co.find(set, key); r != nil && equalFoldASCII(r.id, key) {
		row = r.json()
	}
	s.mu.RUnlock()
	if row == nil {
		c.fail(http.StatusNotFound, "Internal_RecordNotFound", fmt.Sprintf(
			"The %s does not exist. Identification fields and values: Id='{%s}'", set, strings.ToUpper(key)))
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
	t := co.tables[service]
	ctxPath := "Company(" + url.PathEscape(quote(co.name)) + ")/" + service
	if !hasKey {
		s.counters[service].Add(1)
		c.table(service, ctxPath, t)
		return
	}
	code, err := unquote(lit)
	if err != nil {
		c.fail(http.StatusBadRequest, "BadRequest_InvalidKey", "Bad key literal "+lit+": "+err.Error())
		return
	}
	if !c.query(false, "") {
		return
	}
	s.counters[service].Add(1)
	s.mu.RLock()
	var row map[string]any
	for _, r := range t.rows {
		if r.key == code {
			row = r.json()
		}
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

// table serves a collection of t, filtered and paged.
func (c *call) table(set, ctxPath string, t *table) {
	c.s.mu.RLock()
	rows := make([]map[string]any, len(t.rows))
	for i, r := range t.rows {
		rows[i] = r.json()
	}
	c.s.mu.RUnlock()
	c.collection(set, t.keyField, ctxPath, rows)
}

// skipToken is the opaque state of a next link.
type skipToken struct {
	Set    string `json:"s"`
	Offset int    `json:"o"`
	Filter string `json:"f,omitempty"`
}

// collection serves rows filtered on filterField and paged.
func (c *call) collection(set, filterField, ctxPath string, rows []map[string]any) {
	q, ok := c.queryValues(true, filterField)
	if !ok {
		return
	}
	filter := q.Get("$filter")
	if filter != "" {
		field, value, err := parseEqFilter(filter)
		if err != nil || field != filterField {
			if err == nil {
				err = fmt.Errorf("bctest filters %s on '%s' only", set, filterField)
			}
			c.fail(http.StatusBadRequest, "BadRequest_InvalidFilter", fmt.Sprintf(
				"The $filter '%s' is not supported: %v.", filter, err))
			return
		}
		kept := []map[string]any{}
		for _, row := range rows {
			if row[field] == value {
				kept = append(kept, row)
			}
		}
		rows = kept
	}
	offset := 0
	if st := q.Get("$skiptoken"); st != "" {
		tok, err := decodeSkipToken(st)
		if err != nil || tok.Set != set || tok.Filter != filter || tok.Offset <= 0 || tok.Offset >= len(rows) {
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
	end := min(offset+size, len(rows))
	if rows == nil {
		rows = []map[string]any{} // "value": [], never null
	}
	body := map[string]any{"@odata.context": c.base() + "/$metadata#" + ctxPath, "value": rows[offset:end]}
	if end < len(rows) {
		next := c.origin() + c.r.URL.EscapedPath() + "?"
		if filter != "" {
			next += "$filter=" + queryEscape(filter) + "&"
		}
		body["@odata.nextLink"] = next + "$skiptoken=" + encodeSkipToken(skipToken{Set: set, Offset: end, Filter: filter})
	}
	c.ok(body)
}

// entity serves one row.
func (c *call) entity(ctxPath string, row map[string]any) {
	row["@odata.context"] = c.base() + "/$metadata#" + ctxPath + "/$entity"
	c.ok(row)
}

func (c *call) ok(body any) {
	c.w.Header().Set("OData-Version", "4.0")
	c.w.Header().Set("request-id", c.corr)
	writeJSON(c.w, http.StatusOK, body)
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

// query checks the query of a request that takes no options.
func (c *call) query(collection bool, filterField string) bool {
	_, ok := c.queryValues(collection, filterField)
	return ok
}

// queryValues parses the query strictly: only $filter (where filterField is
// set) and $skiptoken (on collections), each at most once.
func (c *call) queryValues(collection bool, filterField string) (url.Values, bool) {
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
		case k == "$filter" && collection && filterField != "", k == "$skiptoken" && collection:
			if len(v) != 1 {
				c.fail(http.StatusBadRequest, "BadRequest_InvalidRequestUrl", "The query option '"+k+"' is given more than once.")
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

// parseEqFilter parses "<field> eq '<literal>'".
func parseEqFilter(expr string) (field, value string, err error) {
	f := strings.SplitN(strings.TrimSpace(expr), " ", 3)
	if len(f) != 3 || f[1] != "eq" || f[0] == "" {
		return "", "", fmt.Errorf("expected <field> eq '<value>'")
	}
	value, err = unquote(strings.TrimSpace(f[2]))
	return f[0], value, err
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
