package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
)

// ChangeType is the changeType of a notification item.
type ChangeType string

// The change types BC sends.
const (
	ChangeCreated ChangeType = "created"
	ChangeUpdated ChangeType = "updated"
	ChangeDeleted ChangeType = "deleted"
	// ChangeCollection stands for many changes (BC sends one instead of
	// more than 1,000): its resource is the entity set, with a $filter on
	// lastModifiedDateTime.
	ChangeCollection ChangeType = "collection"
)

// Limits of a notification.
const (
	// MaxItems caps the items of one notification. BC sends at most about
	// 1,000 (more become a collection).
	MaxItems = 10000
	// MaxResourceLen caps an item's resource.
	MaxResourceLen = 2048
	// maxSubscriptionIDLen caps an item's subscriptionId (BC's are 32 hex
	// digits).
	maxSubscriptionIDLen = 128
)

// ErrMalformed is what ParseNotification returns, wrapped with the reason,
// for a body that is not a BC notification.
var ErrMalformed = errors.New("malformed notification")

// Notification is one item of a BC webhook notification, checked and
// parsed. Printing it with any fmt verb shows ClientState as "[redacted]".
type Notification struct {
	// SubscriptionID is BC's id of the webhook subscription.
	SubscriptionID string
	// ClientState is the secret BC sends back; empty when absent. Check it
	// before trusting anything else.
	ClientState string
	// Resource is the resource as BC sent it, e.g.
	// "api/v2.0/companies(<id>)/customers(<id>)".
	Resource string
	// ChangeType is created, updated, deleted or collection.
	ChangeType ChangeType
	// LastModified is the item's lastModifiedDateTime.
	LastModified time.Time
	// Expiration is the subscription's expirationDateTime; zero when
	// absent.
	Expiration time.Time
	// CompanyID is the company of the resource, lower-case.
	CompanyID string
	// EntitySet is the resource's entity set as BC spells it (e.g.
	// "shipmentMethods"), whatever the case it was sent in.
	EntitySet string
	// RecordID is the record's id (SystemId), a lower-case GUID; empty for
	// a collection.
	RecordID string
}

// Format implements fmt.Formatter, so that no verb prints the client state.
func (n Notification) Format(f fmt.State, _ rune) {
	cs := ""
	if n.ClientState != "" {
		cs = "[redacted]"
	}
	fmt.Fprintf(f, "{SubscriptionID:%s ClientState:%s Resource:%s ChangeType:%s LastModified:%s Expiration:%s CompanyID:%s EntitySet:%s RecordID:%s}",
		n.SubscriptionID, cs, n.Resource, n.ChangeType, n.LastModified.Format(time.RFC3339Nano),
		n.Expiration.Format(time.RFC3339), n.CompanyID, n.EntitySet, n.RecordID)
}

// item is one element of "value" as BC writes it. Unknown properties are
// ignored: BC may add some, and a 400 would make it drop the subscription.
type item struct {
	SubscriptionID       string `json:"subscriptionId"`
	ClientState          string `json:"clientState"`
	ExpirationDateTime   string `json:"expirationDateTime"`
	Resource             string `json:"resource"`
	ChangeType           string `json:"changeType"`
	LastModifiedDateTime string `json:"lastModifiedDateTime"`
}

// ParseNotification decodes a notification body, {"value":[...]}, and
// checks and parses every item: subscriptionId, resource, changeType and
// lastModifiedDateTime are required; the resource must be
// "[/]api/v2.0/companies(<id>)/<entity set>(<id>)" (or an absolute URL
// ending so), of an entity set BC sends webhooks for (see
// config.WebhookEntitySets; matched case-insensitively), without the
// record's id and possibly with a query for a collection. The clientState
// is returned, not checked: that is the caller's job.
//
// Errors wrap ErrMalformed and name the item and the problem; they never
// hold a clientState.
func ParseNotification(body []byte) ([]Notification, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("webhook: %w: "+format, append([]any{ErrMalformed}, a...)...)
	}
	var env struct{ Value []item }
	var err error
	if env.Value, err = decodeItems(body); err != nil {
		return nil, bad("%w", err)
	}
	if len(env.Value) == 0 {
		return nil, bad("no items in value")
	}
	out := make([]Notification, len(env.Value))
	for i, it := range env.Value {
		n, err := parseItem(it)
		if err != nil {
			// The resource or changeType quoted in the error may hold what
			// the batch's clientStates are: never show them.
			states := make([]string, len(env.Value))
			for k := range env.Value {
				states[k] = env.Value[k].ClientState
			}
			return nil, bad("value[%d]: %s", i, redact(err.Error(), states...))
		}
		out[i] = n
	}
	return out, nil
}

// redact replaces every secret of 8 bytes or more in s with "[redacted]".
func redact(s string, secrets ...string) string {
	for _, x := range secrets {
		if len(x) >= 8 {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return s
}

// jsonProblem describes a decoding error without quoting the body.
// errNotEnvelope is what decodeItems says of a body that is not a JSON
// object with a value array.
const errNotEnvelope = "not a JSON object with a value array"

// decodeItems decodes {"value":[...]} item by item, and stops at the first
// item past MaxItems: a body of many small items ({"value":[{},{},...]})
// is refused before it is all decoded, since each item costs far more
// memory than its bytes. Other members are skipped; "value" is matched
// case-insensitively, as encoding/json matches a field.
func decodeItems(body []byte) ([]item, error) {
	notEnvelope := func(err error) error { return fmt.Errorf("%s: %s", errNotEnvelope, jsonProblem(err)) }
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil {
		return nil, notEnvelope(err)
	} else if tok != json.Delim('{') {
		return nil, errors.New(errNotEnvelope)
	}
	var items []item
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notEnvelope(err)
		}
		if name, _ := tok.(string); !strings.EqualFold(name, "value") {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, notEnvelope(err)
			}
			continue
		}
		if seen {
			return nil, errors.New("value given twice")
		}
		seen = true
		switch tok, err := dec.Token(); {
		case err != nil:
			return nil, notEnvelope(err)
		case tok == nil: // null: no items
			continue
		case tok != json.Delim('['):
			return nil, errors.New(errNotEnvelope + ": value is not an array")
		}
		for dec.More() {
			if len(items) == MaxItems {
				return nil, fmt.Errorf("more than %d items", MaxItems)
			}
			var it item
			if err := dec.Decode(&it); err != nil {
				return nil, notEnvelope(err)
			}
			items = append(items, it)
		}
		if _, err := dec.Token(); err != nil { // ]
			return nil, notEnvelope(err)
		}
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, notEnvelope(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return items, nil
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		field := strings.TrimPrefix(typ.Field, "Value.")
		if field == "" {
			field = "an item"
		}
		return fmt.Sprintf("%s where %s belongs", typ.Value, field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return "invalid JSON"
}

func parseItem(it item) (Notification, error) {
	n := Notification{SubscriptionID: it.SubscriptionID, ClientState: it.ClientState, Resource: it.Resource}
	switch {
	case it.SubscriptionID == "":
		return n, errors.New("subscriptionId missing")
	case len(it.SubscriptionID) > maxSubscriptionIDLen || !printable(it.SubscriptionID):
		return n, errors.New("subscriptionId is not an id")
	case it.Resource == "":
		return n, errors.New("resource missing")
	case len(it.Resource) > MaxResourceLen:
		return n, fmt.Errorf("resource longer than %d bytes", MaxResourceLen)
	case it.ChangeType == "":
		return n, errors.New("changeType missing")
	case it.LastModifiedDateTime == "":
		return n, errors.New("lastModifiedDateTime missing")
	}
	switch ct := ChangeType(strings.ToLower(it.ChangeType)); ct {
	case ChangeCreated, ChangeUpdated, ChangeDeleted, ChangeCollection:
		n.ChangeType = ct
	default:
		return n, fmt.Errorf("unknown changeType %q: expected created, updated, deleted or collection", clip(it.ChangeType, 40))
	}
	var err error
	if n.LastModified, err = parseTime(it.LastModifiedDateTime); err != nil {
		return n, timeProblem("lastModifiedDateTime", it.LastModifiedDateTime, err)
	}
	if it.ExpirationDateTime != "" {
		if n.Expiration, err = parseTime(it.ExpirationDateTime); err != nil {
			return n, timeProblem("expirationDateTime", it.ExpirationDateTime, err)
		}
	}
	r, err := ParseResource(it.Resource)
	if err != nil {
		return n, err
	}
	switch {
	case n.ChangeType == ChangeCollection:
		// A collection names the entity set, with a $filter; accept the
		// record's id too.
	case r.RecordID == "":
		return n, fmt.Errorf("resource %q names no record, which a %s change needs", clip(it.Resource, 200), n.ChangeType)
	case r.Query:
		return n, fmt.Errorf("resource %q of a %s change has a query", clip(it.Resource, 200), n.ChangeType)
	}
	n.CompanyID, n.EntitySet = r.CompanyID, r.EntitySet
	if n.ChangeType != ChangeCollection {
		n.RecordID = r.RecordID
	}
	return n, nil
}

// Resource is a notification's resource, parsed.
type Resource struct {
	// CompanyID is the company's id, lower-case.
	CompanyID string
	// EntitySet is the entity set as BC spells it.
	EntitySet string
	// RecordID is the record's id, lower-case; empty when the resource is
	// the entity set.
	RecordID string
	// Query reports a query after the path (a collection's $filter).
	Query bool
}

// ParseResource parses "api/v2.0/companies(<id>)/<entitySet>[(<id>)][?query]",
// with or without a leading slash, or an absolute http(s) URL whose path
// holds it after "/api/v2.0/". Ids are GUIDs; the entity set must be one
// BC sends webhooks for (matched case-insensitively). Errors describe the
// problem.
func ParseResource(res string) (Resource, error) {
	var r Resource
	bad := func(why string) (Resource, error) {
		return Resource{}, fmt.Errorf("resource %q is not api/v2.0/companies(<id>)/<entity set>(<id>): %s", clip(res, 200), why)
	}
	if !utf8.ValidString(res) || strings.ContainsFunc(res, unicode.IsControl) {
		return bad("it holds control characters or invalid UTF-8")
	}
	// A collection's query ($filter=lastModifiedDateTime gt ...) may hold
	// spaces, encoded or not; the path may not.
	p := res
	if i := strings.IndexByte(p, '?'); i >= 0 {
		r.Query = true
		p = p[:i]
	}
	switch {
	case strings.ContainsFunc(p, unicode.IsSpace):
		return bad("its path holds spaces")
	case strings.ContainsRune(p, '#'):
		return bad("it has a fragment")
	}
	if lower := strings.ToLower(p); strings.HasPrefix(lower, "https://") || strings.HasPrefix(lower, "http://") {
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return bad("it is not a URL")
		}
		i := strings.Index(strings.ToLower(u.EscapedPath()), "/api/v2.0/")
		if i < 0 {
			return bad("the URL is not of the API v2.0")
		}
		p = u.EscapedPath()[i:]
	}
	p = strings.TrimPrefix(p, "/")
	const prefix = "api/v2.0/"
	if len(p) < len(prefix) || !strings.EqualFold(p[:len(prefix)], prefix) {
		return bad("it does not start with api/v2.0/")
	}
	segs := strings.Split(p[len(prefix):], "/")
	if len(segs) != 2 {
		return bad(fmt.Sprintf("%d path segments after api/v2.0/, want 2", len(segs)))
	}
	name, key, hasKey, ok := segment(segs[0])
	if !ok || !strings.EqualFold(name, "companies") || !hasKey || !messages.IsGUID(key) {
		return bad("the first segment is not companies(<id>)")
	}
	r.CompanyID = strings.ToLower(key)
	name, key, hasKey, ok = segment(segs[1])
	if !ok {
		return bad("the entity set is malformed")
	}
	for _, s := range config.WebhookEntitySets() {
		if strings.EqualFold(name, s) {
			r.EntitySet = s
		}
	}
	if r.EntitySet == "" {
		return bad(fmt.Sprintf("%q is not an entity set BC sends webhooks for", clip(name, 40)))
	}
	if hasKey {
		if !messages.IsGUID(key) {
			return bad("the record id is not a GUID")
		}
		r.RecordID = strings.ToLower(key)
	}
	return r, nil
}

// segment splits "name(key)" or "name".
func segment(s string) (name, key string, hasKey, ok bool) {
	open := strings.IndexByte(s, '(')
	if open < 0 {
		return s, "", false, s != "" && !strings.ContainsAny(s, ")'")
	}
	if !strings.HasSuffix(s, ")") || open == 0 {
		return "", "", false, false
	}
	return s[:open], s[open+1 : len(s)-1], true, true
}

// parseTime reads an ISO 8601 date and time, with a zone (UTC when none).
// errTimeRange is parseTime's error for a time that parses but lies
// outside the years 0001-9999 in UTC, which a job cannot carry.
var errTimeRange = errors.New("outside the years 0001-9999 in UTC")

// timeProblem says what is wrong with a date and time that parseTime
// refused.
func timeProblem(field, v string, err error) error {
	if errors.Is(err, errTimeRange) || errors.Is(err, errBlankTime) {
		return fmt.Errorf("%s %q is %v", field, clip(v, 40), err)
	}
	return fmt.Errorf("%s %q is not an ISO 8601 date and time", field, clip(v, 40))
}

// errBlankTime is BC's blank DateTime (0001-01-01T00:00:00), which is no
// time: a job needs the change's time (a delete records it, so that an
// older read does not bring the record back).
var errBlankTime = errors.New("BC's blank date and time, not the change's")

// parseTime parses an ISO 8601 date and time: RFC 3339, or without a zone
// (UTC), with two-digit hours, minutes and seconds.
func parseTime(s string) (time.Time, error) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, errors.New("not yyyy-mm-ddThh:mm:ss")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.Parse("2006-01-02T15:04:05.999999999", s)
	}
	switch {
	case err != nil:
		return time.Time{}, err
	case !messages.InTimeRange(t):
		return time.Time{}, errTimeRange
	case t.IsZero():
		return time.Time{}, errBlankTime
	}
	return t.UTC(), nil
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) })
}

// clip shortens s for an error message, on a rune boundary, and makes it
// valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Source is the Job.Source of the jobs made from notifications.
const Source = "webhook"

// Jobs turns the notifications of one batch into the jobs of the bcsync
// subscription: created and updated become an upsert and deleted a delete,
// keyed by the record's id; a collection becomes one delta job of its
// type. Changes of entity sets bcsync does not sync (config.WebhookType)
// are counted in ignored. A record changed several times in the batch
// gives one job per op (the latest change), and no upsert when it was
// deleted after its last change; jobs keep the order of their first
// change.
//
// Each job's ID derives from its notification item (and ChangedAt is its
// lastModifiedDateTime), so a batch delivered again yields the same jobs,
// which JetStream deduplicates.
func Jobs(subscription string, ns []Notification) (jobs []messages.Job, ignored int) {
	at := map[string]int{}
	for _, n := range ns {
		t, ok := config.WebhookType(n.EntitySet)
		if !ok {
			ignored++
			continue
		}
		j := messages.Job{
			V: messages.Version, ID: JobID(subscription, n), Subscription: subscription, Type: t,
			ChangedAt: n.LastModified, Source: Source,
		}
		switch n.ChangeType {
		case ChangeCreated, ChangeUpdated:
			j.Op, j.Key = messages.OpUpsert, n.RecordID
		case ChangeDeleted:
			j.Op, j.Key = messages.OpDelete, n.RecordID
		default:
			j.Op = messages.OpDelta
		}
		k := string(j.Type) + "\x00" + string(j.Op) + "\x00" + j.Key
		if i, seen := at[k]; seen {
			if j.ChangedAt.After(jobs[i].ChangedAt) {
				jobs[i] = j
			}
			continue
		}
		at[k] = len(jobs)
		jobs = append(jobs, j)
	}
	// An upsert of a record deleted later in the batch would only find it
	// gone: the delete says it all.
	out := jobs[:0:0]
	for _, j := range jobs {
		if j.Op == messages.OpUpsert {
			i, deleted := at[string(j.Type)+"\x00"+string(messages.OpDelete)+"\x00"+j.Key]
			if deleted && !jobs[i].ChangedAt.Before(j.ChangedAt) {
				continue
			}
		}
		out = append(out, j)
	}
	return out, ignored
}

// JobID is the id of the job made from a notification item: "wh-" and a
// hash of the bcsync subscription and the item's subscriptionId,
// resource, changeType and lastModifiedDateTime.
func JobID(subscription string, n Notification) string {
	h := sha256.New()
	for _, s := range []string{subscription, n.SubscriptionID, n.Resource, string(n.ChangeType), n.LastModified.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "wh-" + hex.EncodeToString(h.Sum(nil)[:16])
}
