package ipaasclient_test

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bcsync/bcsync/ipaasclient"
)

const testKey = "fz-Key/0123456789+abc"

func TestDecodeAPIError(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("é", 3000)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		code       string
		msg        string // exact Message, or a prefix when it ends in "…"
		family     string
		temporary  bool
		wait       time.Duration
		is         error // a sentinel err must match
		isNot      error // a sentinel err must not match
	}{
		{name: "envelope", status: 400, body: `{"errors":[{"code":"VALD-1049","message":"First or last name required"}]}`,
			code: "VALD-1049", msg: "First or last name required", family: "VALD", is: ipaasclient.ErrValidation, isNot: ipaasclient.ErrNotFound},
		{name: "bare object", status: 404, body: `{"code":"NFND-1001","message":"Record not found"}`,
			code: "NFND-1001", msg: "Record not found", family: "NFND", is: ipaasclient.ErrNotFound},
		{name: "array of errors", status: 409, body: `[{"code":"BIZL-1003","message":"dup"},{"code":"VALD-1002","message":"x"}]`,
			code: "BIZL-1003", msg: "dup; VALD-1002: x", family: "BIZL", is: ipaasclient.ErrLinkConflict, isNot: ipaasclient.ErrValidation},
		{name: "BIZL-1005 as 400", status: 400, body: `{"errors":[{"code":"bizl-1005","message":"linked"}]}`,
			code: "bizl-1005", msg: "linked", family: "BIZL", is: ipaasclient.ErrLinkConflict, isNot: ipaasclient.ErrValidation},
		{name: "plain text", status: 502, body: "Bad Gateway: upstream\nreset",
			msg: "Bad Gateway: upstream reset", temporary: true},
		{name: "html", status: 503, body: "<html><head><title>503 Service Unavailable</title></head><body><h1>Down</h1></body></html>",
			msg: "503 Service Unavailable Down", temporary: true},
		{name: "empty", status: 500, msg: "Internal Server Error", temporary: true},
		{name: "empty 422", status: 422, msg: "Unprocessable Entity", is: ipaasclient.ErrValidation},
		{name: "429 seconds", status: 429, retryAfter: "7", body: `{"errors":[{"message":"slow down"}]}`,
			msg: "slow down", temporary: true, wait: 7 * time.Second},
		{name: "503 http date", status: 503, retryAfter: now.Add(30 * time.Second).Format(http.TimeFormat),
			msg: "Service Unavailable", temporary: true, wait: 30 * time.Second},
		{name: "retry-after past date", status: 503, retryAfter: now.Add(-time.Hour).Format(http.TimeFormat),
			msg: "Service Unavailable", temporary: true},
		{name: "retry-after on a 400", status: 400, retryAfter: "3", body: `{"errors":[{"code":"VALD-1","message":"m"}]}`,
			code: "VALD-1", msg: "m", family: "VALD", wait: 3 * time.Second, is: ipaasclient.ErrValidation},
		{name: "retry-after garbage", status: 503, retryAfter: "soon", msg: "Service Unavailable", temporary: true},
		{name: "problem details", status: 400,
			body: `{"type":"https://tools.ietf.org/html/rfc7231#section-6.5.1","title":"One or more validation errors occurred.","status":400,"errors":{"Name":["The Name field is required."],"City":"too long"}}`,
			msg:  "City: too long; Name: The Name field is required.", is: ipaasclient.ErrValidation},
		{name: "problem details without errors", status: 500, body: `{"title":"Oops","detail":"database timeout"}`,
			msg: "database timeout", temporary: true},
		{name: "error object", status: 401, body: `{"error":{"code":"AUTH-1001","message":"expired"}}`,
			code: "AUTH-1001", msg: "expired", family: "AUTH", is: ipaasclient.ErrUnauthorized},
		{name: "oauth style", status: 401, body: `{"error":"invalid_token","error_description":"expired"}`,
			msg: "invalid_token: expired", is: ipaasclient.ErrUnauthorized},
		{name: "INTL on a 400", status: 400, body: `{"errors":[{"code":"INTL-1000","message":"boom"}]}`,
			code: "INTL-1000", msg: "boom", family: "INTL", temporary: true, isNot: ipaasclient.ErrValidation},
		{name: "AUTZ", status: 403, body: `{"errors":[{"code":"AUTZ-1002","message":"no access"}]}`,
			code: "AUTZ-1002", msg: "no access", family: "AUTZ", is: ipaasclient.ErrForbidden},
		{name: "VALD on a 404", status: 404, body: `{"errors":[{"code":"VALD-1005","message":"bad"}]}`,
			code: "VALD-1005", msg: "bad", family: "VALD", is: ipaasclient.ErrValidation, isNot: ipaasclient.ErrNotFound},
		{name: "unknown family", status: 400, body: `{"errors":[{"code":"RATE-9","message":"m"}]}`,
			code: "RATE-9", msg: "m", is: ipaasclient.ErrValidation},
		{name: "numeric code", status: 400, body: `{"code":1049,"message":"m"}`, code: "1049", msg: "m", is: ipaasclient.ErrValidation},
		{name: "not a code", status: 400, body: `{"code":"not a code","message":"m"}`, msg: "not a code: m", is: ipaasclient.ErrValidation},
		{name: "code only", status: 400, body: `{"errors":[{"code":"VALD-7"}]}`, code: "VALD-7", msg: "Bad Request", family: "VALD"},
		{name: "json string", status: 500, body: `"Something failed"`, msg: "Something failed", temporary: true},
		{name: "json number", status: 500, body: `42`, msg: "42", temporary: true},
		{name: "unknown json", status: 400, body: `{"errors":null}`, msg: `{"errors":null}`, is: ipaasclient.ErrValidation},
		{name: "long", status: 500, body: long, msg: strings.Repeat("é", 256) + "…", temporary: true},
		{name: "invalid utf-8", status: 500, body: "bad \xff\xfe byte", msg: "bad \uFFFD byte", temporary: true},
		{name: "408", status: 408, msg: "Request Timeout", temporary: true},
		{name: "echoed key", status: 401, body: `{"errors":[{"code":"AUTH-1001","message":"bad key Bearer ` + testKey + `"}]}`,
			code: "AUTH-1001", msg: "bad key Bearer [redacted]", family: "AUTH", is: ipaasclient.ErrUnauthorized},
		{name: "echoed other bearer", status: 401, body: `Authorization: Bearer abc.def.ghi`,
			msg: "Authorization: Bearer [redacted]", is: ipaasclient.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			e := ipaasclient.DecodeAPIError(tt.status, h, []byte(tt.body), now, testKey)
			if e.Status != tt.status || e.Code != tt.code || e.Family() != tt.family ||
				e.Temporary() != tt.temporary || e.RetryAfter != tt.wait {
				t.Errorf("got status %d code %q family %q temporary %v wait %v\nwant status %d code %q family %q temporary %v wait %v",
					e.Status, e.Code, e.Family(), e.Temporary(), e.RetryAfter, tt.status, tt.code, tt.family, tt.temporary, tt.wait)
			}
			if e.Message != tt.msg {
				t.Errorf("Message = %q\n want %q", e.Message, tt.msg)
			}
			if tt.is != nil && !errors.Is(e, tt.is) {
				t.Errorf("not errors.Is %v", tt.is)
			}
			if tt.isNot != nil && errors.Is(e, tt.isNot) {
				t.Errorf("errors.Is %v", tt.isNot)
			}
			checkAPIError(t, e)
			if !strings.Contains(tt.body, testKey) && !strings.Contains(tt.body, "Bearer") &&
				utf8.ValidString(tt.body) && len(tt.body) <= 512 && e.Body != tt.body {
				t.Errorf("Body = %q, want the raw body %q", e.Body, tt.body)
			}
		})
	}
}

var codeShape = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)

// checkAPIError checks what holds for every decoded error.
func checkAPIError(t *testing.T, e *ipaasclient.APIError) {
	t.Helper()
	for name, s := range map[string]string{"Error()": e.Error(), "Body": e.Body, "Message": e.Message} {
		if strings.Contains(strings.ToLower(s), strings.ToLower(testKey)) {
			t.Errorf("%s holds the key: %q", name, s)
		}
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", name, s)
		}
	}
	if strings.ContainsAny(e.Error(), "\r\n") {
		t.Errorf("Error() spans lines: %q", e.Error())
	}
	if len(e.Body) > 512+len("…") || len(e.Message) > 512+len("…") {
		t.Errorf("Body %d bytes, Message %d bytes", len(e.Body), len(e.Message))
	}
	if e.Code != "" && !codeShape.MatchString(e.Code) {
		t.Errorf("Code %q is not code-shaped", e.Code)
	}
	if e.RetryAfter < 0 {
		t.Errorf("RetryAfter %v", e.RetryAfter)
	}
	if e.Status >= 500 && e.Status <= 599 && !e.Temporary() {
		t.Errorf("HTTP %d not temporary", e.Status)
	}
}

func FuzzDecodeAPIError(f *testing.F) {
	f.Add(400, []byte(`{"errors":[{"code":"VALD-1049","message":"First or last name required"}]}`), "")
	f.Add(401, []byte(`{"errors":[{"code":"AUTH-1001","message":"Bearer `+testKey+`"}]}`), "")
	f.Add(429, []byte(`[{"code":"INTL-1","message":"x"},"y",{"errors":{"a":["b"]}}]`), "120")
	f.Add(503, []byte("<html><body>down</body></html>"), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(500, []byte(nil), "99999999999999999999")
	f.Add(401, []byte(strings.ToUpper(testKey)+" fz-Key%2F0123456789+abc fz-Key\\/0123456789+abc"), "")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		h := http.Header{}
		h.Set("Retry-After", strings.ToValidUTF8(strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return -1
			}
			return r
		}, retryAfter), ""))
		e := ipaasclient.DecodeAPIError(status, h, body, now, testKey)
		if e.Status != status {
			t.Fatalf("Status %d, want %d", e.Status, status)
		}
		_ = e.Family()
		_ = errors.Is(e, ipaasclient.ErrValidation)
		checkAPIError(t, e)
	})
}
