package ipaasclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bcsync/bcsync/internal/errtext"
)

// MaxExternalIDLen is the longest external id accepted, in characters.
const MaxExternalIDLen = 250

// Result is the outcome of an Upsert.
type Result struct {
	// ID is the iPaaS.com id of the record written.
	ID string
	// Created is true when this call created the record, false when it
	// updated the record linked to the external id.
	Created bool
}

// Upsert writes rec to iPaaS.com as the record linked to externalID (the BC
// key) in the subscription Config.SystemID, idempotently:
//
//  1. POST {base}/v2/External/LookupSpecial finds the linked record;
//  2. linked: GET it, merge the JSON fields of rec over it (rec's fields
//     win; other fields, "id" and "external_ids" are kept), and PUT the
//     whole merged record, since a PUT replaces the record;
//  3. not linked, or linked to a deleted record ("DELETED:<id>"): POST rec
//     with external_ids [{system_id, external_id}], creating record and
//     link in one call;
//  4. a create answered BIZL-1003 or BIZL-1005 (the external id is already
//     linked) means an earlier attempt created the record: look up once
//     more and go on with 2. If that look-up finds no live link, the
//     create's error is returned (ErrLinkConflict); Upsert never creates a
//     second record for one external id.
//
// Errors are wrapped as "ipaasclient: upsert <table> <external id>: ...":
// an *APIError for an iPaaS.com answer (see its sentinels, Temporary and
// RetryAfter), ErrUnknownKind or ErrInvalidExternalID before any request,
// or a transport or context error. Upsert does not retry: the caller
// decides when to try again, which is safe.
//
// With CreateFirst, step 1 is skipped: the create goes out first, and a
// link conflict leads to step 4 as above.
func (c *Client) Upsert(ctx context.Context, rec Record, externalID string, opts ...UpsertOption) (Result, error) {
	if rec == nil {
		return Result{}, errors.New("ipaasclient: upsert: nil record")
	}
	p, ok := pathTable[rec.Kind()]
	if !ok {
		return Result{}, fmt.Errorf("ipaasclient: upsert %q: %w", rec.Kind(), ErrUnknownKind)
	}
	var o upsertOptions
	for _, opt := range opts {
		opt(&o)
	}
	res, err := c.upsert(ctx, p, rec, externalID, o)
	if err != nil {
		return Result{}, fmt.Errorf("ipaasclient: upsert %s %q: %w", p.table, externalID, err)
	}
	return res, nil
}

// UpsertOption changes how Upsert goes about its write.
type UpsertOption func(*upsertOptions)

type upsertOptions struct{ createFirst bool }

// CreateFirst tells Upsert that the record is most likely new (the caller
// has no record of writing it): one request instead of a look-up and a
// create. Upsert stays idempotent: iPaaS.com refuses a second link of the
// external id (BIZL-1003 or BIZL-1005), and Upsert then updates the linked
// record, at the cost of one refused create.
func CreateFirst() UpsertOption { return func(o *upsertOptions) { o.createFirst = true } }

func (c *Client) upsert(ctx context.Context, p kindPaths, rec Record, externalID string, o upsertOptions) (Result, error) {
	if err := validExternalID(externalID); err != nil {
		return Result{}, err
	}
	fields, err := recordFields(rec)
	if err != nil {
		return Result{}, err
	}
	if !o.createFirst {
		l, err := c.lookup(ctx, p, externalID)
		if err != nil {
			return Result{}, err
		}
		if l.live() {
			return Result{ID: l.id}, c.update(ctx, p, l.id, fields)
		}
	}
	id, err := c.create(ctx, p, fields, externalID)
	if err == nil {
		return Result{ID: id, Created: true}, nil
	}
	if !errors.Is(err, ErrLinkConflict) {
		return Result{}, err
	}
	// An earlier attempt (a lost answer, or a concurrent writer) created
	// the record: update it instead. Bounded: one more look-up, no create.
	l, lerr := c.lookup(ctx, p, externalID)
	switch {
	case lerr != nil:
		// The look-up's failure is the one that counts (a retry may well
		// find the link): the conflict is only told.
		return Result{}, fmt.Errorf("%v; then: %w", err, lerr)
	case !l.live():
		return Result{}, fmt.Errorf("%w (a second look-up found no live link)", err)
	}
	return Result{ID: l.id}, c.update(ctx, p, l.id, fields)
}

// Deactivate deactivates (DELETE) the record of kind linked to externalID.
// found is false, with a nil error, when no record is linked or the linked
// one is already deleted. Errors are wrapped as in Upsert.
func (c *Client) Deactivate(ctx context.Context, kind Kind, externalID string) (found bool, err error) {
	p, ok := pathTable[kind]
	if !ok {
		return false, fmt.Errorf("ipaasclient: deactivate %q: %w", kind, ErrUnknownKind)
	}
	found, err = c.deactivate(ctx, p, externalID)
	if err != nil {
		return false, fmt.Errorf("ipaasclient: deactivate %s %q: %w", p.table, externalID, err)
	}
	return found, nil
}

func (c *Client) deactivate(ctx context.Context, p kindPaths, externalID string) (bool, error) {
	if err := validExternalID(externalID); err != nil {
		return false, err
	}
	l, err := c.lookup(ctx, p, externalID)
	if err != nil || !l.live() {
		return false, err
	}
	if _, err := c.do(ctx, http.MethodDelete, p.path(p.delete(), l.id), nil); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil // deleted at iPaaS.com since the look-up: nothing left to do
		}
		return false, fmt.Errorf("delete record %s: %w", l.id, err)
	}
	return true, nil
}

func validExternalID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidExternalID)
	case !utf8.ValidString(id), strings.ContainsFunc(id, unicode.IsControl):
		return fmt.Errorf("%w: control characters or invalid UTF-8", ErrInvalidExternalID)
	case utf8.RuneCountInString(id) > MaxExternalIDLen:
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidExternalID, MaxExternalIDLen)
	}
	return nil
}

// recordFields is rec's JSON object, without "id" and "external_ids",
// which bcsync never sets.
func recordFields(rec Record) (map[string]any, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", rec, err)
	}
	m, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("%T does not encode as a JSON object", rec)
	}
	delete(m, "id")
	delete(m, "external_ids")
	return m, nil
}

// decodeObject decodes a JSON object, keeping numbers as written.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null, not an object")
	}
	if dec.More() {
		return nil, errors.New("data after the object")
	}
	return m, nil
}

// link is the answer of a look-up.
type link struct {
	id      string // the linked record, "" when none
	deleted bool   // the linked record was deleted
}

func (l link) live() bool { return l.id != "" && !l.deleted }

// lookupRequest is the body of LookupSpecial.
type lookupRequest struct {
	TableName  string `json:"table_name"`
	SystemID   int    `json:"system_id"`
	ExternalID string `json:"external_id"`
}

// externalIDRef is one entry of a record's external_ids.
type externalIDRef struct {
	SystemID   int    `json:"system_id"`
	ExternalID string `json:"external_id"`
}

// lookup asks which record is linked to externalID. A 404 is no link.
func (c *Client) lookup(ctx context.Context, p kindPaths, externalID string) (link, error) {
	body, err := c.do(ctx, http.MethodPost, p.base+"/v2/"+lookupEndpoint,
		lookupRequest{TableName: p.table, SystemID: c.cfg.SystemID, ExternalID: externalID})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return link{}, nil
	}
	if err != nil {
		return link{}, fmt.Errorf("look up: %w", err)
	}
	l, err := parseLookup(body)
	if err != nil {
		return link{}, fmt.Errorf("look up: %w", err)
	}
	return l, nil
}

// parseLookup reads LookupSpecial's 200 body: the id as a JSON string
// ("4711"), defensively also a bare or numeric id. Empty, null and "" are
// no link; "DELETED:<id>" is a deleted record.
func parseLookup(body []byte) (link, error) {
	s := string(bytes.TrimSpace(body))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal([]byte(s), &s); err != nil {
			return link{}, fmt.Errorf("malformed answer %q", errtext.Truncate(s, 64))
		}
		s = strings.TrimSpace(s)
	}
	if s == "" || s == "null" {
		return link{}, nil
	}
	l := link{id: s}
	if prefix, rest, ok := strings.Cut(s, ":"); ok && strings.EqualFold(prefix, "DELETED") {
		l = link{id: strings.TrimSpace(rest), deleted: true}
	}
	if !validID(l.id) {
		return link{}, fmt.Errorf("answer %q is no record id", errtext.Truncate(s, 64))
	}
	return l, nil
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

// validID reports whether id can be put in a path as it is: a record id
// of URL-unreserved characters.
func validID(id string) bool { return idRE.MatchString(id) && id != "." && id != ".." }

// create posts fields with the link to externalID and returns the new id.
func (c *Client) create(ctx context.Context, p kindPaths, fields map[string]any, externalID string) (string, error) {
	body := maps.Clone(fields)
	body["external_ids"] = []externalIDRef{{SystemID: c.cfg.SystemID, ExternalID: externalID}}
	out, err := c.do(ctx, http.MethodPost, p.path(p.create, ""), body)
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if id := createdID(out); id != "" {
		return id, nil
	}
	// The answer did not say the id: the link, made with the record, does.
	l, err := c.lookup(ctx, p, externalID)
	if err != nil {
		return "", fmt.Errorf("created, but: %w", err)
	}
	if !l.live() {
		return "", errors.New("created, but the look-up after it found no live link")
	}
	return l.id, nil
}

// createdID reads the new record's id from a create's answer: the record
// ({"id":..}), or the id itself. "" when there is none.
func createdID(body []byte) string {
	if m, err := decodeObject(body); err == nil {
		if id := str(m, "id"); validID(id) {
			return id
		}
		return ""
	}
	l, err := parseLookup(body)
	if err != nil || !l.live() {
		return ""
	}
	return l.id
}

// update reads record id, merges fields over it and PUTs the result.
func (c *Client) update(ctx context.Context, p kindPaths, id string, fields map[string]any) error {
	out, err := c.do(ctx, http.MethodGet, p.path(p.get, id), nil)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("get record %s: %w (%v)", id, ErrDeletedMeanwhile, err)
	}
	if err != nil {
		return fmt.Errorf("get record %s: %w", id, err)
	}
	cur, err := decodeObject(out)
	if err != nil {
		return fmt.Errorf("get record %s: the answer is no JSON object: %w", id, err)
	}
	merged := mergeRecord(cur, fields, id)
	if _, err := c.do(ctx, http.MethodPut, p.path(p.update, id), merged); errors.Is(err, ErrNotFound) {
		return fmt.Errorf("update record %s: %w (%v)", id, ErrDeletedMeanwhile, err)
	} else if err != nil {
		return fmt.Errorf("update record %s: %w", id, err)
	}
	return nil
}

// mergeRecord puts fields over cur: bcsync's fields win, every other field
// of cur is kept, and so are its "id" (set to id when missing) and
// "external_ids".
func mergeRecord(cur, fields map[string]any, id string) map[string]any {
	merged := maps.Clone(cur)
	for k, v := range fields {
		if k == "id" || k == "external_ids" {
			continue
		}
		merged[k] = v
	}
	if v, ok := merged["id"]; !ok || v == nil {
		merged["id"] = id
	}
	return merged
}

// Ping checks that iPaaS.com answers and accepts the API key: it looks up an
// external id that is never linked. It returns nil when the lookup was
// answered (linked or not) and the APIError otherwise, e.g. AUTH for an
// expired key.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.lookup(ctx, pathTable[KindCustomerCategory], "bcsync-ping"); err != nil {
		return fmt.Errorf("ipaas: ping: %w", err)
	}
	return nil
}
