package ipaastest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// fieldType is the JSON type a documented field must have (or null).
type fieldType int

const (
	typeString fieldType = iota
	typeNumber
)

// schema is one iPaaS.com data type, from ipaas.md.
type schema struct {
	table      string // external id table_name
	base       string // base path
	collection string // endpoint of the collection: POST here, {collection}/{id} for one record
	list       string // endpoint of the published list read, "" for none
	fields     map[string]fieldType
	// required names fields of which at least one must be a non-blank
	// string, and the error when none is.
	required []string
	reqCode  string
	reqMsg   string
	// uniqueName: name is unique among live records (case-sensitive).
	uniqueName bool
}

func strs(names ...string) map[string]fieldType {
	m := make(map[string]fieldType, len(names))
	for _, n := range names {
		m[n] = typeString
	}
	return m
}

// schemas are the data types served.
var schemas = []*schema{
	{
		table: TableCustomerCategory, base: "/customers", collection: "Customer/Category",
		fields:   strs("name", "description"),
		required: []string{"name"}, reqCode: "VALD-1004", reqMsg: "name is required",
	},
	{
		table: TableLocation, base: "/products", collection: "Catalog/Location",
		fields: strs("name", "description", "address1", "address2", "city", "region", "country",
			"postal_code", "phone", "email"),
		required: []string{"name"}, reqCode: "VALD-1004", reqMsg: "name is required",
	},
	{
		table: TableShippingMethod, base: "/transactions", collection: "ShippingMethod", list: "ShippingMethods",
		fields:   strs("name", "description"),
		required: []string{"name"}, reqCode: "VALD-1004", reqMsg: "name is required",
		uniqueName: true,
	},
	{
		table: TableCustomer, base: "/customers", collection: "Customer",
		fields:   strs("customer_number", "first_name", "last_name", "email_address", "company", "comment"),
		required: []string{"first_name", "last_name"}, reqCode: "VALD-1049",
		reqMsg: "First name or last name is required",
	},
	{
		table: TableProduct, base: "/products", collection: "Catalog/Product",
		fields: func() map[string]fieldType {
			m := strs("sku", "name", "type", "status")
			m["default_price"] = typeNumber
			return m
		}(),
		required: []string{"sku"}, reqCode: "VALD-1004", reqMsg: "sku is required",
	},
}

// basePaths are the base paths served.
var basePaths = []string{"/customers", "/products", "/transactions"}

// Fields every record has besides its documented ones.
const (
	fieldID           = "id"
	fieldExternalIDs  = "external_ids"
	fieldCustomFields = "custom_fields"
)

// linkKey is one external id of a table.
type linkKey struct {
	system   int64
	external string
}

type record struct {
	id     string
	seq    int            // creation order
	fields map[string]any // documented fields and custom_fields, as decoded
	active bool
	links  []linkKey // the links pointing here
}

type table struct {
	schema  *schema
	records map[string]*record
	links   map[linkKey]string // -> record id
}

// linked is the record a link points to, nil when none.
func (t *table) linked(k linkKey) *record {
	id, ok := t.links[k]
	if !ok {
		return nil
	}
	return t.records[id]
}

// setLink points k to r, moving it from any record it pointed to.
func (t *table) setLink(k linkKey, r *record) {
	if old := t.linked(k); old != nil {
		old.links = slices.DeleteFunc(old.links, func(l linkKey) bool { return l == k })
	}
	t.links[k] = r.id
	r.links = append(r.links, k)
}

// render is r as a GET answers it.
func (t *table) render(r *record) map[string]any {
	out := make(map[string]any, len(t.schema.fields)+3)
	for f := range t.schema.fields {
		out[f] = r.fields[f]
	}
	out[fieldID] = r.id
	out[fieldCustomFields] = r.fields[fieldCustomFields]
	links := slices.Clone(r.links)
	slices.SortFunc(links, func(a, b linkKey) int {
		return cmp.Or(cmp.Compare(a.system, b.system), strings.Compare(a.external, b.external))
	})
	ext := make([]any, 0, len(links))
	for _, l := range links {
		ext = append(ext, map[string]any{"system_id": l.system, "external_id": l.external})
	}
	out[fieldExternalIDs] = ext
	return out
}

// apiError is an error answer.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("ipaastest: HTTP %d %s: %s", e.status, e.code, e.msg)
}

func invalid(code, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, a...)}
}

// checkFields validates a record body and returns its stored fields and
// the links in its external_ids. The caller handles "id".
func (s *Server) checkFields(sc *schema, body map[string]any) (map[string]any, []linkKey, *apiError) {
	fields := make(map[string]any, len(body))
	var links []linkKey
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := body[k]
		switch typ, documented := sc.fields[k]; {
		case k == fieldID:
		case k == fieldExternalIDs:
			l, err := s.checkExternalIDs(v)
			if err != nil {
				return nil, nil, err
			}
			links = l
		case k == fieldCustomFields:
			switch v.(type) {
			case nil, []any, map[string]any:
			default:
				return nil, nil, invalid("VALD-1003", "custom_fields must be an array, an object or null")
			}
			fields[k] = v
		case !documented:
			return nil, nil, invalid("VALD-1003", "unknown field %q for a %s", k, sc.table)
		case typ == typeString:
			if _, ok := v.(string); !ok && v != nil {
				return nil, nil, invalid("VALD-1003", "%s must be a string or null", k)
			}
			fields[k] = v
		case typ == typeNumber:
			if _, ok := v.(json.Number); !ok && v != nil {
				return nil, nil, invalid("VALD-1003", "%s must be a number or null", k)
			}
			fields[k] = v
		}
	}
	for _, f := range sc.required {
		if v, _ := fields[f].(string); strings.TrimSpace(v) != "" {
			return fields, links, nil
		}
	}
	return nil, nil, invalid(sc.reqCode, "%s", sc.reqMsg)
}

// checkExternalIDs reads [{"system_id":..,"external_id":..}].
func (s *Server) checkExternalIDs(v any) ([]linkKey, *apiError) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, invalid("VALD-1003", "external_ids must be an array")
	}
	var links []linkKey
	for _, el := range list {
		m, ok := el.(map[string]any)
		if !ok {
			return nil, invalid("VALD-1003", `external_ids entries must be {"system_id":..,"external_id":..}`)
		}
		for k := range m {
			if k != "system_id" && k != "external_id" {
				return nil, invalid("VALD-1003", "unknown field %q in external_ids", k)
			}
		}
		sys, err := s.checkSystemID(m["system_id"])
		if err != nil {
			return nil, err
		}
		ext, err := checkExternalID(m["external_id"])
		if err != nil {
			return nil, err
		}
		k := linkKey{system: sys, external: ext}
		if !slices.Contains(links, k) {
			links = append(links, k)
		}
	}
	return links, nil
}

// checkSystemID accepts only Options.SystemID, as a JSON integer.
func (s *Server) checkSystemID(v any) (int64, *apiError) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, invalid("VALD-1005", "system_id must be an integer")
	}
	id, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0, invalid("VALD-1005", "system_id must be an integer")
	}
	if id != int64(s.opts.SystemID) {
		return 0, invalid("VALD-1005", "system_id %d is not a subscription of this company", id)
	}
	return id, nil
}

func checkExternalID(v any) (string, *apiError) {
	ext, ok := v.(string)
	if !ok || strings.TrimSpace(ext) == "" {
		return "", invalid("VALD-1005", "external_id must be a non-empty string")
	}
	return ext, nil
}

// checkUnique enforces unique shipping method names among live records
// other than self.
func (t *table) checkUnique(fields map[string]any, self string) *apiError {
	if !t.schema.uniqueName {
		return nil
	}
	name, _ := fields["name"].(string)
	for _, r := range t.records {
		if r.active && r.id != self && r.fields["name"] == name {
			return invalid("VALD-1050", "a %s named %q already exists (id %s)", t.schema.table, name, r.id)
		}
	}
	return nil
}

// create stores a new record from a POST body. Call with s.mu held.
func (s *Server) create(t *table, body map[string]any) (*record, *apiError) {
	if _, ok := body[fieldID]; ok {
		return nil, invalid("VALD-1003", "id is assigned by iPaaS.com and must not be sent on a create")
	}
	fields, links, aerr := s.checkFields(t.schema, body)
	if aerr != nil {
		return nil, aerr
	}
	for _, k := range links {
		if r := t.linked(k); r != nil && r.active {
			return nil, &apiError{status: http.StatusConflict, code: "BIZL-1003", msg: fmt.Sprintf(
				"external id %q of system %d is already linked to %s %s", k.external, k.system, t.schema.table, r.id)}
		}
	}
	if aerr := t.checkUnique(fields, ""); aerr != nil {
		return nil, aerr
	}
	r := &record{id: strconv.Itoa(s.nextID), seq: s.nextID, fields: fields, active: true}
	s.nextID++
	t.records[r.id] = r
	for _, k := range links {
		t.setLink(k, r)
	}
	return r, nil
}

// replace replaces the fields of r with a PUT body; with keepLinks (a
// test's Patch) its links stay whatever body holds. Call with s.mu held.
func (s *Server) replace(t *table, r *record, body map[string]any, keepLinks bool) *apiError {
	if v, ok := body[fieldID]; ok && v != r.id {
		return invalid("VALD-1003", "id %v in the body is not the id %s of the URL", v, r.id)
	}
	fields, links, aerr := s.checkFields(t.schema, body)
	if aerr != nil {
		return aerr
	}
	if aerr := t.checkUnique(fields, r.id); aerr != nil {
		return aerr
	}
	r.fields = fields
	if keepLinks {
		return nil
	}
	// external_ids is a field too: the record's links it leaves out are
	// cleared, as a PUT clears every field it leaves out (a client that
	// drops them would lose the link, and create a second record later).
	r.links = slices.DeleteFunc(r.links, func(k linkKey) bool {
		if slices.Contains(links, k) {
			return false
		}
		delete(t.links, k)
		return true
	})
	return nil
}
