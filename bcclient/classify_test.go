package bcclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"

	"golang.org/x/oauth2"

	"github.com/bcsync/bcsync/bcclient"
)

// TestClassify has a row for every HTTP status and BC error code of
// business-central.md, every AADSTS code, and every other kind of error a
// Client returns.
func TestClassify(t *testing.T) {
	t.Parallel()
	api := func(status int, code string) error {
		return fmt.Errorf("bcclient: get customer %q: %w", "C1", &bcclient.APIError{Status: status, Code: code, Message: "m"})
	}
	entra := func(status int, codes ...int) error {
		return &bcclient.TokenError{Status: status, ErrorCode: "invalid_client", Codes: codes}
	}
	const (
		transient  = bcclient.ClassTransient
		throttled  = bcclient.ClassThrottled
		auth       = bcclient.ClassAuth
		permission = bcclient.ClassPermission
		notFound   = bcclient.ClassNotFound
		permanent  = bcclient.ClassPermanent
	)
	tests := []struct {
		name string
		err  error
		want bcclient.Class
	}{
		{"nil", nil, bcclient.ClassNone},

		// Every status of business-central.md, with no code (a gateway).
		{"400", api(400, ""), permanent},
		{"401", api(401, ""), auth},
		{"403", api(403, ""), permission},
		{"404", api(404, ""), auth}, // not the record: the URL's configured part
		{"408", api(408, ""), transient},
		{"409", api(409, ""), permanent},
		{"412", api(412, ""), transient}, // ErrChanged
		{"429", api(429, ""), throttled},
		{"500", api(500, ""), transient},
		{"502", api(502, ""), transient},
		{"503", api(503, ""), transient},
		{"504", api(504, ""), transient},
		// Statuses beyond the list.
		{"302 redirect refused", api(302, ""), auth},
		{"405", api(405, ""), permanent},
		{"501", api(501, ""), permanent},
		{"505", api(505, ""), permanent},
		{"507", api(507, ""), transient},

		// Every code of business-central.md, with the status BC sends it
		// with, and the families with other statuses.
		{"BadRequest_InvalidToken", api(400, "BadRequest_InvalidToken"), permanent},
		{"BadRequest_* 400", api(400, "BadRequest_InvalidFilter"), permanent},
		{"BadRequest_NotFound 404", api(404, "BadRequest_NotFound"), auth},
		{"Authentication_InvalidCredentials", api(401, "Authentication_InvalidCredentials"), auth},
		{"Authentication_* on 400", api(400, "Authentication_Whatever"), auth},
		{"Authorization_InsufficientPermissions", api(403, "Authorization_InsufficientPermissions"), permission},
		{"Authorization_* on 400", api(400, "Authorization_Whatever"), permission},
		{"Internal_RecordNotFound", api(404, "Internal_RecordNotFound"), notFound},
		{"Internal_CompanyNotFound", api(404, "Internal_CompanyNotFound"), auth},
		{"Internal_CompanyNotFound on 400", api(400, "Internal_CompanyNotFound"), auth},
		{"Internal_EnvironmentNotFound", api(404, "Internal_EnvironmentNotFound"), auth},
		{"Internal_ServerError", api(500, "Internal_ServerError"), transient},
		{"Internal_ServiceUnavailable", api(503, "Internal_ServiceUnavailable"), transient},
		{"Internal_* on 400", api(400, "Internal_InvalidTableRelation"), permanent},
		{"Application_TooManyRequests 429", api(429, "Application_TooManyRequests"), throttled},
		{"Application_TooManyRequests on 503", api(503, "Application_TooManyRequests"), throttled},
		{"Application_* validation", api(400, "Application_DialogException"), permanent},
		{"Application_RequestTimeout 408", api(408, "Application_RequestTimeout"), transient},
		{"Request_EntityChanged", api(409, "Request_EntityChanged"), transient},
		{"Unknown 400", api(400, "Unknown"), permanent},
		{"Unknown 500", api(500, "Unknown"), transient},
		{"ErrNotFound from an empty filter", fmt.Errorf("bcclient: get location %q: no row: %w", "X", bcclient.ErrNotFound), notFound},

		// Every AADSTS code of business-central.md, and Entra failing.
		{"AADSTS7000215", entra(401, 7000215), auth},
		{"AADSTS7000222", entra(401, 7000222), auth},
		{"AADSTS7000218", entra(400, 7000218), auth},
		{"AADSTS700016", entra(400, 700016), auth},
		{"AADSTS90002", entra(400, 90002), auth},
		{"AADSTS70011", entra(400, 70011), auth},
		{"AADSTS7000112", entra(400, 7000112), auth},
		{"Entra 400 unknown code", entra(400, 12345), auth},
		{"Entra 408", entra(408), transient},
		{"Entra 429", entra(429, 50196), throttled},
		{"Entra 500", entra(500), transient},
		{"Entra 503", entra(503, 90033), transient},
		{"Entra no status", entra(0), transient},
		{"invalid credentials config", bcclient.ConfigError(errors.New("TenantID is required")), auth},

		// Transport and context.
		{"timeout", &url.Error{Op: "Get", URL: "u", Err: timeoutErr{}}, transient},
		{"connection refused", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, transient},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, transient},
		{"DNS", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, transient},
		{"body cut", fmt.Errorf("read response: %w", io.ErrUnexpectedEOF), transient},
		{"deadline", fmt.Errorf("look up company: %w", context.DeadlineExceeded), transient},
		{"canceled", context.Canceled, transient},
		{"503 then canceled", fmt.Errorf("%w; retry stopped: %w", api(503, ""), context.Canceled), transient},
		{"429 then canceled", fmt.Errorf("%w; retry stopped: %w", api(429, ""), context.Canceled), throttled},
		{"certificate", &url.Error{Op: "Get", URL: "u", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, auth},

		// Requests the client refuses to send, and answers it cannot use.
		{"ErrInvalidKey", fmt.Errorf("x: %w", bcclient.ErrInvalidKey), permanent},
		{"ErrInvalidRequest", fmt.Errorf("x: %w", bcclient.ErrInvalidRequest), permanent},
		{"ErrForeignNextLink", fmt.Errorf("x: %w", bcclient.ErrForeignNextLink), permanent},
		{"bad response", bcclient.BadResponse("decode response: unexpected end of JSON input"), permanent},

		// Anything else.
		{"unknown", errors.New("budget store unavailable"), transient},
	}
	for _, tt := range tests {
		if got := bcclient.Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	names := map[bcclient.Class]string{
		bcclient.ClassNone: "none", transient: "transient", throttled: "throttled", auth: "auth",
		permission: "permission", notFound: "not_found", permanent: "permanent", bcclient.Class(99): "unknown",
	}
	for c, want := range names {
		if c.String() != want {
			t.Errorf("%d.String() = %q", c, c.String())
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestClassifyRealErrors classifies errors as the client returns them.
func TestClassifyRealErrors(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS() // a certificate the client does not trust
	t.Cleanup(ts.Close)
	c := newClient(t, bcclient.Config{
		APIURL: ts.URL, TenantID: "t", Environment: "e", CompanyName: "C",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"}),
		Retry:       bcclient.RetryPolicy{Disabled: true},
	})
	if _, err := c.CompanyID(t.Context()); bcclient.Classify(err) != bcclient.ClassAuth {
		t.Errorf("untrusted certificate: %v is %v", err, bcclient.Classify(err))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens
	c = newClient(t, bcclient.Config{
		APIURL: "http://" + addr, TenantID: "t", Environment: "e", CompanyName: "C",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"}),
		Retry:       bcclient.RetryPolicy{Disabled: true},
	})
	if _, err := c.CompanyID(t.Context()); bcclient.Classify(err) != bcclient.ClassTransient {
		t.Errorf("connection refused: %v is %v", err, bcclient.Classify(err))
	}

	_, err = bcclient.NewTokenSource(t.Context(), bcclient.Credentials{}).Token()
	if bcclient.Classify(err) != bcclient.ClassAuth {
		t.Errorf("missing credentials: %v is %v", err, bcclient.Classify(err))
	}
}
