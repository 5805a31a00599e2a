package ipaasclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/bcsync/bcsync/internal/errtext"
	"github.com/bcsync/bcsync/internal/redact"
	"github.com/bcsync/bcsync/internal/retryafter"
)

// Sentinel errors, tested with errors.Is. The first five match an *APIError
// (see APIError.Is); the others are returned before any request is sent.
var (
	// ErrUnauthorized: HTTP 401 or an AUTH error. The API key is wrong or
	// expired (iPaaS.com keys may expire after 60/90/120 days), or the
	// X-Client-Id does not match it. Retrying cannot help.
	ErrUnauthorized = errors.New("unauthorized: the iPaaS.com API key or client id is wrong or expired")
	// ErrForbidden: HTTP 403 or an AUTZ error.
	ErrForbidden = errors.New("forbidden by iPaaS.com")
	// ErrValidation: a VALD error, or HTTP 400 or 422 without a code of
	// another family. The record will never be accepted as it is.
	ErrValidation = errors.New("rejected by iPaaS.com validation")
	// ErrNotFound: an NFND error, or HTTP 404 without a code of another
	// family, for a request that needed the record to exist (a look-up
	// without a link is not an error).
	ErrNotFound = errors.New("not found at iPaaS.com")
	// ErrLinkConflict: BIZL-1003 or BIZL-1005, the external id is already
	// linked. Upsert resolves it once by looking up again; it reaches the
	// caller only when the second look-up finds no live link.
	ErrLinkConflict = errors.New("external id already linked at iPaaS.com")
	// ErrDeletedMeanwhile: the record a look-up found linked was gone
	// (404) when it was read, written or deleted: deleted at iPaaS.com
	// since. A retry looks it up again (and an upsert then creates it).
	// It wraps no *APIError, so it is not taken for ErrNotFound.
	ErrDeletedMeanwhile = errors.New("the linked record was deleted at iPaaS.com since its look-up")

	// ErrUnknownKind: the record's Kind has no entry in the path table.
	ErrUnknownKind = errors.New("unknown iPaaS.com data type")
	// ErrInvalidExternalID: the external id is empty, too long or holds
	// control characters.
	ErrInvalidExternalID = errors.New("invalid external id")
)

// The error code families of iPaaS.com, returned by APIError.Family.
const (
	FamilyAuth       = "AUTH" // authentication (401)
	FamilyAuthz      = "AUTZ" // authorization (403)
	FamilyValidation = "VALD" // validation (400/422)
	FamilyBusiness   = "BIZL" // business rule (409/400)
	FamilyNotFound   = "NFND" // not found (404)
	FamilyInternal   = "INTL" // internal (5xx)
)

// APIError is a non-2xx answer from iPaaS.com. None of its fields holds the
// API key, even when the server echoed the request's headers.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the first error code of the body, e.g. "VALD-1049"; empty
	// when the body held none.
	Code string
	// Message is the body's error messages (joined with "; "), or the text
	// of a body that was no error JSON (HTML tags dropped), or the status
	// text. At most about 512 bytes.
	Message string
	// Body is the raw response body, truncated to about 512 bytes.
	Body string
	// RetryAfter is the Retry-After header's delay (seconds or an HTTP
	// date), on any status; zero when absent or unparseable.
	RetryAfter time.Duration
}

// Error returns "iPaaS.com API: HTTP <status> <code>: <message>".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "iPaaS.com API: HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Family is the code's family, its prefix before "-" in upper case, when it
// is one of AUTH, AUTZ, VALD, BIZL, NFND and INTL; "" otherwise.
func (e *APIError) Family() string {
	prefix, _, ok := strings.Cut(e.Code, "-")
	if !ok {
		return ""
	}
	prefix = strings.ToUpper(prefix)
	switch prefix {
	case FamilyAuth, FamilyAuthz, FamilyValidation, FamilyBusiness, FamilyNotFound, FamilyInternal:
		return prefix
	}
	return ""
}

// Temporary reports whether the same request may succeed later: HTTP 408,
// 429 and 5xx, and INTL errors. Honour RetryAfter when it is set.
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests ||
		(e.Status >= 500 && e.Status <= 599) || e.Family() == FamilyInternal
}

// Is makes errors.Is match ErrUnauthorized, ErrForbidden, ErrValidation,
// ErrNotFound and ErrLinkConflict as documented on them.
func (e *APIError) Is(target error) bool {
	fam := e.Family()
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || fam == FamilyAuth
	case ErrForbidden:
		return e.Status == http.StatusForbidden || fam == FamilyAuthz
	case ErrValidation:
		return fam == FamilyValidation ||
			(fam == "" && (e.Status == http.StatusBadRequest || e.Status == http.StatusUnprocessableEntity))
	case ErrNotFound:
		return fam == FamilyNotFound || (fam == "" && e.Status == http.StatusNotFound)
	case ErrLinkConflict:
		return isLinkConflictCode(e.Code)
	}
	return false
}

func isLinkConflictCode(code string) bool {
	return strings.EqualFold(code, "BIZL-1003") || strings.EqualFold(code, "BIZL-1005")
}

const (
	maxBodyLen    = 512 // bytes of the raw body kept in APIError.Body
	maxMessageLen = 512 // bytes kept of APIError.Message
	maxErrorItems = 10  // error entries read from one body
	redacted      = "[redacted]"
)

// redactor removes a secret (the API key) from text that came from the
// server: the key with each of its characters as sent or escaped as a
// server may echo it (URL percent-encoding, JSON's \uXXXX and short
// escapes, HTML character references), in any letter case, and whatever
// follows "Bearer ".
type redactor struct{ re *regexp.Regexp }

func newRedactor(secret string) redactor {
	if secret == "" {
		return redactor{}
	}
	var b strings.Builder
	b.WriteString("(?i)")
	for _, r := range secret {
		b.WriteString(runeForms(r))
	}
	return redactor{re: regexp.MustCompile(b.String())}
}

// runeForms is a pattern of r as sent or escaped by URL, JSON or HTML
// encoding (letters and digits too: an encoder may escape everything).
func runeForms(r rune) string {
	forms := []string{regexp.QuoteMeta(string(r))}
	var pct strings.Builder
	for _, c := range []byte(string(r)) {
		fmt.Fprintf(&pct, "%%%02X", c)
	}
	forms = append(forms, regexp.QuoteMeta(pct.String()))
	// JSON escapes, at any depth: a JSON string holding JSON doubles the
	// backslashes (\\u0026 for &).
	if r1, r2 := utf16.EncodeRune(r); r1 != unicode.ReplacementChar {
		forms = append(forms, fmt.Sprintf(`\\+u%04X\\+u%04X`, r1, r2))
	} else if r <= 0xFFFF {
		forms = append(forms, fmt.Sprintf(`\\+u%04X`, r))
	}
	forms = append(forms, fmt.Sprintf("&#x0*%X;", r), fmt.Sprintf("&#0*%d;", r))
	switch r {
	case ' ':
		forms = append(forms, `\+`)
	case '/', '"', '\\':
		forms = append(forms, `\\+`+regexp.QuoteMeta(string(r)))
	case '&':
		forms = append(forms, "&amp;")
	case '<':
		forms = append(forms, "&lt;")
	case '>':
		forms = append(forms, "&gt;")
	}
	switch r {
	case '"':
		forms = append(forms, "&quot;")
	case '\'':
		forms = append(forms, "&apos;")
	}
	return "(?:" + strings.Join(forms, "|") + ")"
}

func (r redactor) apply(s string) string {
	if r.re != nil {
		s = r.re.ReplaceAllLiteralString(s, redacted)
	}
	return redact.Tokens(s)
}

// decodeAPIError builds an *APIError from a non-2xx answer. It accepts any
// body: {"errors":[{"code","message"}]}, a bare {"code","message"}, an array
// of errors, {"error":...}, ASP.NET problem details, plain text, HTML or
// nothing. secret never appears in the result.
func decodeAPIError(status int, h http.Header, body []byte, now time.Time, secret redactor) *APIError {
	e := &APIError{Status: status}
	if d, ok := retryafter.Parse(h.Get("Retry-After"), now); ok {
		e.RetryAfter = d
	}
	// Redacted before anything reads it: taking the text out of HTML, or
	// decoding JSON, changes how the key is spelt.
	body = []byte(secret.apply(strings.ToValidUTF8(string(body), "\uFFFD")))
	e.Body = errtext.Truncate(string(body), maxBodyLen)
	code, msg := decodeErrorBody(body)
	if code != "" {
		if c := secret.apply(code); c == code {
			e.Code = code
		}
	}
	if msg == "" && code == "" {
		msg = errtext.Body(body)
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	e.Message = errtext.Truncate(secret.apply(errtext.Collapse(msg)), maxMessageLen)
	return e
}

// errorItem is one error entry of a body.
type errorItem struct{ code, msg string }

// decodeErrorBody returns the first code of a JSON error body and its
// messages. Both are empty when the body is no JSON or holds no error.
func decodeErrorBody(body []byte) (code, msg string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return "", ""
	}
	items := errorItems(v, 0)
	if len(items) > maxErrorItems {
		items = items[:maxErrorItems]
	}
	for _, it := range items {
		if it.code != "" {
			code = it.code
			break
		}
	}
	var msgs []string
	for _, it := range items {
		switch {
		case it.msg == "" && it.code != "" && it.code != code:
			msgs = append(msgs, it.code)
		case it.msg == "":
		case it.code != "" && it.code != code:
			msgs = append(msgs, it.code+": "+it.msg)
		default:
			msgs = append(msgs, it.msg)
		}
	}
	return code, strings.Join(slices.Compact(msgs), "; ")
}

// errorItems walks a decoded JSON error body.
func errorItems(v any, depth int) []errorItem {
	if depth > 3 {
		return nil
	}
	switch v := v.(type) {
	case string:
		if v != "" {
			return []errorItem{{msg: v}}
		}
	case []any:
		var items []errorItem
		for _, el := range v {
			items = append(items, errorItems(el, depth+1)...)
			if len(items) > maxErrorItems {
				break
			}
		}
		return items
	case map[string]any:
		return objectItems(v, depth)
	}
	return nil
}

// objectItems reads one JSON object of an error body.
func objectItems(m map[string]any, depth int) []errorItem {
	var items []errorItem
	if errs, ok := field(m, "errors"); ok {
		if em, ok := errs.(map[string]any); ok && !isErrorObject(em) {
			items = fieldErrors(em) // ASP.NET: {"Name":["The Name field is required."]}
		} else {
			items = errorItems(errs, depth+1)
		}
	}
	if len(items) == 0 {
		if inner, ok := field(m, "error"); ok {
			if s, ok := inner.(string); ok {
				// OAuth style: {"error":"invalid_token","error_description":"..."}
				items = []errorItem{{msg: joinNonEmpty(": ", s, str(m, "error_description"))}}
			} else {
				items = errorItems(inner, depth+1)
			}
		}
	}
	if len(items) > 0 {
		return items
	}
	code := firstNonEmpty(str(m, "code"), str(m, "errorCode"), str(m, "error_code"))
	msg := firstNonEmpty(str(m, "message"), str(m, "detail"), str(m, "title"),
		str(m, "error_description"), str(m, "description"))
	if !validCode(code) {
		msg, code = joinNonEmpty(": ", code, msg), ""
	}
	if code == "" && msg == "" {
		return nil
	}
	return []errorItem{{code: code, msg: msg}}
}

func isErrorObject(m map[string]any) bool {
	for _, k := range []string{"code", "message", "errorCode", "error_code"} {
		if _, ok := field(m, k); ok {
			return true
		}
	}
	return false
}

// fieldErrors reads {"field":["message", ...]} in key order.
func fieldErrors(m map[string]any) []errorItem {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var items []errorItem
	for _, k := range keys {
		var msgs []string
		switch v := m[k].(type) {
		case string:
			msgs = append(msgs, v)
		case []any:
			for _, el := range v {
				if s, ok := el.(string); ok {
					msgs = append(msgs, s)
				}
			}
		}
		if len(msgs) > 0 {
			items = append(items, errorItem{msg: k + ": " + strings.Join(msgs, " ")})
		}
		if len(items) >= maxErrorItems {
			break
		}
	}
	return items
}

// field finds key in m, ignoring letter case.
func field(m map[string]any, key string) (any, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// str is m[key] as a string: a JSON string or number.
func str(m map[string]any, key string) string {
	v, _ := field(m, key)
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v)
	case json.Number:
		return v.String()
	}
	return ""
}

var codeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)

// validCode reports whether s looks like an error code (e.g. "VALD-1049").
func validCode(s string) bool { return codeRE.MatchString(s) }

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func joinNonEmpty(sep string, ss ...string) string {
	return strings.Join(slices.DeleteFunc(ss, func(s string) bool { return s == "" }), sep)
}
