package ipaastest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// routeKind is what a path addresses.
type routeKind int

const (
	routeLookup     routeKind = iota // POST {base}/v2/External/LookupSpecial
	routeLink                        // POST {base}/v2/External/UpdateExternalId
	routeCollection                  // POST {base}/v2/{collection}
	routeList                        // GET {base}/v2/{list}
	routeRecord                      // GET, PUT, DELETE {base}/v2/{collection}/{id}
)

type route struct {
	kind   routeKind
	base   string
	schema *schema // nil for routeLookup and routeLink
	id     string  // routeRecord
}

func (r route) methods() []string {
	switch r.kind {
	case routeList:
		return []string{http.MethodGet}
	case routeRecord:
		return []string{http.MethodGet, http.MethodPut, http.MethodDelete}
	}
	return []string{http.MethodPost}
}

// match finds the route of a path; paths are case-sensitive.
func match(path string) (route, bool) {
	for _, base := range basePaths {
		rest, ok := strings.CutPrefix(path, base+"/v2/")
		if !ok {
			continue
		}
		switch rest {
		case "External/LookupSpecial":
			return route{kind: routeLookup, base: base}, true
		case "External/UpdateExternalId":
			return route{kind: routeLink, base: base}, true
		}
		for _, sc := range schemas {
			if sc.base != base {
				continue
			}
			if rest == sc.collection {
				return route{kind: routeCollection, base: base, schema: sc}, true
			}
			if sc.list != "" && rest == sc.list {
				return route{kind: routeList, base: base, schema: sc}, true
			}
		}
		for _, sc := range schemas {
			if id, ok := strings.CutPrefix(rest, sc.collection+"/"); ok && sc.base == base &&
				id != "" && !strings.Contains(id, "/") {
				return route{kind: routeRecord, base: base, schema: sc, id: id}, true
			}
		}
	}
	return route{}, false
}

// serve answers one request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.reqMu.Lock()
	s.requests[r.Method]++
	s.reqMu.Unlock()
	if d := time.Duration(s.latency.Load()); d > 0 {
		sleep(r.Context(), d)
	}
	if aerr := s.authenticate(r); aerr != nil {
		s.counts.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="iPaaS.com"`)
		s.writeError(w, aerr)
		return
	}
	rt, ok := match(r.URL.Path)
	if !ok {
		s.writeError(w, &apiError{status: http.StatusNotFound, code: "NFND-1000",
			msg: fmt.Sprintf("no endpoint %s", r.URL.Path)})
		return
	}
	if !slices.Contains(rt.methods(), r.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods(), ", "))
		s.writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: "VALD-1002",
			msg: fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)})
		return
	}
	write := rt.kind == routeCollection || (rt.kind == routeRecord && r.Method != http.MethodGet)
	if write {
		if f, ok := s.nextFailure(); ok {
			s.counts.failures.Add(1)
			s.injected(w, f)
			return
		}
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		b, aerr := readBody(r)
		if aerr != nil {
			s.writeError(w, aerr)
			return
		}
		body = b
	}
	var (
		status int
		out    any
		aerr   *apiError
	)
	switch rt.kind {
	case routeLookup:
		s.counts.lookups.Add(1)
		status, out, aerr = s.lookupSpecial(rt, body)
	case routeLink:
		status, out, aerr = s.updateExternalID(rt, body)
	case routeCollection:
		status, out, aerr = s.postRecord(rt, body)
	case routeList:
		s.counts.gets.Add(1)
		status, out = s.list(rt)
	case routeRecord:
		status, out, aerr = s.recordCall(r.Method, rt, body)
	}
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	if out == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, out)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// authenticate checks the API key and, when configured, the client id.
func (s *Server) authenticate(r *http.Request) *apiError {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") ||
		subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1 {
		return &apiError{status: http.StatusUnauthorized, code: "AUTH-1001",
			msg: "the API key is missing, invalid or expired"}
	}
	if s.opts.ClientID != "" && r.Header.Get("X-Client-Id") != s.opts.ClientID {
		return &apiError{status: http.StatusUnauthorized, code: "AUTH-1002",
			msg: "the X-Client-Id header is missing or does not match the API key's company"}
	}
	return nil
}

// readBody reads a JSON object sent as application/json.
func readBody(r *http.Request) (map[string]any, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, &apiError{status: http.StatusUnsupportedMediaType, code: "VALD-1001",
			msg: fmt.Sprintf("Content-Type %q: send application/json", r.Header.Get("Content-Type"))}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, invalid("VALD-1000", "reading the body: %v", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: "VALD-1000",
			msg: fmt.Sprintf("the body exceeds %d bytes", MaxBodyBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, invalid("VALD-1000", "the body must be a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("VALD-1000", "the body must be one JSON object")
	}
	return m, nil
}

// requestTable reads and checks table_name, system_id and external_id of a
// LookupSpecial or UpdateExternalId body; extra names the other fields
// allowed.
func (s *Server) requestTable(rt route, body map[string]any, extra ...string) (*table, linkKey, *apiError) {
	allowed := append([]string{"table_name", "system_id", "external_id"}, extra...)
	for k := range body {
		if !slices.Contains(allowed, k) {
			return nil, linkKey{}, invalid("VALD-1003", "unknown field %q", k)
		}
	}
	name, _ := body["table_name"].(string)
	t, ok := s.tables[name]
	switch {
	case !ok:
		return nil, linkKey{}, invalid("VALD-1005", "unknown table_name %q", name)
	case t.schema.base != rt.base:
		return nil, linkKey{}, invalid("VALD-1005", "table_name %q is served under %s, not %s",
			name, t.schema.base, rt.base)
	}
	sys, aerr := s.checkSystemID(body["system_id"])
	if aerr != nil {
		return nil, linkKey{}, aerr
	}
	ext, aerr := checkExternalID(body["external_id"])
	if aerr != nil {
		return nil, linkKey{}, aerr
	}
	return t, linkKey{system: sys, external: ext}, nil
}

// lookupSpecial answers the linked id as a JSON string, "DELETED:<id>" for
// a deactivated record, or 404.
func (s *Server) lookupSpecial(rt route, body map[string]any) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, k, aerr := s.requestTable(rt, body)
	if aerr != nil {
		return 0, nil, aerr
	}
	r := t.linked(k)
	switch {
	case r == nil:
		return 0, nil, &apiError{status: http.StatusNotFound, code: "NFND-1002",
			msg: fmt.Sprintf("no %s is linked to external id %q of system %d", t.schema.table, k.external, k.system)}
	case !r.active:
		return http.StatusOK, "DELETED:" + r.id, nil
	}
	return http.StatusOK, r.id, nil
}

// updateExternalID links an external id to an existing live record.
func (s *Server) updateExternalID(rt route, body map[string]any) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, k, aerr := s.requestTable(rt, body, "internal_id")
	if aerr != nil {
		return 0, nil, aerr
	}
	id, _ := body["internal_id"].(string)
	r, ok := t.records[id]
	if !ok || !r.active {
		return 0, nil, &apiError{status: http.StatusNotFound, code: "NFND-1001",
			msg: fmt.Sprintf("no %s with internal_id %q", t.schema.table, id)}
	}
	if cur := t.linked(k); cur != nil && cur.active && cur != r {
		return 0, nil, &apiError{status: http.StatusConflict, code: "BIZL-1005", msg: fmt.Sprintf(
			"external id %q of system %d is already linked to %s %s", k.external, k.system, t.schema.table, cur.id)}
	}
	if cur := t.linked(k); cur != r {
		t.setLink(k, r)
	}
	s.counts.linkUpdates.Add(1)
	return http.StatusOK, r.id, nil
}

func (s *Server) postRecord(rt route, body map[string]any) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[rt.schema.table]
	r, aerr := s.create(t, body)
	if aerr != nil {
		if aerr.code == "BIZL-1003" {
			s.counts.createConflicts.Add(1)
		}
		return 0, nil, aerr
	}
	s.counts.creates.Add(1)
	s.wrote(t, r)
	return http.StatusOK, t.render(r), nil
}

func (s *Server) list(rt route) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[rt.schema.table]
	var live []*record
	for _, r := range t.records {
		if r.active {
			live = append(live, r)
		}
	}
	slices.SortFunc(live, func(a, b *record) int { return a.seq - b.seq })
	out := make([]any, 0, len(live))
	for _, r := range live {
		out = append(out, t.render(r))
	}
	return http.StatusOK, out
}

func (s *Server) recordCall(method string, rt route, body map[string]any) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[rt.schema.table]
	r, ok := t.records[rt.id]
	if method == http.MethodGet {
		s.counts.gets.Add(1)
	}
	if !ok || !r.active {
		return 0, nil, &apiError{status: http.StatusNotFound, code: "NFND-1001",
			msg: fmt.Sprintf("no %s with id %q", t.schema.table, rt.id)}
	}
	switch method {
	case http.MethodPut:
		if aerr := s.replace(t, r, body, false); aerr != nil {
			return 0, nil, aerr
		}
		s.counts.updates.Add(1)
		s.wrote(t, r)
	case http.MethodDelete:
		r.active = false
		s.counts.deletes.Add(1)
		return http.StatusNoContent, nil, nil
	}
	return http.StatusOK, t.render(r), nil
}

// wrote tells Options.OnWrite of a write.
func (s *Server) wrote(t *table, r *record) {
	if s.opts.OnWrite == nil {
		return
	}
	ext := make([]string, len(r.links))
	for i, k := range r.links {
		ext[i] = k.external
	}
	s.opts.OnWrite(t.schema.table, ext)
}

// injected answers a failure set by FailNext.
func (s *Server) injected(w http.ResponseWriter, f failure) {
	if f.retryAfter > 0 {
		secs := (f.retryAfter + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	code := f.code
	if code == "" {
		switch {
		case f.status >= 500:
			code = "INTL-1000"
		case f.status == http.StatusUnauthorized:
			code = "AUTH-1001"
		case f.status == http.StatusForbidden:
			code = "AUTZ-1000"
		case f.status == http.StatusNotFound:
			code = "NFND-1000"
		case f.status == http.StatusConflict:
			code = "BIZL-1000"
		case f.status == http.StatusBadRequest, f.status == http.StatusUnprocessableEntity:
			code = "VALD-1000"
		}
	}
	item := map[string]any{"message": fmt.Sprintf("ipaastest injected a failure (HTTP %d)", f.status)}
	if code != "" {
		item["code"] = code
	}
	writeJSON(w, f.status, map[string]any{"errors": []any{item}})
}

// writeError writes {"errors":[{"code":..,"message":..}]}.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	if strings.HasPrefix(e.code, "VALD-") {
		s.counts.validation.Add(1)
	}
	writeJSON(w, e.status, map[string]any{"errors": []any{map[string]any{"code": e.code, "message": e.msg}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own values
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
