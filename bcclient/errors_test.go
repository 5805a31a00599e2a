package bcclient_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bcsync/bcsync/bcclient"
)

func TestIsGUID(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0":   true,
		"5B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0":   true,
		"00000000-0000-0000-0000-000000000000":   true,
		"{5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0}": false,
		"5b1c2d3e4f5061728394a5b6c7d8e9f0":       false,
		"5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f":    false,
		"5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f00":  false,
		"5b1c2d3e-4f50-6172-8394_a5b6c7d8e9f0":   false,
		"5b1c2d3g-4f50-6172-8394-a5b6c7d8e9f0":   false,
		"5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f)":   false,
		"L0001":                                  false,
		"":                                       false,
	}
	for in, want := range tests {
		if got := bcclient.IsGUID(in); got != want {
			t.Errorf("IsGUID(%q) = %v", in, got)
		}
	}
}

func TestODataQuoting(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":         "''",
		"L0001":    "'L0001'",
		"O'Brien":  "'O''Brien'",
		"''":       "''''''",
		"a'b'c'":   "'a''b''c'''",
		"CRONUS, ": "'CRONUS, '",
	} {
		if got := bcclient.QuoteODataString(in); got != want {
			t.Errorf("QuoteODataString(%q) = %q, want %q", in, got, want)
		}
	}

	for _, tt := range []struct{ field, value, want string }{
		{"name", "CRONUS USA, Inc.", "$filter=name%20eq%20%27CRONUS%20USA%2C%20Inc.%27"},
		{"code", "O'NEIL", "$filter=code%20eq%20%27O%27%27NEIL%27"},
		{"number", "A+B&C#D=E%F", "$filter=number%20eq%20%27A%2BB%26C%23D%3DE%25F%27"},
	} {
		got := bcclient.FilterQuery(tt.field, tt.value)
		if got != tt.want {
			t.Errorf("FilterQuery(%q, %q) = %q, want %q", tt.field, tt.value, got, tt.want)
		}
		q, err := url.ParseQuery(got)
		if err != nil || q.Get("$filter") != tt.field+" eq "+bcclient.QuoteODataString(tt.value) || strings.Contains(got, "+") {
			t.Errorf("FilterQuery(%q, %q) decodes to %q (%v)", tt.field, tt.value, q.Get("$filter"), err)
		}
	}

	for in, want := range map[string]string{
		"CRONUS USA, Inc.": "'CRONUS%20USA%2C%20Inc.'",
		"O'Brien/Sons?#":   "'O%27%27Brien%2FSons%3F%23'",
		"PG001":            "'PG001'",
	} {
		if got := bcclient.PathLiteral(in); got != want {
			t.Errorf("PathLiteral(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeAPIError(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	const corr = "0f6a3c2e-1b4d-4e5f-8a9b-0c1d2e3f4a5b"
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			hd.Set(kv[i], kv[i+1])
		}
		return hd
	}
	tests := []struct {
		name     string
		status   int
		header   http.Header
		body     string
		want     bcclient.APIError
		notFound bool
	}{
		{"BC record not found", 404, nil,
			`{"error":{"code":"Internal_RecordNotFound","message":"The Location does not exist.  CorrelationId:  ` + corr + `."}}`,
			bcclient.APIError{Status: 404, Code: "Internal_RecordNotFound",
				Message: "The Location does not exist. CorrelationId: " + corr + ".", CorrelationID: corr}, true},
		{"BC 404 company", 404, nil, `{"error":{"code":"Internal_CompanyNotFound","message":"x"}}`,
			bcclient.APIError{Status: 404, Code: "Internal_CompanyNotFound", Message: "x"}, false},
		{"429 with header ids", 429, h("Retry-After", "30", "ms-correlation-x", corr, "request-id", "other"),
			`{"error":{"code":"Application_TooManyRequests","message":"Too many requests reached. Actual (101). Maximum (100)."}}`,
			bcclient.APIError{Status: 429, Code: "Application_TooManyRequests",
				Message: "Too many requests reached. Actual (101). Maximum (100).", CorrelationID: corr, RetryAfter: 30 * time.Second}, false},
		{"request-id", 500, h("request-id", corr), `{"error":{"code":"Internal_ServerError","message":"boom"}}`,
			bcclient.APIError{Status: 500, Code: "Internal_ServerError", Message: "boom", CorrelationID: corr}, false},
		{"HTML", 502, h("Retry-After", now.Add(time.Minute).Format(http.TimeFormat)),
			"<html><head><title>502 Bad Gateway</title></head>\n<body><h1>502 Bad Gateway</h1></body></html>",
			bcclient.APIError{Status: 502, Message: "502 Bad Gateway 502 Bad Gateway", RetryAfter: time.Minute}, false},
		{"empty", 504, nil, "", bcclient.APIError{Status: 504, Message: "Gateway Timeout"}, false},
		{"empty 401 with challenge", 401, h("WWW-Authenticate", `Bearer error="invalid_token"`), "",
			bcclient.APIError{Status: 401, Message: `Bearer error="invalid_token"`}, false},
		{"plain text", 503, h("Retry-After", "bogus"), "Service Unavailable\r\n",
			bcclient.APIError{Status: 503, Message: "Service Unavailable"}, false},
		{"string error", 400, nil, `{"error":"invalid_request","error_description":"bad"}`,
			bcclient.APIError{Status: 400, Code: "invalid_request", Message: "bad"}, false},
		{"wrong types", 400, nil, `{"error":{"code":5}}`,
			bcclient.APIError{Status: 400, Message: `{"error":{"code":5}}`}, false},
		{"JSON without error", 400, nil, `{"value":[]}`, bcclient.APIError{Status: 400, Message: `{"value":[]}`}, false},
		{"token echoed", 400, nil, "Authorization: Bearer abcdef.ghijkl-mno_pq== rejected",
			bcclient.APIError{Status: 400, Message: "Authorization: Bearer [redacted] rejected"}, false},
		{"JWT echoed", 400, nil, `{"error":{"code":"BadRequest","message":"token eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl bad"}}`,
			bcclient.APIError{Status: 400, Code: "BadRequest", Message: "token [redacted] bad"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd := tt.header
			if hd == nil {
				hd = http.Header{}
			}
			got := bcclient.DecodeAPIError(tt.status, hd, []byte(tt.body), now)
			if *got != tt.want {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
			if errors.Is(got, bcclient.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v", !tt.notFound)
			}
		})
	}

	long := strings.Repeat("é", 5000)
	got := bcclient.DecodeAPIError(500, http.Header{}, []byte(long), now)
	if len(got.Message) > bcclient.MaxMessageLenTest+len("…") || !utf8.ValidString(got.Message) {
		t.Errorf("long body: %d bytes, valid %v", len(got.Message), utf8.ValidString(got.Message))
	}
}

func TestAPIErrorTemporary(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{
		400: false, 401: false, 403: false, 404: false, 409: false, 412: false,
		408: true, 429: true, 500: true, 502: true, 503: true, 504: true, 501: false,
	} {
		if got := (&bcclient.APIError{Status: status}).Temporary(); got != want {
			t.Errorf("Temporary() for %d = %v", status, got)
		}
	}
}

func FuzzDecodeAPIError(f *testing.F) {
	f.Add(404, []byte(`{"error":{"code":"Internal_RecordNotFound","message":"x  CorrelationId:  0f6a3c2e-1b4d-4e5f-8a9b-0c1d2e3f4a5b."}}`), "", "")
	f.Add(429, []byte(`{"error":{"code":"Application_TooManyRequests","message":"Too many requests reached."}}`), "10", "id")
	f.Add(502, []byte("<html><body><h1>502 Bad Gateway</h1></body></html>"), "Wed, 21 Oct 2015 07:28:00 GMT", "")
	f.Add(504, []byte{}, "", "")
	f.Add(400, []byte(`{"error":"invalid_request"}`), "-3", "")
	f.Add(500, []byte{0xff, 0xfe, '<', 0x00}, "1e9", "")
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter, requestID string) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("request-id", requestID)
		e := bcclient.DecodeAPIError(status, h, body, now)
		if e.Status != status {
			t.Fatalf("status %d, want %d", e.Status, status)
		}
		for _, s := range []string{e.Code, e.Message, e.CorrelationID} {
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("unclean field %q", s)
			}
		}
		if len(e.Message) > bcclient.MaxMessageLenTest+len("…") {
			t.Fatalf("message of %d bytes", len(e.Message))
		}
		if e.RetryAfter < 0 {
			t.Fatalf("negative RetryAfter %v", e.RetryAfter)
		}
		_ = e.Error()
		_ = e.Temporary()
	})
}
