package bcclient

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/bcsync/bcsync/internal/errtext"
	"github.com/bcsync/bcsync/internal/redact"
	"github.com/bcsync/bcsync/internal/retryafter"
)

// Defaults for Credentials.
const (
	DefaultAuthorityURL = "https://login.microsoftonline.com"
	DefaultScope        = "https://api.businesscentral.dynamics.com/.default"
	// DefaultTokenTimeout bounds one token request when
	// Credentials.HTTPClient is nil.
	DefaultTokenTimeout = 30 * time.Second
	// maxEarlyRefresh is how much before its expiry a token is replaced at
	// most; short-lived tokens are replaced after 90% of their lifetime.
	maxEarlyRefresh = 5 * time.Minute
)

// Credentials identify an Entra app registration that reads BC through the
// OAuth 2.0 client credentials grant. Printing Credentials with any fmt verb
// shows the secret as "[redacted]".
type Credentials struct {
	// AuthorityURL is the Entra host. Default DefaultAuthorityURL
	// ("https://login.microsoftonline.com"); sovereign clouds use another.
	AuthorityURL string
	// TenantID is the Entra tenant (directory) id or domain. Required.
	TenantID string
	// ClientID is the app registration's Application (client) ID. Required.
	ClientID string
	// ClientSecret is the client secret's Value (not its Secret ID).
	ClientSecret string
	// Scope is the requested scope. Default DefaultScope
	// ("https://api.businesscentral.dynamics.com/.default").
	Scope string
	// HTTPClient sends the token requests. Default: a client with
	// DefaultTokenTimeout (30s) over http.DefaultTransport.
	HTTPClient *http.Client
}

// Format implements fmt.Formatter, so that no verb prints the secret.
func (c Credentials) Format(f fmt.State, _ rune) {
	secret := ""
	if c.ClientSecret != "" {
		secret = "[redacted]"
	}
	fmt.Fprintf(f, "{AuthorityURL:%s TenantID:%s ClientID:%s ClientSecret:%s Scope:%s}",
		c.AuthorityURL, c.TenantID, c.ClientID, secret, c.Scope)
}

// TokenURL is {AuthorityURL}/{TenantID}/oauth2/v2.0/token, defaults applied.
func (c Credentials) TokenURL() string {
	authority := c.AuthorityURL
	if authority == "" {
		authority = DefaultAuthorityURL
	}
	return strings.TrimRight(authority, "/") + "/" + url.PathEscape(c.TenantID) + "/oauth2/v2.0/token"
}

// NewTokenSource returns a token source for c that fetches tokens from Entra
// with the client credentials grant (credentials in the form body) and
// reuses each token until shortly before it expires: 5 minutes before, or
// after 90% of its lifetime if that is sooner. It is safe for concurrent use;
// concurrent callers share one token request.
//
// ctx is used by every token request and should live as long as the source.
// Token errors are *TokenError when Entra answered, with the secret redacted.
//
// The source implements TokenInvalidator, so that a Client that gets a 401
// from BC drops the rejected token and fetches a new one.
func NewTokenSource(ctx context.Context, c Credentials) oauth2.TokenSource {
	fetch, err := c.Fetcher()
	if err != nil {
		return errTokenSource{err}
	}
	return &earlyRefresh{fetch: func() (*oauth2.Token, error) { return fetch(ctx) }}
}

// Fetcher returns a function that asks Entra for a new token on every call
// (client credentials grant, credentials in the form body), without caching:
// for a cache of one's own, such as the fleet's shared token cache. Its
// errors are *TokenError when Entra answered, with the secret redacted. It
// fails at once when TenantID or ClientID is missing.
func (c Credentials) Fetcher() (func(ctx context.Context) (*oauth2.Token, error), error) {
	if c.Scope == "" {
		c.Scope = DefaultScope
	}
	var missing []error
	if c.TenantID == "" || !validSegment(c.TenantID) {
		missing = append(missing, errors.New("bcclient: credentials: TenantID is required (a GUID or a domain)"))
	}
	if c.ClientID == "" {
		missing = append(missing, errors.New("bcclient: credentials: ClientID is required"))
	}
	if err := errors.Join(missing...); err != nil {
		return nil, &configError{err}
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTokenTimeout}
	}
	cc := &clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		TokenURL:     c.TokenURL(),
		Scopes:       []string{c.Scope},
		AuthStyle:    oauth2.AuthStyleInParams,
	}
	return func(ctx context.Context) (*oauth2.Token, error) {
		// Config.Token fetches a new token on every call.
		t, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
		if err != nil {
			var re *oauth2.RetrieveError
			if errors.As(err, &re) {
				return nil, newTokenError(re, c.ClientSecret)
			}
			return nil, fmt.Errorf("bcclient: token request: %w", err)
		}
		return t, nil
	}, nil
}

// TokenInvalidator is implemented by a token source that caches tokens and
// can drop one that BC rejected (HTTP 401), so that the next Token call
// fetches a new one. Invalidate must drop the cached token only if it is
// still tok: when several requests fail with the same token at once, the
// first one's Invalidate causes one new token and the others' do nothing.
// It must be safe for concurrent use. The source of NewTokenSource
// implements it; a Client whose token source does not retries no 401.
type TokenInvalidator interface {
	Invalidate(tok *oauth2.Token)
}

var _ TokenInvalidator = (*earlyRefresh)(nil)

type errTokenSource struct{ err error }

func (s errTokenSource) Token() (*oauth2.Token, error) { return nil, s.err }

// earlyRefresh caches a token and fetches a new one shortly before the
// cached one expires.
type earlyRefresh struct {
	fetch func() (*oauth2.Token, error)

	mu        sync.Mutex
	tok       *oauth2.Token
	refreshAt time.Time // zero: never (the token has no expiry)
}

func (s *earlyRefresh) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.tok != nil && (s.refreshAt.IsZero() || now.Before(s.refreshAt)) {
		return s.tok, nil
	}
	t, err := s.fetch()
	if err != nil {
		if s.tok != nil && now.Before(s.tok.Expiry) {
			return s.tok, nil // still valid: try again on the next call
		}
		return nil, err
	}
	s.tok, s.refreshAt = t, time.Time{}
	if !t.Expiry.IsZero() {
		early := min(maxEarlyRefresh, t.Expiry.Sub(now)/10)
		s.refreshAt = t.Expiry.Add(-max(early, 0))
	}
	return t, nil
}

// Invalidate implements TokenInvalidator.
func (s *earlyRefresh) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == tok.AccessToken {
		s.tok, s.refreshAt = nil, time.Time{}
	}
}

// TokenError is a failed token request answered by Microsoft Entra.
type TokenError struct {
	// Status is the HTTP status (400 or 401 for bad credentials).
	Status int
	// ErrorCode is the OAuth error, e.g. "invalid_client".
	ErrorCode string
	// Description is Entra's error_description (or the start of a body that
	// was not an Entra error), with the client secret redacted.
	Description string
	// Codes are the AADSTS numbers (error_codes), e.g. 7000215.
	Codes []int
	// TraceID and CorrelationID identify the request in Entra's logs.
	TraceID       string
	CorrelationID string
	// RetryAfter is Entra's Retry-After header's delay (a throttled token
	// request); zero when absent. The client waits at least that long
	// before it asks again.
	RetryAfter time.Duration
}

// Error returns the status, error code and the first line of the
// description. It never holds the secret or a token.
func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bcclient: token request failed: HTTP %d", e.Status)
	if e.ErrorCode != "" {
		b.WriteString(" " + e.ErrorCode)
	}
	if first, _, _ := strings.Cut(e.Description, "\n"); strings.TrimSpace(first) != "" {
		b.WriteString(": " + strings.TrimSpace(first))
	}
	if e.TraceID != "" || e.CorrelationID != "" {
		fmt.Fprintf(&b, " (trace ID %s, correlation ID %s)", e.TraceID, e.CorrelationID)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Has reports whether Entra reported the AADSTS code.
func (e *TokenError) Has(code int) bool { return slices.Contains(e.Codes, code) }

// Temporary reports whether the same request may succeed later (Entra
// throttled or failed), as opposed to wrong or revoked credentials.
func (e *TokenError) Temporary() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// tokenFixes maps AADSTS codes to what the user must do.
var tokenFixes = []struct {
	code int
	fix  string
}{
	{7000215, "The client secret is wrong: paste the secret's Value, not its Secret ID " +
		"(Entra admin center > App registrations > Certificates & secrets)."},
	{7000222, "The client secret has expired: create a new secret under Certificates & secrets " +
		"and paste its Value."},
	{7000218, "No client secret was sent: set the client secret (its Value)."},
	{700016, "The application was not found in the tenant: check the Client ID and the Tenant ID."},
	{90002, "The tenant was not found: check the Tenant ID (and the authority URL for sovereign clouds)."},
	{70011, "The scope is invalid: it must be " + DefaultScope + "."},
	{7000112, "The application is disabled: enable the app registration in Entra."},
}

// Fix tells the user what to do about the error.
func (e *TokenError) Fix() string {
	for _, f := range tokenFixes {
		if e.Has(f.code) {
			return f.fix
		}
	}
	if e.Temporary() {
		return "Microsoft Entra could not issue a token right now: it will be retried."
	}
	return "Check the Tenant ID, Client ID and client secret of the Entra app registration."
}

var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

// newTokenError decodes Entra's failure body, redacting secret. The secret
// goes before anything is shortened: shortened first, a secret echoed
// across the cut left its beginning behind.
func newTokenError(re *oauth2.RetrieveError, secret string) *TokenError {
	hide := func(s string) string { return redactSecret(s, secret) }
	e := &TokenError{ErrorCode: hide(re.ErrorCode), Description: hide(re.ErrorDescription)}
	if re.Response != nil {
		e.Status = re.Response.StatusCode
		if d, ok := retryafter.Parse(re.Response.Header.Get("Retry-After"), time.Now()); ok {
			e.RetryAfter = d
		}
	}
	var body struct {
		Error         string `json:"error"`
		Description   string `json:"error_description"`
		Codes         []int  `json:"error_codes"`
		TraceID       string `json:"trace_id"`
		CorrelationID string `json:"correlation_id"`
	}
	if json.Unmarshal(re.Body, &body) == nil {
		e.ErrorCode = cmp.Or(hide(body.Error), e.ErrorCode)
		e.Description = cmp.Or(hide(body.Description), e.Description)
		e.Codes = body.Codes
		e.TraceID = clean(hide(body.TraceID), maxCorrIDLen)
		e.CorrelationID = clean(hide(body.CorrelationID), maxCorrIDLen)
	} else if e.Description == "" {
		e.Description = clean(hide(errtext.Body([]byte(hide(string(re.Body))))), maxMessageLen)
	}
	if len(e.Codes) == 0 {
		for _, m := range aadstsRE.FindAllStringSubmatch(e.Description, -1) {
			if n, err := strconv.Atoi(m[1]); err == nil {
				e.Codes = append(e.Codes, n)
			}
		}
	}
	e.ErrorCode = clean(e.ErrorCode, maxCodeLen)
	if len(e.Description) > maxMessageLen {
		e.Description = clean(e.Description, maxMessageLen)
	}
	e.Description = redact.Tokens(e.Description)
	return e
}

// redactSecret hides secret in s, as it is and as a form or a URL path
// escapes it (a proxy echoing the token request's body).
func redactSecret(s, secret string) string {
	if secret == "" {
		return s
	}
	for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		s = strings.ReplaceAll(s, form, "[redacted]")
	}
	return s
}
