package bcclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxClientStateLen is the longest clientState BC stores, in characters.
const MaxClientStateLen = 2048

// maxSubscriptionIDLen bounds a subscription id (BC's are GUID-like).
const maxSubscriptionIDLen = 128

// webhookSets are the API v2.0 entity sets BC sends webhooks for.
// Locations are not among them: poll them.
var webhookSets = map[string]bool{
	"customers": true, "items": true, "salesOrders": true, "shipmentMethods": true,
	"vendors": true, "paymentTerms": true, "currencies": true,
}

// Subscription is a BC webhook subscription: BC calls NotificationURL when
// a record of Resource changes, until ExpirationDateTime (3 days after it
// was created or renewed). Printing a Subscription with any fmt verb shows
// ClientState as "[redacted]".
type Subscription struct {
	// SubscriptionID is BC's id of the subscription.
	SubscriptionID string `json:"subscriptionId"`
	// NotificationURL is where BC posts notifications.
	NotificationURL string `json:"notificationUrl"`
	// Resource is the watched entity set, e.g.
	// "/api/v2.0/companies(<id>)/customers" (see Client.Resource).
	Resource string `json:"resource"`
	// UserID is the BC user that owns the subscription.
	UserID string `json:"userId"`
	// ClientState is the secret BC sends with every notification; verify it.
	ClientState string `json:"clientState"`
	// LastModifiedDateTime is when BC last changed the subscription.
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	// ExpirationDateTime is when BC stops notifying unless it is renewed.
	ExpirationDateTime time.Time `json:"expirationDateTime"`
	// ETag is the concurrency token RenewSubscription and
	// DeleteSubscription send as If-Match.
	ETag string `json:"@odata.etag"`
}

// Format implements fmt.Formatter, so that no verb prints the client state.
func (s Subscription) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{SubscriptionID:%s NotificationURL:%s Resource:%s UserID:%s ClientState:%s "+
		"LastModifiedDateTime:%s ExpirationDateTime:%s ETag:%s}",
		s.SubscriptionID, s.NotificationURL, s.Resource, s.UserID, redacted(s.ClientState),
		s.LastModifiedDateTime.Format(time.RFC3339), s.ExpirationDateTime.Format(time.RFC3339), s.ETag)
}

// SubscriptionRequest is what CreateSubscription asks BC for. Printing it
// with any fmt verb shows ClientState as "[redacted]".
type SubscriptionRequest struct {
	// NotificationURL is the absolute http(s) URL BC posts notifications
	// to. BC first calls it with ?validationToken=<token> and expects the
	// token back as plain text within about 5 seconds.
	NotificationURL string `json:"notificationUrl"`
	// Resource is the entity set to watch, as Client.Resource returns it.
	Resource string `json:"resource"`
	// ClientState is a secret of at most MaxClientStateLen characters that
	// BC sends with every notification. Optional but strongly advised.
	ClientState string `json:"clientState,omitempty"`
}

// Format implements fmt.Formatter, so that no verb prints the client state.
func (r SubscriptionRequest) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "{NotificationURL:%s Resource:%s ClientState:%s}",
		r.NotificationURL, r.Resource, redacted(r.ClientState))
}

func redacted(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}

// Resource returns the webhook resource of entitySet in the configured
// company, "/api/v2.0/companies(<companyId>)/<entitySet>", looking the
// company id up if needed. entitySet must be webhook-enabled: customers,
// items, salesOrders, shipmentMethods, vendors, paymentTerms or currencies
// (not locations: poll them). Errors: ErrInvalidRequest, and those of
// CompanyID.
func (c *Client) Resource(ctx context.Context, entitySet string) (string, error) {
	if !webhookSets[entitySet] {
		return "", fmt.Errorf("bcclient: webhook resource: %w: entity set %q is not webhook-enabled", ErrInvalidRequest, entitySet)
	}
	id, err := c.companyID(ctx)
	if err != nil {
		return "", fmt.Errorf("bcclient: webhook resource: %w", err)
	}
	return "/api/v2.0/companies(" + id + ")/" + entitySet, nil
}

// CreateSubscription subscribes r.NotificationURL to the changes of
// r.Resource (POST, answered 201 once BC's validation call to the URL
// succeeded). It is not retried after a failure BC may have processed
// (see RetryPolicy): on a transient error, ListSubscriptions shows whether
// it exists. Errors: ErrInvalidRequest, *APIError, *TokenError.
func (c *Client) CreateSubscription(ctx context.Context, r SubscriptionRequest) (Subscription, error) {
	wrap := func(err error) error { return fmt.Errorf("bcclient: create subscription: %w", err) }
	if err := r.validate(); err != nil {
		return Subscription{}, wrap(err)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return Subscription{}, wrap(err)
	}
	resp, err := c.do(ctx, request{method: http.MethodPost, url: c.subscriptionsURL(), body: body})
	if err != nil {
		return Subscription{}, wrap(err)
	}
	s, err := decodeSubscription(resp)
	if err != nil {
		return Subscription{}, wrap(err)
	}
	return s, nil
}

// RenewSubscription extends s by another 3 days (PATCH with If-Match:
// s.ETag; BC repeats the validation call to s.NotificationURL) and returns
// it as BC now has it, with its new ETag and ExpirationDateTime. It sends
// s.NotificationURL and s.ClientState when set.
//
// Errors: ErrInvalidKey (s.SubscriptionID), ErrInvalidRequest (no ETag:
// read the subscription, or set ETag to "*" to renew whatever its state);
// ErrChanged when s.ETag is stale (list the subscriptions and renew again);
// ErrNotFound when BC has no such subscription (any more: BC deletes one
// whose notifications kept failing): create it again; *APIError,
// *TokenError.
func (c *Client) RenewSubscription(ctx context.Context, s Subscription) (Subscription, error) {
	wrap := func(err error) error {
		return fmt.Errorf("bcclient: renew subscription %q: %w", s.SubscriptionID, err)
	}
	u, err := c.subscriptionURL(s)
	if err != nil {
		return Subscription{}, wrap(err)
	}
	body, err := json.Marshal(struct {
		NotificationURL string `json:"notificationUrl,omitempty"`
		ClientState     string `json:"clientState,omitempty"`
	}{s.NotificationURL, s.ClientState})
	if err != nil {
		return Subscription{}, wrap(err)
	}
	resp, err := c.do(ctx, request{method: http.MethodPatch, url: u, body: body, ifMatch: s.ETag})
	if err != nil {
		return Subscription{}, wrap(subscriptionNotFound(err))
	}
	renewed, err := decodeSubscription(resp)
	if err != nil {
		return Subscription{}, wrap(err)
	}
	return renewed, nil
}

// DeleteSubscription unsubscribes s (DELETE with If-Match: s.ETag).
// Errors: like RenewSubscription; ErrNotFound means it is already gone.
func (c *Client) DeleteSubscription(ctx context.Context, s Subscription) error {
	u, err := c.subscriptionURL(s)
	if err == nil {
		_, err = c.do(ctx, request{method: http.MethodDelete, url: u, ifMatch: s.ETag})
		err = subscriptionNotFound(err)
	}
	if err != nil {
		return fmt.Errorf("bcclient: delete subscription %q: %w", s.SubscriptionID, err)
	}
	return nil
}

// ListSubscriptions returns every subscription of the environment (BC
// allows 200) that the app registration can see. Errors: *APIError,
// *TokenError.
func (c *Client) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	var all []Subscription
	err := list(ctx, c, c.subscriptionsURL(), func(page []Subscription) error {
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bcclient: list subscriptions: %w", err)
	}
	return all, nil
}

// subscriptionsURL is {root}/api/v2.0/subscriptions.
func (c *Client) subscriptionsURL() string { return c.root + "/api/v2.0/subscriptions" }

// subscriptionURL is {root}/api/v2.0/subscriptions('<id>'), after checking
// s's id and ETag.
func (c *Client) subscriptionURL(s Subscription) (string, error) {
	if err := checkSubscriptionID(s.SubscriptionID); err != nil {
		return "", err
	}
	switch {
	case s.ETag == "":
		return "", fmt.Errorf("%w: no ETag: read the subscription first (or set ETag to \"*\")", ErrInvalidRequest)
	case strings.ContainsFunc(s.ETag, unicode.IsControl) || !utf8.ValidString(s.ETag):
		return "", fmt.Errorf("%w: ETag %q is not a header value", ErrInvalidRequest, s.ETag)
	}
	return c.subscriptionsURL() + "('" + s.SubscriptionID + "')", nil
}

// checkSubscriptionID accepts a GUID-like id: 1 to 128 ASCII letters,
// digits and hyphens.
func checkSubscriptionID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty subscription id", ErrInvalidKey)
	case len(id) > maxSubscriptionIDLen:
		return fmt.Errorf("%w: subscription id longer than %d characters", ErrInvalidKey, maxSubscriptionIDLen)
	case strings.IndexFunc(id, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '-')
	}) >= 0:
		return fmt.Errorf("%w: subscription id %q has characters other than letters, digits and '-'", ErrInvalidKey, id)
	}
	return nil
}

// validate checks r before it is sent.
func (r SubscriptionRequest) validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, a...)...))
	}
	u, err := url.Parse(r.NotificationURL)
	switch {
	case r.NotificationURL == "":
		bad("NotificationURL is required")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		strings.ContainsFunc(r.NotificationURL, unicode.IsControl):
		bad("NotificationURL must be an absolute http(s) URL without user info")
	}
	switch {
	case r.Resource == "":
		bad("Resource is required (see Client.Resource)")
	case !strings.HasPrefix(r.Resource, "/api/") && !strings.HasPrefix(r.Resource, "api/"),
		strings.ContainsFunc(r.Resource, unicode.IsControl):
		bad("Resource %q must be an API path such as /api/v2.0/companies(<id>)/customers (see Client.Resource)", r.Resource)
	}
	switch {
	case !utf8.ValidString(r.ClientState):
		bad("ClientState is not valid UTF-8")
	case utf8.RuneCountInString(r.ClientState) > MaxClientStateLen:
		bad("ClientState is longer than %d characters", MaxClientStateLen)
	}
	return errors.Join(errs...)
}

// subscriptionNotFound marks a 404 from a subscriptions('<id>') request as
// ErrNotFound, unless BC said the environment or company is what is missing.
func subscriptionNotFound(err error) error {
	var e *APIError
	if errors.As(err, &e) && e.Status == http.StatusNotFound && !errors.Is(err, ErrNotFound) &&
		!(strings.HasPrefix(e.Code, "Internal_") && strings.HasSuffix(e.Code, "NotFound")) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// decodeSubscription decodes a subscription answered by BC.
func decodeSubscription(body []byte) (Subscription, error) {
	var s Subscription
	if err := decodeJSON(body, &s); err != nil {
		return Subscription{}, err
	}
	return s, nil
}
