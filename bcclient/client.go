package bcclient

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/oauth2"
)

// Defaults applied by New.
const (
	DefaultAPIURL            = "https://api.businesscentral.dynamics.com"
	DefaultTimeout           = 60 * time.Second
	DefaultPageSize          = 1000
	DefaultPriceGroupService = "CustomerPriceGroups"
	DefaultMaxBodyBytes      = 64 << 20

	// MaxPageSize is the largest page BC serves (and the largest PageSize).
	MaxPageSize = 20000
)

// Limiter bounds the requests sent to BC. Every attempt of a request
// (retries included) acquires before it is sent and calls release once its
// response body has been read. An error from Acquire (e.g. the context
// ended) is returned without sending the request, and is not retried.
// Implementations must be safe for concurrent use.
type Limiter interface {
	Acquire(ctx context.Context) (release func(), err error)
}

// ThrottleObserver may be implemented by a Limiter that wants to know when
// BC throttles: Throttled is called on every answer that is a 429 (or
// Application_TooManyRequests) or carries a Retry-After header, with the
// Retry-After delay (zero when absent), before the client waits. The budget
// belongs to the app registration, so a fleet-wide limiter can pause every
// worker. It must not block, and must be safe for concurrent use.
type ThrottleObserver interface {
	Throttled(retryAfter time.Duration)
}

// Config configures a Client. The zero value of a field means its default.
type Config struct {
	// APIURL is the BC API host. Default DefaultAPIURL
	// ("https://api.businesscentral.dynamics.com").
	APIURL string
	// TenantID is the Microsoft Entra tenant (directory) id. Required.
	TenantID string
	// Environment is the BC environment name, e.g. "Production" or
	// "Sandbox". Required.
	Environment string
	// CompanyName is the BC company's Name, exactly as on BC's Companies
	// page. Required: the company id is looked up from it on first use, and
	// OData V4 web services are addressed by it.
	CompanyName string
	// TokenSource supplies the bearer tokens (see NewTokenSource). Required.
	TokenSource oauth2.TokenSource
	// Limiter bounds the requests to BC. Default nil: unlimited.
	Limiter Limiter
	// HTTPClient supplies the base http.RoundTripper under the
	// authenticating transport. Default: http.DefaultTransport. Its Timeout,
	// Jar and CheckRedirect are not used: see Timeout; redirects are never
	// followed (they would carry the token).
	HTTPClient *http.Client
	// Timeout bounds one HTTP request, from sending it to reading the whole
	// response body. Default DefaultTimeout (60s).
	Timeout time.Duration
	// PageSize is the largest page requested, sent as
	// "Prefer: odata.maxpagesize=N". Default DefaultPageSize (1000); at
	// most MaxPageSize (20000).
	PageSize int
	// PriceGroupService is the name of the OData V4 web service the customer
	// published for Customer Price Groups. Default
	// DefaultPriceGroupService ("CustomerPriceGroups").
	PriceGroupService string
	// MaxBodyBytes caps a response body; a larger one is an error. Default
	// DefaultMaxBodyBytes (64 MiB).
	MaxBodyBytes int64
	// Retry says how throttled and transient failures are retried inside
	// the client. Defaults: see RetryPolicy.
	Retry RetryPolicy
}

// Client reads one company of one BC environment and manages the
// environment's webhook subscriptions. It is safe for concurrent use.
//
// Every attempt of a request acquires the Limiter, then a token from the
// TokenSource. Failures that may pass are retried as Config.Retry says. A
// 401 from BC is retried once at once, whatever the method (BC did not
// process the request), if the TokenSource implements TokenInvalidator: the
// rejected token is invalidated first, so the retry carries a new one. A
// second 401 is returned as it is.
type Client struct {
	cfg  Config
	api  *url.URL // parsed Config.APIURL
	root string   // {APIURL}/v2.0/{tenant}/{environment}
	hc   *http.Client

	companyIDCache atomic.Pointer[string]
	companyLock    chan struct{} // held while the company id is looked up

	// now and sleep are the clock of the retry loop; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Client for cfg after applying the defaults. It reports every
// invalid or missing field at once (errors.Join).
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	api, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var base http.RoundTripper = http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		base = cfg.HTTPClient.Transport
	}
	c := &Client{
		cfg: cfg,
		api: api,
		root: strings.TrimRight(api.String(), "/") + "/v2.0/" +
			url.PathEscape(cfg.TenantID) + "/" + url.PathEscape(cfg.Environment),
		// The bearer token is set per attempt (see attempt), not by an
		// oauth2.Transport, so that a token BC rejects can be invalidated.
		hc: &http.Client{
			Transport: roundTripper{base},
			Timeout:   cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		companyLock: make(chan struct{}, 1),
		now:         time.Now,
		sleep:       sleep,
	}
	return c, nil
}

var (
	_ http.RoundTripper  = roundTripper{}
	_ oauth2.TokenSource = (*earlyRefresh)(nil)
	_ error              = (*APIError)(nil)
	_ error              = (*TokenError)(nil)
)

// roundTripper hides every method of its RoundTripper but RoundTrip (such
// as a deprecated CancelRequest that net/http would call on a timeout).
type roundTripper struct{ rt http.RoundTripper }

func (t roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return t.rt.RoundTrip(r) }

func (cfg *Config) setDefaults() {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.PriceGroupService == "" {
		cfg.PriceGroupService = DefaultPriceGroupService
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	cfg.Retry.setDefaults()
}

func (cfg *Config) validate() (*url.URL, error) {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("bcclient: config: "+format, a...))
	}
	api, err := url.Parse(cfg.APIURL)
	switch {
	case err != nil:
		bad("APIURL is not a URL (e.g. %s)", DefaultAPIURL)
	case api.Scheme != "https" && api.Scheme != "http", api.Host == "", api.User != nil,
		api.RawQuery != "", api.Fragment != "":
		bad("APIURL %q must be an absolute http(s) URL without user, query or fragment (e.g. %s)",
			api.Redacted(), DefaultAPIURL)
	}
	if cfg.TokenSource == nil {
		bad("TokenSource is required (see NewTokenSource)")
	}
	for _, f := range []struct{ name, value, hint string }{
		{"TenantID", cfg.TenantID, "the Microsoft Entra tenant (directory) id"},
		{"Environment", cfg.Environment, `the BC environment name, e.g. "Production"`},
		{"PriceGroupService", cfg.PriceGroupService, "the OData V4 web service name published in BC"},
	} {
		switch {
		case f.value == "":
			bad("%s is required: %s", f.name, f.hint)
		case !validSegment(f.value):
			bad("%s %q must not contain '/', '?', '#', '\\', quotes or control characters: %s",
				f.name, f.value, f.hint)
		}
	}
	switch {
	case cfg.CompanyName == "":
		bad("CompanyName is required: the Name on BC's Companies page")
	case strings.ContainsFunc(cfg.CompanyName, unicode.IsControl):
		bad("CompanyName %q must not contain control characters", cfg.CompanyName)
	}
	if cfg.PageSize < 1 || cfg.PageSize > MaxPageSize {
		bad("PageSize %d must be between 1 and %d", cfg.PageSize, MaxPageSize)
	}
	if cfg.Timeout < 0 {
		bad("Timeout %s must not be negative", cfg.Timeout)
	}
	if cfg.MaxBodyBytes < 0 {
		bad("MaxBodyBytes %d must not be negative", cfg.MaxBodyBytes)
	}
	errs = append(errs, cfg.Retry.validate()...)
	return api, errors.Join(errs...)
}

// validSegment reports whether s can be one path segment of a URL once
// escaped, without changing the meaning of the path around it.
func validSegment(s string) bool {
	return s != "." && s != ".." &&
		!strings.ContainsAny(s, `/?#\'"`) &&
		!strings.ContainsFunc(s, unicode.IsControl)
}

// CompanyID returns the id (a GUID) of Config.CompanyName, looking it up on
// the first call and caching it. A company that does not exist is an
// *APIError with Code "Internal_CompanyNotFound" (not ErrNotFound: it is a
// configuration problem, not a missing record).
func (c *Client) CompanyID(ctx context.Context) (string, error) {
	id, err := c.companyID(ctx)
	if err != nil {
		return "", fmt.Errorf("bcclient: %w", err)
	}
	return id, nil
}

// companyID is CompanyID without the package prefix on its errors.
func (c *Client) companyID(ctx context.Context) (string, error) {
	if id := c.companyIDCache.Load(); id != nil {
		return *id, nil
	}
	select {
	case c.companyLock <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("look up company %q: %w", c.cfg.CompanyName, ctx.Err())
	}
	defer func() { <-c.companyLock }()
	if id := c.companyIDCache.Load(); id != nil {
		return *id, nil
	}
	id, err := c.lookUpCompany(ctx)
	if err != nil {
		return "", fmt.Errorf("look up company %q: %w", c.cfg.CompanyName, err)
	}
	c.companyIDCache.Store(&id)
	return id, nil
}

func (c *Client) lookUpCompany(ctx context.Context) (string, error) {
	var page collection[Company]
	u := c.root + "/api/v2.0/companies?" + filterQuery("name", c.cfg.CompanyName)
	if err := c.get(ctx, u, false, &page); err != nil {
		return "", err
	}
	var found *Company
	for i := range page.Value {
		if page.Value[i].Name == c.cfg.CompanyName {
			found = &page.Value[i]
			break
		}
	}
	if found == nil && len(page.Value) == 1 {
		found = &page.Value[0] // the server's comparison is authoritative
	}
	if found == nil {
		return "", &APIError{
			Status: http.StatusNotFound,
			Code:   "Internal_CompanyNotFound",
			Message: fmt.Sprintf("no company named %q in environment %q of tenant %s: "+
				"set the company name exactly as on BC's Companies page",
				c.cfg.CompanyName, c.cfg.Environment, c.cfg.TenantID),
		}
	}
	if !IsGUID(found.ID) {
		return "", badResponse("BC returned company id %q, which is not a GUID", found.ID)
	}
	return found.ID, nil
}

// collection is one page of an OData collection.
type collection[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"@odata.nextLink"`
}

// request is one request to BC, sent by do.
type request struct {
	method  string // GET when empty
	url     string
	body    []byte // JSON, nil for none
	ifMatch string // the If-Match header, for PATCH and DELETE
	paged   bool   // send "Prefer: odata.maxpagesize=N"
}

// idempotent reports whether sending r twice has the effect of sending it
// once: a GET, or a PATCH or DELETE guarded by If-Match (a second one that
// arrives after the first succeeded fails with ErrChanged or 404 instead of
// writing again).
func (r *request) idempotent() bool {
	switch r.method {
	case "", http.MethodGet:
		return true
	case http.MethodPatch, http.MethodDelete:
		return r.ifMatch != ""
	}
	return false
}

// get sends a GET to rawURL and decodes the JSON body into v.
func (c *Client) get(ctx context.Context, rawURL string, paged bool, v any) error {
	body, err := c.do(ctx, request{url: rawURL, paged: paged})
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes a 2xx response body.
func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return badResponse("decode response: %w", err)
	}
	return nil
}

// do sends r, retrying it as RetryPolicy and the 401 rule say, and returns
// the body of its 2xx response. Any other status is an *APIError; a failed
// token request is a *TokenError.
func (c *Client) do(ctx context.Context, r request) ([]byte, error) {
	start := c.now()
	var bo *backoff.ExponentialBackOff
	refreshed := false
	for {
		body, tok, retry, err := c.attempt(ctx, r)
		if err == nil {
			return body, nil
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			c.observe(apiErr)
			if apiErr.Status == http.StatusUnauthorized && !refreshed {
				// The token was revoked or expired early: drop it and try
				// once more with a new one. BC did not process the request.
				if inv, ok := c.cfg.TokenSource.(TokenInvalidator); ok && tok != nil {
					refreshed = true
					inv.Invalidate(tok)
					continue
				}
			}
		}
		if !retry || c.cfg.Retry.Disabled || ctx.Err() != nil {
			return nil, err
		}
		if bo == nil {
			bo = c.cfg.Retry.backOff()
		}
		wait := min(bo.NextBackOff(), c.cfg.Retry.Max)
		var tokErr *TokenError
		switch {
		case apiErr != nil:
			wait = max(wait, apiErr.RetryAfter)
		case errors.As(err, &tokErr):
			// Entra throttling the token request: the fleet's other
			// workers wait on the shared cache meanwhile.
			wait = max(wait, tokErr.RetryAfter)
		}
		if wait > c.cfg.Retry.MaxElapsed-c.now().Sub(start) { // no overflow for a huge Retry-After
			return nil, err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err // the context would end during the wait
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("%w; retry stopped: %w", err, serr)
		}
	}
}

// observe tells a Limiter that implements ThrottleObserver that BC
// throttled or asked for a pause.
func (c *Client) observe(e *APIError) {
	if !e.throttled() && e.RetryAfter <= 0 {
		return
	}
	if o, ok := c.cfg.Limiter.(ThrottleObserver); ok {
		o.Throttled(e.RetryAfter)
	}
}

// attempt sends r once. tok is the token sent (nil if none was); retry
// reports whether sending r again may succeed and is safe.
func (c *Client) attempt(ctx context.Context, r request) (body []byte, tok *oauth2.Token, retry bool, err error) {
	// A grant of the limiter must be followed by the request at once, or
	// BC, counting arrivals, sees the budget exceeded: so a slow token fetch
	// happens before the limiter. The token is asked for again after the
	// wait (a cache hit), because the wait may outlast it.
	if c.cfg.Limiter != nil {
		if _, err := c.cfg.TokenSource.Token(); err != nil {
			err = tokenSourceError(err)
			return nil, nil, isTransient(err), err
		}
		release, err := c.cfg.Limiter.Acquire(ctx)
		if err != nil {
			return nil, nil, false, fmt.Errorf("acquire request slot: %w", err)
		}
		if release != nil {
			defer release() // runs after the body is read and closed
		}
	}
	tok, err = c.cfg.TokenSource.Token()
	if err != nil {
		// Nothing was sent to BC: retrying is safe whatever the method.
		err = tokenSourceError(err)
		return nil, nil, isTransient(err), err
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, nil, false, &configError{errors.New("the token source returned no access token")}
	}
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, cmp.Or(r.method, http.MethodGet), r.url, rd)
	if err != nil {
		return nil, nil, false, err
	}
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	if r.paged {
		req.Header.Set("Prefer", "odata.maxpagesize="+strconv.Itoa(c.cfg.PageSize))
	}
	tok.SetAuthHeader(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		// The request may have reached BC: only an idempotent one is sent
		// again.
		return nil, tok, r.idempotent() && isTransient(err), err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, tok, r.idempotent(), fmt.Errorf("read response: %w", err)
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return nil, tok, false, badResponse("response body exceeds MaxBodyBytes (%d bytes)", c.cfg.MaxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := decodeAPIError(resp.StatusCode, resp.Header, body, c.now())
		return nil, tok, e.Temporary() && (r.idempotent() || unprocessed(e)), e
	}
	return body, tok, false, nil
}

// unprocessed reports whether BC certainly did not process the request
// that e answers, so that even a POST may be sent again: it was throttled
// (429), or refused with 503 and a Retry-After.
func unprocessed(e *APIError) bool {
	return e.throttled() || (e.Status == http.StatusServiceUnavailable && e.RetryAfter > 0)
}

// tokenSourceError turns a failed token request into a *TokenError and
// returns other errors as they are.
func tokenSourceError(err error) error {
	var te *TokenError
	if errors.As(err, &te) {
		return err
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return newTokenError(re, "")
	}
	return err
}

// nextLink checks a @odata.nextLink against the API host and returns the
// URL to request. A relative link is resolved against the current request.
func (c *Client) nextLink(current, link string) (string, error) {
	cur, err := url.Parse(current)
	if err != nil {
		return "", err
	}
	ref, err := url.Parse(link)
	if err != nil {
		return "", badResponse("malformed @odata.nextLink: %w", err)
	}
	next := cur.ResolveReference(ref)
	if next.User != nil || !strings.EqualFold(next.Scheme, c.api.Scheme) || hostPort(next) != hostPort(c.api) {
		return "", fmt.Errorf("%w: %s://%s is not %s://%s",
			ErrForeignNextLink, next.Scheme, next.Host, c.api.Scheme, c.api.Host)
	}
	s := next.String()
	if s == current {
		return "", badResponse("@odata.nextLink repeats the page it is on: %s", s)
	}
	return s, nil
}

// hostPort is u's host and port, lower case, with the scheme's default port
// made explicit.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// decodePage decodes one page of a collection read from current and
// returns its rows and the checked URL of the next page ("" on the last).
func decodePage[T any](c *Client, current string, body []byte) ([]T, string, error) {
	var page collection[T]
	if err := decodeJSON(body, &page); err != nil {
		return nil, "", err
	}
	if page.NextLink == "" {
		return page.Value, "", nil
	}
	next, err := c.nextLink(current, page.NextLink)
	return page.Value, next, err
}

// list requests first and every page after it, calling fn once per page.
func list[T any](ctx context.Context, c *Client, first string, fn func([]T) error, opts ...ListOption) error {
	var o listOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.from != "" {
		from, err := c.resumeLink(o.from)
		if err != nil {
			return err
		}
		first = from
	}
	seen := map[string]bool{}
	for next := first; next != ""; {
		body, err := c.do(ctx, request{url: next, paged: true})
		if err != nil {
			return err
		}
		seen[next] = true
		rows, link, err := decodePage[T](c, next, body)
		if err != nil {
			return err
		}
		if seen[link] {
			// A cycle (page 1 -> 2 -> 1): read for ever, each page paid
			// from the fleet's budget and handed to fn again.
			return badResponse("@odata.nextLink leads back to a page already read: %s", link)
		}
		if err := fn(rows); err != nil {
			return err
		}
		if o.afterPage != nil {
			if err := o.afterPage(link); err != nil {
				return err
			}
		}
		next = link
	}
	return nil
}

// ListOption adjusts a listing (ListX and DeltaX).
type ListOption func(*listOptions)

type listOptions struct {
	from      string
	afterPage func(next string) error
}

// ResumeAt starts a listing at link, a next-page link that AfterPage handed
// to an earlier listing of the same entity set, instead of at the first
// page: a listing interrupted (a worker killed) resumes without reading its
// pages again. The link must point at the client's API host.
func ResumeAt(link string) ListOption { return func(o *listOptions) { o.from = link } }

// AfterPage calls fn after each page that the listing's own fn accepted,
// with the link of the next page ("" after the last one): save it as the
// listing's checkpoint. An error from fn ends the listing with that error.
func AfterPage(fn func(next string) error) ListOption {
	return func(o *listOptions) { o.afterPage = fn }
}

// ErrBadResumeLink is returned, before any request, by a listing given a
// saved next-page link (ResumeAt) that this client cannot follow: not an
// absolute URL, or not on its API host (api_url changed since it was
// saved). Start the listing over instead.
var ErrBadResumeLink = errors.New("bcclient: the saved next-page link cannot be followed")

// resumeLink checks a saved next-page link, as nextLink checks BC's.
func (c *Client) resumeLink(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() {
		return "", fmt.Errorf("bcclient: resume at %q: %w: not an absolute URL", link, ErrBadResumeLink)
	}
	if u.User != nil || !strings.EqualFold(u.Scheme, c.api.Scheme) || hostPort(u) != hostPort(c.api) {
		return "", fmt.Errorf("bcclient: resume: %w: %w: %s://%s is not %s://%s", ErrBadResumeLink, ErrForeignNextLink, u.Scheme, u.Host, c.api.Scheme, c.api.Host)
	}
	return u.String(), nil
}

// getOne requests one entity.
func getOne[T any](ctx context.Context, c *Client, u string) (T, error) {
	var v T
	err := c.get(ctx, u, false, &v)
	return v, err
}

// getFiltered requests a collection with filter (an OData expression such
// as "code eq 'X'", unescaped) and the query suffix extra, and returns its
// only row. No row is ErrNotFound.
func getFiltered[T any](ctx context.Context, c *Client, base, filter, extra string) (T, error) {
	var page collection[T]
	var zero T
	if err := c.get(ctx, base+"?$filter="+queryEscape(filter)+extra, false, &page); err != nil {
		return zero, err
	}
	switch len(page.Value) {
	case 0:
		return zero, fmt.Errorf("no row with %s: %w", filter, ErrNotFound)
	case 1:
		return page.Value[0], nil
	default:
		return zero, badResponse("%d rows with %s, expected one", len(page.Value), filter)
	}
}
