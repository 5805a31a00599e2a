package bcclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/bcsync/bcsync/internal/errtext"
	"github.com/bcsync/bcsync/internal/redact"
	"github.com/bcsync/bcsync/internal/retryafter"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrNotFound: the record does not exist. It matches an *APIError with
	// Code "Internal_RecordNotFound", a lookup by code or number that
	// matched no row, and a 404 to RenewSubscription or DeleteSubscription
	// (the subscription is gone). Other 404s (unknown company, environment
	// or web service) are not ErrNotFound: they mean the configuration is
	// wrong.
	ErrNotFound = errors.New("record not found")
	// ErrInvalidKey: the key is neither a GUID nor a plausible code, so no
	// request was sent.
	ErrInvalidKey = errors.New("invalid record key")
	// ErrForeignNextLink: BC sent an @odata.nextLink to another scheme or
	// host than Config.APIURL; it was not followed, so that the bearer token
	// never leaves the API host.
	ErrForeignNextLink = errors.New("@odata.nextLink points to a foreign host")
	// ErrChanged: the record changed since its ETag was read, so a write
	// with If-Match was refused. It matches an *APIError with Code
	// "Request_EntityChanged" (BC answers 409) or Status 412. Read the
	// record again and retry with its new ETag.
	ErrChanged = errors.New("record changed since it was read")
	// ErrInvalidRequest: an argument other than a record key is invalid
	// (e.g. a clientState longer than 2048 characters, an entity set that
	// is not webhook-enabled, a missing ETag), so no request was sent.
	ErrInvalidRequest = errors.New("invalid request")
)

// APIError is a non-2xx answer from Business Central.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is BC's error code, "Family_Detail" (e.g. "Internal_RecordNotFound",
	// "Application_TooManyRequests"); empty when the body was not a BC error.
	Code string
	// Message is BC's message, or the start of a body that was not a BC
	// error (HTML from a gateway, plain text), or the status text.
	Message string
	// CorrelationID identifies the request in Microsoft's logs: from the
	// message's "CorrelationId: <guid>", else from the ms-correlation-x or
	// request-id header. May be empty.
	CorrelationID string
	// RetryAfter is the Retry-After header's delay, on any status; zero when
	// absent or unparseable.
	RetryAfter time.Duration
}

// Error returns the status, code, message and correlation id. It never holds
// a token.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "BC API: HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.CorrelationID != "" && !strings.Contains(e.Message, e.CorrelationID) {
		fmt.Fprintf(&b, " (correlation ID %s)", e.CorrelationID)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for a missing record
// (Internal_RecordNotFound), and errors.Is(err, ErrChanged) true for a stale
// ETag (Request_EntityChanged, or HTTP 412).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == codeRecordNotFound
	case ErrChanged:
		return e.Code == codeEntityChanged || e.Status == http.StatusPreconditionFailed
	}
	return false
}

// Temporary reports whether the same request may succeed later: 408, 429,
// 500, 502, 503 and 504, and Application_TooManyRequests on any status. The
// client retries these itself (see RetryPolicy) before it returns them.
func (e *APIError) Temporary() bool {
	switch e.Status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return e.throttled()
}

// throttled reports whether BC refused the request for exceeding a limit:
// 429, or Application_TooManyRequests on any status.
func (e *APIError) throttled() bool {
	return e.Status == http.StatusTooManyRequests || e.Code == codeTooManyRequests
}

// BC error codes that the client treats specially.
const (
	codeRecordNotFound  = "Internal_RecordNotFound"
	codeEntityChanged   = "Request_EntityChanged"
	codeTooManyRequests = "Application_TooManyRequests"
)

// responseError is a 2xx response the client cannot use: a body larger than
// MaxBodyBytes, JSON that does not decode, a malformed or looping
// @odata.nextLink. Sending the same request again gives the same answer, so
// Classify reports ClassPermanent.
type responseError struct{ err error }

func (e *responseError) Error() string { return e.err.Error() }
func (e *responseError) Unwrap() error { return e.err }

func badResponse(format string, a ...any) error {
	return &responseError{fmt.Errorf(format, a...)}
}

// configError is a configuration the client or the token source refuses
// when used (e.g. Credentials without a TenantID). Classify reports
// ClassAuth: no request can succeed until an operator fixes it.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

const (
	maxMessageLen = 1024 // bytes kept of a message or a raw body
	maxCodeLen    = 128
	maxCorrIDLen  = 128
)

var correlationRE = regexp.MustCompile(`(?i)correlation\s*id\s*:?\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`)

// decodeAPIError builds an *APIError from a non-2xx response. It accepts any
// body: BC's {"error":{"code","message"}}, {"error":"code"}, HTML, text or
// nothing.
func decodeAPIError(status int, h http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{Status: status}
	if d, ok := retryafter.Parse(h.Get("Retry-After"), now); ok {
		e.RetryAfter = d
	}
	if code, msg, ok := decodeErrorBody(body); ok {
		e.Code, e.Message = clean(code, maxCodeLen), clean(msg, maxMessageLen)
	} else {
		e.Message = clean(errtext.Body(body), maxMessageLen)
	}
	if e.Message == "" {
		if wa := h.Get("WWW-Authenticate"); wa != "" {
			e.Message = clean(wa, maxMessageLen)
		} else {
			e.Message = http.StatusText(status)
		}
	}
	if m := correlationRE.FindStringSubmatch(e.Message); m != nil {
		e.CorrelationID = m[1]
	} else {
		for _, k := range []string{"ms-correlation-x", "request-id"} {
			if v := clean(h.Get(k), maxCorrIDLen); v != "" {
				e.CorrelationID = v
				break
			}
		}
	}
	return e
}

// decodeErrorBody reads {"error":{"code":..,"message":..}} or
// {"error":"code","error_description":".."}.
func decodeErrorBody(body []byte) (code, msg string, ok bool) {
	var env struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Error) == 0 {
		return "", "", false
	}
	var obj struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(env.Error, &obj) == nil && (obj.Code != "" || obj.Message != "") {
		return obj.Code, obj.Message, true
	}
	var s string
	if json.Unmarshal(env.Error, &s) == nil && s != "" {
		return s, env.Description, true
	}
	return "", "", false
}

// clean makes s a short, one-line, token-free text of at most n bytes.
func clean(s string, n int) string {
	return errtext.Truncate(redact.Tokens(errtext.Collapse(s)), n)
}
