package bcclient

import (
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

// Limiter bounds the requests sent to BC. Every request acquires before it is
// sent and calls release once its response body has been read. An error from
// Acquire (e.g. the context ended) is returned without sending the request.
// Implementations must be safe for concurrent use.
type Limiter interface {
	Acquire(ctx context.Context) (release func(), err error)
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
}

// Client reads one company of one BC environment. It is safe for concurrent
// use.
type Client struct {
	cfg  Config
	api  *url.URL // parsed Config.APIURL
	root string   // {APIURL}/v2.0/{tenant}/{environment}
	hc   *http.Client

	companyIDCache atomic.Pointer[string]
	companyLock    chan struct{} // held while the company id is looked up
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
		hc: &http.Client{
			Transport: roundTripper{&oauth2.Transport{Source: cfg.TokenSource, Base: base}},
			Timeout:   cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		companyLock: make(chan struct{}, 1),
	}
	return c, nil
}

var (
	_ http.RoundTripper  = roundTripper{}
	_ oauth2.TokenSource = (*earlyRefresh)(nil)
	_ error              = (*APIError)(nil)
	_ error              = (*TokenError)(nil)
)

// roundTripper hides every method of its RoundTripper but RoundTrip: when
// Client.Timeout fires, net/http would call oauth2.Transport's deprecated
// CancelRequest, which logs.
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
	if err := c.do(ctx, u, false, &page); err != nil {
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
		return "", fmt.Errorf("BC returned company id %q, which is not a GUID", found.ID)
	}
	return found.ID, nil
}

// collection is one page of an OData collection.
type collection[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"@odata.nextLink"`
}

// do sends one GET to rawURL and decodes a 2xx JSON body into v. Any other
// status is an *APIError; a failed token request is a *TokenError. paged adds
// the Prefer header that sets the page size.
func (c *Client) do(ctx context.Context, rawURL string, paged bool, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if paged {
		req.Header.Set("Prefer", "odata.maxpagesize="+strconv.Itoa(c.cfg.PageSize))
	}
	if c.cfg.Limiter != nil {
		release, err := c.cfg.Limiter.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquire request slot: %w", err)
		}
		if release != nil {
			defer release() // runs after the body is read and closed
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return fmt.Errorf("response body exceeds MaxBodyBytes (%d bytes)", c.cfg.MaxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp.StatusCode, resp.Header, body, time.Now())
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode HTTP %d response: %w", resp.StatusCode, err)
	}
	return nil
}

// transportError turns a failed token request into a *TokenError and
// returns other errors as they are.
func transportError(err error) error {
	var te *TokenError
	if errors.As(err, &te) {
		return te
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
		return "", fmt.Errorf("malformed @odata.nextLink: %w", err)
	}
	next := cur.ResolveReference(ref)
	if next.User != nil || !strings.EqualFold(next.Scheme, c.api.Scheme) || hostPort(next) != hostPort(c.api) {
		return "", fmt.Errorf("%w: %s://%s is not %s://%s",
			ErrForeignNextLink, next.Scheme, next.Host, c.api.Scheme, c.api.Host)
	}
	s := next.String()
	if s == current {
		return "", fmt.Errorf("@odata.nextLink repeats the page it is on: %s", s)
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

// list requests first and every page after it, calling fn once per page.
func list[T any](ctx context.Context, c *Client, first string, fn func([]T) error) error {
	next := first
	for {
		var page collection[T]
		if err := c.do(ctx, next, true, &page); err != nil {
			return err
		}
		if err := fn(page.Value); err != nil {
			return err
		}
		if page.NextLink == "" {
			return nil
		}
		link, err := c.nextLink(next, page.NextLink)
		if err != nil {
			return err
		}
		next = link
	}
}

// getOne requests one entity.
func getOne[T any](ctx context.Context, c *Client, u string) (T, error) {
	var v T
	err := c.do(ctx, u, false, &v)
	return v, err
}

// getFiltered requests a collection filtered with field eq key and returns
// its only row. No row is ErrNotFound.
func getFiltered[T any](ctx context.Context, c *Client, base, field, key string) (T, error) {
	u := base + "?" + filterQuery(field, key)
	var page collection[T]
	var zero T
	if err := c.do(ctx, u, false, &page); err != nil {
		return zero, err
	}
	switch len(page.Value) {
	case 0:
		return zero, fmt.Errorf("no row with %s %s: %w", field, quoteODataString(key), ErrNotFound)
	case 1:
		return page.Value[0], nil
	default:
		return zero, fmt.Errorf("%d rows with %s %s, expected one", len(page.Value), field, quoteODataString(key))
	}
}
