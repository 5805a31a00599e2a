package ipaasclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// Defaults applied by New.
const (
	// DefaultBaseURL is iPaaS.com's production API host.
	DefaultBaseURL = "https://api.ipaas.com"
	// StagingBaseURL is iPaaS.com's staging API host.
	StagingBaseURL      = "https://stagingapi.ipaas.com"
	DefaultTimeout      = 30 * time.Second
	DefaultMaxBodyBytes = 8 << 20
)

// Limiter bounds the requests sent to iPaaS.com. Every request acquires
// before it is sent and calls release (when not nil) once its response body
// has been read. An error from Acquire (e.g. the context ended) is returned
// without sending the request. Implementations must be safe for concurrent
// use.
type Limiter interface {
	Acquire(ctx context.Context) (release func(), err error)
}

// Config configures a Client. The zero value of a field means its default.
// Printing a Config with any fmt verb shows the API key as "[redacted]".
type Config struct {
	// BaseURL is the API host, without a base path. Default DefaultBaseURL
	// ("https://api.ipaas.com"); staging is StagingBaseURL.
	BaseURL string
	// APIKey is the company API key, sent as "Authorization: Bearer <key>".
	// Required.
	APIKey string
	// ClientID is the company client id, sent as X-Client-Id when set.
	// Optional.
	ClientID string
	// SystemID is the iPaaS.com subscription id that stands for the BC
	// connection: the system_id of every external id link. Required, > 0.
	SystemID int
	// HTTPClient's Transport sends the requests. Default
	// http.DefaultTransport. The Client wraps it in its own http.Client
	// with Timeout, and never follows redirects (the key stays with
	// BaseURL's host).
	HTTPClient *http.Client
	// Timeout bounds one HTTP request, body included. Default 30s.
	Timeout time.Duration
	// Limiter bounds the requests sent; nil means unlimited.
	Limiter Limiter
	// MaxBodyBytes is the largest response body read. Default 8 MiB.
	MaxBodyBytes int64
}

// Format implements fmt.Formatter, so that no verb prints the API key.
func (c Config) Format(f fmt.State, _ rune) {
	key := ""
	if c.APIKey != "" {
		key = redacted
	}
	fmt.Fprintf(f, "{BaseURL:%s APIKey:%s ClientID:%s SystemID:%d Timeout:%s MaxBodyBytes:%d}",
		c.BaseURL, key, c.ClientID, c.SystemID, c.Timeout, c.MaxBodyBytes)
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("ipaasclient: config: "+format, a...))
	}
	u, err := url.Parse(c.BaseURL)
	switch {
	case err != nil:
		bad("BaseURL is not a URL (e.g. %s)", DefaultBaseURL)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.User != nil,
		u.RawQuery != "", u.Fragment != "", strings.Trim(u.Path, "/") != "":
		bad("BaseURL %q must be an http(s) host URL without user, path, query or fragment (e.g. %s)",
			u.Redacted(), DefaultBaseURL)
	}
	switch {
	case c.APIKey == "":
		bad("APIKey is required: a company API key from the iPaaS.com portal")
	case c.APIKey != strings.TrimSpace(c.APIKey) || strings.ContainsFunc(c.APIKey, unicode.IsControl):
		bad("APIKey must not hold control characters or surrounding spaces")
	}
	if strings.ContainsFunc(c.ClientID, unicode.IsControl) || c.ClientID != strings.TrimSpace(c.ClientID) {
		bad("ClientID %q must not hold control characters or surrounding spaces", c.ClientID)
	}
	if c.SystemID <= 0 {
		bad("SystemID %d must be > 0: the iPaaS.com subscription id of the BC connection", c.SystemID)
	}
	if c.Timeout < 0 {
		bad("Timeout %s must not be negative", c.Timeout)
	}
	if c.MaxBodyBytes < 0 {
		bad("MaxBodyBytes %d must not be negative", c.MaxBodyBytes)
	}
	return errors.Join(errs...)
}

// Client writes records to iPaaS.com. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   string // BaseURL without a trailing slash
	hc     *http.Client
	secret redactor
}

// New returns a Client for cfg after applying the defaults. It reports
// every invalid or missing field at once (errors.Join); no error holds the
// API key.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var rt http.RoundTripper = http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		rt = cfg.HTTPClient.Transport
	}
	return &Client{
		cfg:  cfg,
		base: strings.TrimRight(cfg.BaseURL, "/"),
		hc: &http.Client{
			Transport: rt,
			Timeout:   cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		secret: newRedactor(cfg.APIKey),
	}, nil
}

// SystemID is Config.SystemID.
func (c *Client) SystemID() int { return c.cfg.SystemID }

type correlationKey struct{}

// WithCorrelationID returns a context whose requests carry id in the
// x-correlation-id header (put the job id there). Control characters are
// dropped and id is cut to 128 bytes; an empty id sends no header.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

func correlationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	id = strings.Map(func(r rune) rune {
		if r > unicode.MaxASCII || unicode.IsControl(r) {
			return -1
		}
		return r
	}, id)
	return strings.TrimSpace(truncateBytes(id, 128))
}

func truncateBytes(s string, n int) string {
	if len(s) > n {
		return s[:n] // ASCII only here
	}
	return s
}

// do sends one request to {BaseURL}{path} with in (when not nil) as its JSON
// body and returns the 2xx body. Any other status is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "bcsync-ipaasclient")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.ClientID != "" {
		req.Header.Set("X-Client-Id", c.cfg.ClientID)
	}
	if id := correlationID(ctx); id != "" {
		req.Header.Set("x-correlation-id", id)
	}
	if c.cfg.Limiter != nil {
		release, err := c.cfg.Limiter.Acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("acquire request slot: %w", err)
		}
		if release != nil {
			defer release() // after the body is read and closed
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err // a *url.Error: method and URL, never headers
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	if int64(len(out)) > c.cfg.MaxBodyBytes {
		if ok {
			return nil, fmt.Errorf("HTTP %d response body exceeds MaxBodyBytes (%d bytes)", resp.StatusCode, c.cfg.MaxBodyBytes)
		}
		out = out[:c.cfg.MaxBodyBytes]
	}
	if !ok {
		e := decodeAPIError(resp.StatusCode, resp.Header, out, time.Now(), c.secret)
		c.observeThrottle(e)
		return nil, e
	}
	return out, nil
}

// ThrottleObserver may be implemented by a Limiter that wants to hear of a
// 429 or a Retry-After, e.g. to pause every worker sharing its budget.
type ThrottleObserver interface {
	Throttled(retryAfter time.Duration)
}

func (c *Client) observeThrottle(e *APIError) {
	if e.Status != http.StatusTooManyRequests && e.RetryAfter <= 0 {
		return
	}
	if o, ok := c.cfg.Limiter.(ThrottleObserver); ok {
		o.Throttled(e.RetryAfter)
	}
}
