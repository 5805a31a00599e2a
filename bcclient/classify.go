package bcclient

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Class is what kind of failure an error is, which decides what to do
// about it. The rule behind the classes is who must act:
//
//   - nobody, time passes: ClassTransient, ClassThrottled;
//   - an operator, for every job of the connection: ClassAuth,
//     ClassPermission (every request fails the same way until someone
//     fixes the credentials, the configuration or the permissions);
//   - nobody can, for this job only: ClassNotFound, ClassPermanent.
type Class int

// The failure classes.
const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassTransient: retrying the same work later may succeed. Network
	// errors, timeouts, context.DeadlineExceeded and context.Canceled (check
	// your context before retrying), BC 408, 5xx (but 501), a temporary
	// Entra failure, and ErrChanged (read again, then write again). Errors
	// that Classify does not know are transient too: a retry costs less than
	// dropping what a retry would fix, and the caller's attempt limit bounds
	// it.
	ClassTransient
	// ClassThrottled: BC or Entra asked to slow down (429,
	// Application_TooManyRequests). Wait RetryAfter when set.
	ClassThrottled
	// ClassAuth: the connection's credentials or configuration are refused:
	// Entra rejected the app registration (every AADSTS code a user can fix),
	// BC answered 401 (Authentication_*) even with a new token, or the
	// tenant, environment, company or web service named by Config does not
	// exist (any 404 but Internal_RecordNotFound, Internal_*NotFound such as
	// Internal_CompanyNotFound and Internal_EnvironmentNotFound, a redirect,
	// a TLS certificate that does not verify).
	ClassAuth
	// ClassPermission: the app registration is known but lacks a permission
	// (BC 403, Authorization_*). An admin must grant it.
	ClassPermission
	// ClassNotFound: the record does not exist (any more): ErrNotFound.
	ClassNotFound
	// ClassPermanent: this request can never succeed as it is: BC 400 and
	// other 4xx (BadRequest_*, Application_* validation errors, a 409 that is
	// not Request_EntityChanged), 501, ErrInvalidKey, ErrInvalidRequest,
	// ErrForeignNextLink, and a 2xx response the client cannot use.
	ClassPermanent
)

var classNames = [...]string{"none", "transient", "throttled", "auth", "permission", "not_found", "permanent"}

// String returns the class's name: "none", "transient", "throttled", "auth",
// "permission", "not_found" or "permanent".
func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "unknown"
	}
	return classNames[c]
}

// Classify maps any error a Client method returns to its Class. See the
// constants for the rules. The client has already retried ClassTransient
// and ClassThrottled errors as Config.Retry allows, except ErrChanged.
func Classify(err error) Class {
	c, _ := classify(err)
	return c
}

// classify is Classify, and whether the error was one it knows.
func classify(err error) (Class, bool) {
	var (
		apiErr  *APIError
		tokErr  *TokenError
		cfgErr  *configError
		respErr *responseError
		certErr *tls.CertificateVerificationError
		netErr  net.Error
		urlErr  *url.Error
	)
	switch {
	case err == nil:
		return ClassNone, true
	case errors.Is(err, ErrNotFound):
		return ClassNotFound, true
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrInvalidRequest), errors.Is(err, ErrForeignNextLink),
		errors.As(err, &respErr):
		return ClassPermanent, true
	case errors.As(err, &cfgErr):
		return ClassAuth, true
	case errors.As(err, &apiErr):
		return classifyAPIError(apiErr), true
	case errors.As(err, &tokErr):
		return classifyTokenError(tokErr), true
	case errors.As(err, &certErr):
		return ClassAuth, true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr), errors.As(err, &urlErr),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ClassTransient, true
	}
	return ClassTransient, false
}

// classifyAPIError classifies a BC answer. The status decides, except where
// the code says more: Application_TooManyRequests, Request_EntityChanged,
// Authentication_*, Authorization_*, Internal_RecordNotFound and the other
// Internal_*NotFound codes.
func classifyAPIError(e *APIError) Class {
	switch {
	case e.throttled():
		return ClassThrottled
	case e.Is(ErrChanged):
		return ClassTransient
	case e.Status == http.StatusUnauthorized || strings.HasPrefix(e.Code, "Authentication_"):
		return ClassAuth
	case e.Status == http.StatusForbidden || strings.HasPrefix(e.Code, "Authorization_"):
		return ClassPermission
	case e.Code == codeRecordNotFound:
		return ClassNotFound
	case e.Status == http.StatusNotFound,
		strings.HasPrefix(e.Code, "Internal_") && strings.HasSuffix(e.Code, "NotFound"):
		// Not the record but what the URL's configured part names: the
		// tenant, environment, company or web service.
		return ClassAuth
	case e.Status == http.StatusRequestTimeout,
		e.Status >= 500 && e.Status != http.StatusNotImplemented && e.Status != http.StatusHTTPVersionNotSupported:
		return ClassTransient
	case e.Status >= 300 && e.Status < 400:
		// A redirect (never followed): Config.APIURL is not BC's API host.
		return ClassAuth
	}
	return ClassPermanent
}

// classifyTokenError classifies an Entra answer: throttled or failed is
// retried, anything else means the credentials are wrong.
func classifyTokenError(e *TokenError) Class {
	switch {
	case e.Status == http.StatusTooManyRequests:
		return ClassThrottled
	case e.Status == 0 || e.Temporary():
		return ClassTransient
	}
	return ClassAuth
}

// isTransient reports whether err is a failure Classify knows to be
// transient or throttled, not an unknown error.
func isTransient(err error) bool {
	c, known := classify(err)
	return known && (c == ClassTransient || c == ClassThrottled) && !errors.Is(err, ErrChanged)
}
