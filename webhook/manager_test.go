package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/webhook"
)

// managerRig is a Receiver, a BC fake on a fake clock, and a Manager of
// the subscription "demo".
type managerRig struct {
	*rig
	bc    *bctest.Server
	clock *clock
	m     *webhook.Manager
	logs  *syncBuffer
}

func newManagerRig(t *testing.T, mod func(*webhook.Managed)) *managerRig {
	t.Helper()
	r := newRig(t, nil)
	c := newClock(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC))
	bc := newBC(t, c.Now)
	ms := webhook.Managed{
		Subscription: "demo", BC: bcClient(t, bc), NotificationURL: r.url("demo"),
		ClientState: config.NewSecret(testState), Resources: []string{"customers", "shipmentMethods"},
	}
	if mod != nil {
		mod(&ms)
	}
	logs := &syncBuffer{}
	m, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{ms}, Now: c.Now, Log: zerologAt(logs)})
	if err != nil {
		t.Fatal(err)
	}
	return &managerRig{rig: r, bc: bc, clock: c, m: m, logs: logs}
}

func (mr *managerRig) sync(t *testing.T) webhook.Report {
	t.Helper()
	rep, err := mr.m.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, mr.logs.String())
	}
	return rep
}

// bySet returns BC's subscriptions by entity set.
func (mr *managerRig) bySet(t *testing.T) map[string]bctest.Subscription {
	t.Helper()
	out := map[string]bctest.Subscription{}
	for _, s := range mr.bc.Subscriptions() {
		if _, dup := out[s.EntitySet]; dup {
			t.Errorf("two subscriptions of %s", s.EntitySet)
		}
		out[s.EntitySet] = s
	}
	return out
}

func TestManagerCreatesSubscriptions(t *testing.T) {
	t.Parallel()
	mr := newManagerRig(t, nil)
	if rep := mr.sync(t); rep != (webhook.Report{Created: 2}) {
		t.Errorf("first pass %+v", rep)
	}
	subs := mr.bySet(t)
	if len(subs) != 2 {
		t.Fatalf("BC holds %+v", subs)
	}
	for _, set := range []string{"customers", "shipmentMethods"} {
		s := subs[set]
		if s.NotificationURL != mr.url("demo") || s.ClientState != testState || !strings.EqualFold(s.CompanyID, mr.bc.CompanyID()) ||
			!s.Expiration.Equal(mr.clock.Now().Add(72*time.Hour)) {
			t.Errorf("%s: %+v", set, s)
		}
	}
	if rep := mr.sync(t); rep != (webhook.Report{Kept: 2}) {
		t.Errorf("second pass %+v", rep)
	}
	if got := mr.bySet(t); got["customers"].ID != subs["customers"].ID || got["customers"].ETag != subs["customers"].ETag {
		t.Error("a pass with nothing to do changed a subscription")
	}
	if st := mr.recv.Stats(); st.Handshakes != 2 {
		t.Errorf("%d handshakes", st.Handshakes)
	}
	assertNoSecret(t, "logs", mr.logs.String())
}

func TestManagerRenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	mr := newManagerRig(t, nil) // renew_before: 24h
	mr.sync(t)
	before := mr.bySet(t)
	created := mr.clock.Now()

	mr.clock.Advance(47 * time.Hour) // 25h left
	if rep := mr.sync(t); rep != (webhook.Report{Kept: 2}) {
		t.Errorf("25h before expiry: %+v", rep)
	}
	mr.clock.Advance(2 * time.Hour) // 23h left
	if rep := mr.sync(t); rep != (webhook.Report{Renewed: 2}) {
		t.Errorf("23h before expiry: %+v", rep)
	}
	after := mr.bySet(t)
	for set, s := range after {
		if s.ID != before[set].ID {
			t.Errorf("%s: renewal made a new subscription", set)
		}
		if want := created.Add(49*time.Hour + 72*time.Hour); !s.Expiration.Equal(want) {
			t.Errorf("%s expires %v, want %v", set, s.Expiration, want)
		}
	}
	// Past the old expiry, the renewed subscriptions still live.
	mr.clock.Advance(24 * time.Hour)
	if n := len(mr.bc.Subscriptions()); n != 2 {
		t.Errorf("%d subscriptions live after the old expiry", n)
	}
	if st := mr.recv.Stats(); st.Handshakes != 4 {
		t.Errorf("%d handshakes, want 4 (BC validates a renewal too)", st.Handshakes)
	}
}

func TestManagerRecreatesDroppedSubscriptions(t *testing.T) {
	t.Parallel()
	mr := newManagerRig(t, nil)
	mr.sync(t)
	before := mr.bySet(t)
	if !mr.bc.DropSubscription(before["customers"].ID) {
		t.Fatal("not dropped")
	}
	if rep := mr.sync(t); rep != (webhook.Report{Created: 1, Recreated: 1, Kept: 1}) {
		t.Errorf("after a drop: %+v", rep)
	}
	after := mr.bySet(t)
	if len(after) != 2 || after["customers"].ID == before["customers"].ID || after["shipmentMethods"].ID != before["shipmentMethods"].ID {
		t.Errorf("before %+v\nafter %+v", before, after)
	}
	if !strings.Contains(mr.logs.String(), "BC dropped the webhook subscription") {
		t.Errorf("no warning about the drop:\n%s", mr.logs.String())
	}

	// Expired while bcsync was down: both are recreated.
	mr.clock.Advance(73 * time.Hour)
	if n := len(mr.bc.Subscriptions()); n != 0 {
		t.Fatalf("%d subscriptions outlived their expiry", n)
	}
	if rep := mr.sync(t); rep != (webhook.Report{Created: 2, Recreated: 2}) {
		t.Errorf("after expiry: %+v", rep)
	}
}

// The subscriptions of the notification URL that no configured entity set
// wants, and duplicates, are deleted; other URLs' are left alone.
func TestManagerDeletesExtraSubscriptions(t *testing.T) {
	t.Parallel()
	mr := newManagerRig(t, func(ms *webhook.Managed) { ms.Resources = []string{"customers"} })
	c := bcClient(t, mr.bc)
	ctx := context.Background()
	create := func(set, url string) {
		res, err := c.Resource(ctx, set)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: url, Resource: res, ClientState: testState}); err != nil {
			t.Fatal(err)
		}
	}
	create("customers", mr.url("demo"))
	mr.clock.Advance(time.Hour) // the second lives longer: it is kept
	create("customers", mr.url("demo"))
	create("items", mr.url("demo"))
	other := newRig(t, nil)
	create("items", other.url("demo"))
	keep := mr.bc.Subscriptions()[1].ID

	if rep := mr.sync(t); rep != (webhook.Report{Deleted: 2, Kept: 1}) {
		t.Errorf("pass %+v", rep)
	}
	subs := mr.bc.Subscriptions()
	if len(subs) != 2 || !slices.ContainsFunc(subs, func(s bctest.Subscription) bool { return s.ID == keep }) ||
		!slices.ContainsFunc(subs, func(s bctest.Subscription) bool { return s.NotificationURL == other.url("demo") }) {
		t.Errorf("BC holds %+v", subs)
	}
}

// A clientState rotated in the configuration reaches BC with a renewal.
func TestManagerRenewsARotatedClientState(t *testing.T) {
	t.Parallel()
	mr := newManagerRig(t, func(ms *webhook.Managed) { ms.Resources = []string{"customers"} })
	c := bcClient(t, mr.bc)
	ctx := context.Background()
	res, err := c.Resource(ctx, "customers")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: mr.url("demo"), Resource: res, ClientState: wrongState}); err != nil {
		t.Fatal(err)
	}
	if rep := mr.sync(t); rep != (webhook.Report{Renewed: 1}) {
		t.Errorf("pass %+v", rep)
	}
	if s := mr.bc.Subscriptions(); len(s) != 1 || s[0].ClientState != testState {
		t.Errorf("BC holds %+v", s)
	}
	assertNoSecret(t, "logs", mr.logs.String())
}

// Failures are logged with what to do, returned, and retried: they never
// stop Run.
func TestManagerFailuresNameTheFix(t *testing.T) {
	t.Parallel()
	t.Run("credentials", func(t *testing.T) {
		t.Parallel()
		mr := newManagerRig(t, nil)
		mr.bc.SetClientSecret("another~secret.value_0123456789")
		_, err := mr.m.Sync(context.Background())
		if err == nil {
			t.Fatal("no error with a revoked secret")
		}
		logs := mr.logs.String()
		if !strings.Contains(logs, `"fix":"The client secret is wrong`) || !strings.Contains(logs, "webhook subscriptions: list failed") {
			t.Errorf("logs:\n%s", logs)
		}
		assertNoSecret(t, "logs", logs, mr.bc.ClientSecret())
	})
	t.Run("handshake", func(t *testing.T) {
		t.Parallel()
		mr := newManagerRig(t, nil)
		mr.m, _ = webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{{
			Subscription: "demo", BC: bcClient(t, mr.bc), NotificationURL: mr.url("unknown"),
			ClientState: config.NewSecret(testState), Resources: []string{"customers"},
		}}, Log: zerologAt(mr.logs)})
		rep, err := mr.m.Sync(context.Background())
		if err == nil || rep.Created != 0 {
			t.Fatalf("pass %+v, %v", rep, err)
		}
		if logs := mr.logs.String(); !strings.Contains(logs, "could not validate "+mr.url("unknown")) {
			t.Errorf("logs:\n%s", logs)
		}
	})
	t.Run("run goes on", func(t *testing.T) {
		t.Parallel()
		mr := newManagerRig(t, nil)
		mr.bc.SetOutage(403) // a permission an admin then grants
		m, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{{
			Subscription: "demo", BC: bcClient(t, mr.bc), NotificationURL: mr.url("demo"),
			ClientState: config.NewSecret(testState), Resources: []string{"customers"},
		}}, Interval: time.Hour, RetryInterval: 20 * time.Millisecond, Log: zerologAt(mr.logs)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(mr.logs.String(), "API.ReadWrite.All") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(mr.logs.String(), "API.ReadWrite.All") {
			t.Errorf("no fix for the missing permission:\n%s", mr.logs.String())
		}
		mr.bc.SetOutage(0)
		deadline = time.Now().Add(10 * time.Second)
		for len(mr.bc.Subscriptions()) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if len(mr.bc.Subscriptions()) != 1 {
			t.Errorf("no subscription after the outage:\n%s", mr.logs.String())
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return when its context ended")
		}
	})
}

func TestNewManagerChecksItsConfig(t *testing.T) {
	t.Parallel()
	_, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{{Subscription: "x", NotificationURL: "/webhook/x"}}})
	for _, want := range []string{"no BC client", "absolute http(s) URL", "clientState is required", "no resources"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	if _, err := webhook.NewManager(webhook.ManagerConfig{}); err == nil {
		t.Error("no subscriptions accepted")
	}
	sub := &config.Subscription{Name: "a", Webhook: config.Webhook{
		Enabled: true, NotificationURL: "https://x.example.com/webhook/a", ClientState: config.NewSecret(testState),
		Resources: []string{"items"}, RenewBefore: 30 * time.Hour,
	}}
	ms := webhook.ManagedFromConfig(sub, nil)
	if ms.Subscription != "a" || ms.NotificationURL != sub.Webhook.NotificationURL || ms.ClientState.Reveal() != testState ||
		!slices.Equal(ms.Resources, []string{"items"}) || ms.RenewBefore != 30*time.Hour {
		t.Errorf("managed %+v", ms)
	}
}

// flakyResourceBC is a real BC client whose Resource fails for one entity
// set, as it does when the company lookup behind it (not cached yet after
// a restart) meets a BC outage, a timeout or a renamed company.
type flakyResourceBC struct {
	*bcclient.Client
	failSet atomic.Value // string
}

func (f *flakyResourceBC) Resource(ctx context.Context, set string) (string, error) {
	if s, _ := f.failSet.Load().(string); s == set || s == "*" {
		return "", fmt.Errorf("bcclient: webhook resource: look up company: %w",
			&bcclient.APIError{Status: http.StatusServiceUnavailable, Code: "Internal_ServiceUnavailable", Message: "Service unavailable"})
	}
	return f.Client.Resource(ctx, set)
}

// A pass in which Resource fails for an entity set (a transient BC error,
// a renamed company) leaves every live subscription alone: such a
// subscription cannot be told from one no configured set wants, and the
// Manager once deleted them all as "not in webhook.resources", so BC stopped
// notifying until a later pass recreated them (changes and deletions in
// between were lost: deletions are invisible to the poller's delta).
func TestManagerKeepsSubscriptionsWhenAResourceFails(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	c := newClock(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC))
	bc := newBC(t, c.Now)
	fbc := &flakyResourceBC{Client: bcClient(t, bc)}
	fbc.failSet.Store("")
	logs := &syncBuffer{}
	m, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{{
		Subscription: "demo", BC: fbc, NotificationURL: r.url("demo"),
		ClientState: config.NewSecret(testState), Resources: []string{"customers", "shipmentMethods"},
	}}, Now: c.Now, Log: zerologAt(logs)})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := m.Sync(context.Background()); err != nil || rep.Created != 2 {
		t.Fatalf("first pass %+v, %v", rep, err)
	}
	if n := len(bc.Subscriptions()); n != 2 {
		t.Fatalf("BC holds %d subscriptions", n)
	}

	c.Advance(time.Hour)
	fbc.failSet.Store("*") // BC hiccups on the company lookup
	rep, err := m.Sync(context.Background())
	if err == nil {
		t.Error("a pass whose Resource calls failed reported no error")
	}
	if rep.Deleted != 0 {
		t.Errorf("a transient failure deleted %d live subscriptions: report %+v", rep.Deleted, rep)
	}
	if n := len(bc.Subscriptions()); n != 2 {
		t.Errorf("BC holds %d subscriptions after a pass with a transient failure, want 2 (still in place)\nlogs:\n%s",
			n, strings.TrimSpace(logs.String()))
	}
}
