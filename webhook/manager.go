package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/config"
	"github.com/rs/zerolog"
)

// Defaults of ManagerConfig and Managed.
const (
	DefaultInterval      = time.Hour
	DefaultRetryInterval = 5 * time.Minute
	DefaultRenewBefore   = 24 * time.Hour
)

// BC is the part of *bcclient.Client the Manager uses.
type BC interface {
	Resource(ctx context.Context, entitySet string) (string, error)
	ListSubscriptions(ctx context.Context) ([]bcclient.Subscription, error)
	CreateSubscription(ctx context.Context, r bcclient.SubscriptionRequest) (bcclient.Subscription, error)
	RenewSubscription(ctx context.Context, s bcclient.Subscription) (bcclient.Subscription, error)
	DeleteSubscription(ctx context.Context, s bcclient.Subscription) error
}

var _ BC = (*bcclient.Client)(nil)

// Managed is one bcsync subscription whose BC webhook subscriptions the
// Manager keeps: one per entity set of Resources, posting to
// NotificationURL with ClientState.
type Managed struct {
	// Subscription is the bcsync subscription name. Required.
	Subscription string
	// BC is the subscription's BC client. Required.
	BC BC
	// NotificationURL is where BC posts. Required. BC's subscriptions with
	// this URL are the Manager's: those of an entity set not in Resources
	// are deleted.
	NotificationURL string
	// ClientState is sent to BC, which sends it back with every
	// notification. Required.
	ClientState config.Secret
	// Resources are the entity sets to subscribe to (see
	// config.Webhook.Resources). At least one.
	Resources []string
	// RenewBefore is how long before its expiry a subscription is renewed.
	// Default DefaultRenewBefore (24h).
	RenewBefore time.Duration
}

// ManagedFromConfig returns the Managed of sub (its webhook settings) with
// bc as its client.
func ManagedFromConfig(sub *config.Subscription, bc BC) Managed {
	return Managed{
		Subscription: sub.Name, BC: bc, NotificationURL: sub.Webhook.NotificationURL,
		ClientState: sub.Webhook.ClientState, Resources: slices.Clone(sub.Webhook.Resources),
		RenewBefore: sub.Webhook.RenewBefore,
	}
}

// ManagerConfig configures a Manager. The zero value of a field means its
// default.
type ManagerConfig struct {
	// Subscriptions are the subscriptions managed; at least one.
	Subscriptions []Managed
	// Interval is the time between two passes. Default DefaultInterval
	// (1h); keep it well below every RenewBefore.
	Interval time.Duration
	// RetryInterval is the time before the next pass after a pass that
	// failed, at most Interval. Default DefaultRetryInterval (5m).
	RetryInterval time.Duration
	// Now is the clock that says when a subscription is due for renewal.
	// Default time.Now.
	Now func() time.Time
	// Log receives what each pass changed, and its failures with the fix.
	// The zero value logs nothing.
	Log zerolog.Logger
}

// Report counts what a pass did to BC's webhook subscriptions.
type Report struct {
	// Created counts subscriptions created, Recreated those of them that
	// replace one BC dropped since the previous pass.
	Created, Recreated int
	// Renewed counts subscriptions renewed (expiring within RenewBefore,
	// or with another clientState than the configured one).
	Renewed int
	// Deleted counts subscriptions of this notification URL that no
	// configured entity set wants, or duplicates.
	Deleted int
	// Kept counts subscriptions left as they were.
	Kept int
}

func (r *Report) add(o Report) {
	r.Created += o.Created
	r.Recreated += o.Recreated
	r.Renewed += o.Renewed
	r.Deleted += o.Deleted
	r.Kept += o.Kept
}

// Manager keeps BC's webhook subscriptions of each Managed in place: on each
// pass it lists them, creates the missing ones, renews those expiring
// within RenewBefore, and deletes the extra ones. A failure is logged, with
// the fix when an operator must act, and retried on the next pass; it never
// stops the Receiver.
type Manager struct {
	cfg ManagerConfig
	log zerolog.Logger

	mu    sync.Mutex        // one pass at a time
	known map[string]string // BC subscription id by bcsync subscription and entity set, from the last pass
}

// NewManager checks cfg, applies its defaults and returns a Manager. It
// reports every problem at once.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	var errs []error
	if len(cfg.Subscriptions) == 0 {
		errs = append(errs, errors.New("webhook: manager: no subscription to manage"))
	}
	for i := range cfg.Subscriptions {
		ms := &cfg.Subscriptions[i]
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("webhook: manager: subscription %q: "+format, append([]any{ms.Subscription}, a...)...))
		}
		if ms.Subscription == "" {
			bad("no name")
		}
		if ms.BC == nil {
			bad("no BC client")
		}
		if u, err := url.Parse(ms.NotificationURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad("the notification URL must be an absolute http(s) URL")
		}
		if ms.ClientState.IsZero() {
			bad("a clientState is required")
		}
		if len(ms.Resources) == 0 {
			bad("no resources")
		}
		if ms.RenewBefore <= 0 {
			ms.RenewBefore = DefaultRenewBefore
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	cfg.RetryInterval = min(cfg.RetryInterval, cfg.Interval)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, log: cfg.Log.With().Str("component", "webhook-manager").Logger(), known: map[string]string{}}, nil
}

// Run makes a pass at once, then one every Interval (RetryInterval after a
// pass that failed), until ctx ends; it then returns nil.
func (m *Manager) Run(ctx context.Context) error {
	for {
		_, err := m.Sync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := m.cfg.Interval
		if err != nil {
			wait = m.cfg.RetryInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Sync makes one pass over every managed subscription and reports what it
// changed. A subscription that fails does not stop the others; the errors
// are logged and returned joined.
func (m *Manager) Sync(ctx context.Context) (Report, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var (
		total Report
		errs  []error
	)
	for i := range m.cfg.Subscriptions {
		ms := &m.cfg.Subscriptions[i]
		r, err := m.syncOne(ctx, ms)
		total.add(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook: subscription %s: %w", ms.Subscription, err))
		}
	}
	return total, errors.Join(errs...)
}

// syncOne makes the pass of one subscription.
func (m *Manager) syncOne(ctx context.Context, ms *Managed) (Report, error) {
	var rep Report
	log := m.log.With().Str("subscription", ms.Subscription).Logger()
	fail := func(what string, err error) error {
		ev := log.Error().Err(err)
		if fix := Fix(err, ms.NotificationURL); fix != "" {
			ev = ev.Str("fix", fix)
		}
		ev.Msg("webhook subscriptions: " + what + " failed")
		return fmt.Errorf("%s: %w", what, err)
	}
	all, err := ms.BC.ListSubscriptions(ctx)
	if err != nil {
		return rep, fail("list", err)
	}
	var ours []bcclient.Subscription
	for _, s := range all {
		if config.SameURL(s.NotificationURL, ms.NotificationURL) {
			ours = append(ours, s)
		}
	}
	handled := make([]bool, len(ours))
	var errs []error
	unresolved := false // a configured set's resource is unknown this pass
	for _, set := range ms.Resources {
		slog := log.With().Str("entity_set", set).Logger()
		resource, err := ms.BC.Resource(ctx, set)
		if err != nil {
			unresolved = true
			errs = append(errs, fail("resource of "+set, err))
			continue
		}
		var matches []bcclient.Subscription
		for i, s := range ours {
			if sameResource(s.Resource, resource) {
				handled[i] = true
				matches = append(matches, s)
			}
		}
		// Keep the one that lives longest; the others would notify twice.
		slices.SortStableFunc(matches, func(a, b bcclient.Subscription) int {
			return b.ExpirationDateTime.Compare(a.ExpirationDateTime)
		})
		for _, extra := range matches[min(1, len(matches)):] {
			if err := ms.BC.DeleteSubscription(ctx, extra); err != nil && !errors.Is(err, bcclient.ErrNotFound) {
				errs = append(errs, fail("delete a duplicate of "+set, err))
				continue
			}
			rep.Deleted++
			slog.Info().Str("bc_subscription_id", extra.SubscriptionID).Msg("webhook subscription deleted: a duplicate")
		}
		key := ms.Subscription + "\x00" + set
		var cur bcclient.Subscription
		switch {
		case len(matches) == 0:
			if prev, ok := m.known[key]; ok {
				slog.Warn().Str("bc_subscription_id", prev).
					Msg("BC dropped the webhook subscription (it expired, or a notification was answered with an error BC does not retry): recreating it")
				rep.Recreated++
			}
			cur, err = m.create(ctx, ms, resource)
			if err != nil {
				delete(m.known, key)
				errs = append(errs, fail("create "+set, err))
				continue
			}
			rep.Created++
			slog.Info().Str("bc_subscription_id", cur.SubscriptionID).Time("expires", cur.ExpirationDateTime).Msg("webhook subscription created")
		case m.due(ms, matches[0]):
			cur, err = m.renew(ctx, ms, matches[0])
			if errors.Is(err, bcclient.ErrNotFound) {
				// Dropped between the list and the renewal.
				cur, err = m.create(ctx, ms, resource)
				if err == nil {
					rep.Created++
				}
			} else if err == nil {
				rep.Renewed++
			}
			if err != nil {
				errs = append(errs, fail("renew "+set, err))
				continue
			}
			slog.Info().Str("bc_subscription_id", cur.SubscriptionID).Time("expires", cur.ExpirationDateTime).Msg("webhook subscription renewed")
		default:
			cur = matches[0]
			rep.Kept++
			slog.Debug().Str("bc_subscription_id", cur.SubscriptionID).Time("expires", cur.ExpirationDateTime).Msg("webhook subscription in place")
		}
		m.known[key] = cur.SubscriptionID
	}
	// Ours, but no configured entity set wants them any more. Unless a
	// set's resource could not be worked out (BC down, the company lookup
	// failing): its subscription cannot be told from an unconfigured one,
	// and deleting it would stop BC's notifications until a later pass.
	for i, s := range ours {
		if handled[i] || unresolved {
			continue
		}
		if err := ms.BC.DeleteSubscription(ctx, s); err != nil && !errors.Is(err, bcclient.ErrNotFound) {
			errs = append(errs, fail("delete an unconfigured subscription", err))
			continue
		}
		rep.Deleted++
		log.Info().Str("bc_subscription_id", s.SubscriptionID).Str("resource", s.Resource).
			Msg("webhook subscription deleted: its entity set is not in webhook.resources")
	}
	return rep, errors.Join(errs...)
}

// due reports whether s must be renewed: it expires within RenewBefore, or
// BC holds another clientState (rotated in the configuration).
func (m *Manager) due(ms *Managed, s bcclient.Subscription) bool {
	if !m.cfg.Now().Before(s.ExpirationDateTime.Add(-ms.RenewBefore)) {
		return true
	}
	return s.ClientState != "" && s.ClientState != ms.ClientState.Reveal()
}

func (m *Manager) create(ctx context.Context, ms *Managed, resource string) (bcclient.Subscription, error) {
	return ms.BC.CreateSubscription(ctx, bcclient.SubscriptionRequest{
		NotificationURL: ms.NotificationURL, Resource: resource, ClientState: ms.ClientState.Reveal(),
	})
}

func (m *Manager) renew(ctx context.Context, ms *Managed, s bcclient.Subscription) (bcclient.Subscription, error) {
	s.NotificationURL, s.ClientState = ms.NotificationURL, ms.ClientState.Reveal()
	return ms.BC.RenewSubscription(ctx, s)
}

// sameResource compares two webhook resources: with or without the
// leading slash, relative or absolute, ids in any case.
func sameResource(a, b string) bool {
	return strings.EqualFold(resourcePath(a), resourcePath(b))
}

func resourcePath(r string) string {
	if i := strings.Index(strings.ToLower(r), "/api/v2.0/"); i >= 0 {
		r = r[i:]
	}
	return strings.TrimPrefix(r, "/")
}

// Fix says what an operator must do about an error of the Manager, or ""
// when nothing (the next pass retries).
func Fix(err error, notificationURL string) string {
	var te *bcclient.TokenError
	if errors.As(err, &te) {
		return te.Fix()
	}
	var ae *bcclient.APIError
	isAPI := errors.As(err, &ae)
	switch bcclient.Classify(err) {
	case bcclient.ClassAuth:
		return "BC refused the credentials or does not know the tenant, environment or company: check tenant_id, client_id, " +
			"the client secret, environment and company_name, and that the app is registered and enabled on BC's " +
			"Microsoft Entra Applications page."
	case bcclient.ClassPermission:
		return "The app registration lacks a permission: webhook subscriptions are written, so grant the Entra app the " +
			"application permission API.ReadWrite.All with admin consent, and give it write permissions on BC's " +
			"Microsoft Entra Applications page."
	case bcclient.ClassPermanent:
		if isAPI && ae.Status == http.StatusBadRequest {
			text := strings.ToLower(ae.Code + " " + ae.Message)
			switch {
			case strings.Contains(text, "handshake") || strings.Contains(text, "validat") || strings.Contains(text, "notificationurl"):
				return "BC could not validate " + notificationURL + ": it must be reachable from the internet, reach " +
					"`bcsync webhook` at " + PathPrefix + "<subscription> and answer within 5 seconds."
			case strings.Contains(text, "limit"):
				return "BC allows 200 webhook subscriptions per environment: delete unused ones."
			}
		}
	}
	return ""
}
