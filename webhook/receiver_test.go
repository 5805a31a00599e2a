package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/webhook"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BC validates a notification URL before it creates (and renews) a
// subscription: the creation succeeds only when the Receiver echoes the
// token.
func TestHandshakeThroughBC(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bc := newBC(t, nil)
	c := bcClient(t, bc)
	ctx := context.Background()
	res, err := c.Resource(ctx, "customers")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: r.url("demo"), Resource: res, ClientState: testState})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := bc.Subscriptions(); len(got) != 1 || got[0].ID != sub.SubscriptionID {
		t.Fatalf("BC holds %+v", got)
	}
	if _, err := c.RenewSubscription(ctx, sub); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if st := r.recv.Stats(); st.Handshakes != 2 {
		t.Errorf("%d handshakes, want 2 (creation and renewal)", st.Handshakes)
	}

	// A subscription the Receiver does not serve fails the handshake (404),
	// and BC creates nothing.
	_, err = c.CreateSubscription(ctx, bcclient.SubscriptionRequest{NotificationURL: r.url("other"), Resource: res, ClientState: testState})
	var ae *bcclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("create for an unknown subscription: %v", err)
	}
	if n := len(bc.Subscriptions()); n != 1 {
		t.Errorf("BC holds %d subscriptions, want 1", n)
	}
	assertNoSecret(t, "logs", r.logs.String())
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	long := strings.Repeat("t", webhook.MaxValidationTokenLen)
	tests := []struct {
		name, method, path, query string
		status                    int
		body                      string // the whole answer when status is 200
	}{
		{"token", "POST", "/webhook/demo", "validationToken=" + testToken, 200, testToken},
		{"encoded token", "POST", "/webhook/demo", "validationToken=" + url.QueryEscape("a b+c/=&é"), 200, "a b+c/=&é"},
		{"longest token", "POST", "/webhook/demo", "validationToken=" + long, 200, long},
		{"token too long", "POST", "/webhook/demo", "validationToken=" + long + "x", 400, ""},
		{"empty token", "POST", "/webhook/demo", "validationToken=", 400, ""},
		{"two tokens", "POST", "/webhook/demo", "validationToken=a&validationToken=b", 400, ""},
		{"bad query", "POST", "/webhook/demo", "validationToken=%zz", 400, ""},
		{"token by GET", "GET", "/webhook/demo", "validationToken=abc", 200, "abc"},
		{"GET without a token", "GET", "/webhook/demo", "", 405, ""},
		{"PUT", "PUT", "/webhook/demo", "validationToken=abc", 405, ""},
		{"unknown subscription", "POST", "/webhook/other", "validationToken=abc", 404, ""},
		{"no subscription", "POST", "/webhook/", "validationToken=abc", 404, ""},
		{"sub-path", "POST", "/webhook/demo/x", "validationToken=abc", 404, ""},
		{"other path", "POST", "/demo", "validationToken=abc", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, r.srv.URL+tt.path+"?"+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b.String())
			}
			if tt.status == 200 {
				if b.String() != tt.body {
					t.Errorf("body %q, want the token %q", b.String(), tt.body)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if tt.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestClientStateChecked(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	good := item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00.123Z")
	for name, b := range map[string][]byte{
		"wrong":         body(item(wrongState, "updated", customerRes(customerID), "2026-11-29T10:00:00.123Z")),
		"missing":       body(item("", "updated", customerRes(customerID), "2026-11-29T10:00:00.123Z")),
		"one of two":    body(good, item(wrongState, "deleted", customerRes(customerID), "2026-11-29T10:00:01Z")),
		"prefix":        body(item(testState[:len(testState)-1], "created", customerRes(customerID), "2026-11-29T10:00:00Z")),
		"longer":        body(item(testState+"x", "created", customerRes(customerID), "2026-11-29T10:00:00Z")),
		"other's state": body(item("state-of-the-other-subscription", "created", customerRes(customerID), "2026-11-29T10:00:00Z")),
	} {
		status, answer := r.post(t, "demo", b)
		if status != http.StatusUnauthorized {
			t.Errorf("%s clientState: status %d, want 401: %s", name, status, answer)
		}
		assertNoSecret(t, name+" answer", answer)
	}
	if n := len(jobs(t, r.js)); n != 0 {
		t.Errorf("%d jobs enqueued from forged notifications", n)
	}
	if st := r.recv.Stats(); st.Rejected[webhook.ReasonUnauthorized] != 6 || st.Accepted != 0 {
		t.Errorf("stats %+v", st)
	}
	assertNoSecret(t, "logs", r.logs.String())
}

func TestMalformedNotifications(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *webhook.ReceiverConfig) { c.MaxBodyBytes = 4 << 10 })
	ok := item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00Z")
	with := func(k string, v any) []byte {
		it := item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00Z")
		if v == nil {
			delete(it, k)
		} else {
			it[k] = v
		}
		return body(ok, it)
	}
	many := make([]map[string]any, 0, 40)
	for range 40 {
		many = append(many, ok)
	}
	tests := map[string][]byte{
		"not JSON":                               []byte("subscriptionId=1&clientState=" + testState),
		"empty body":                             nil,
		"JSON array":                             []byte(`[{"value":[]}]`),
		"null":                                   []byte(`null`),
		"no value":                               []byte(`{"items":[]}`),
		"empty value":                            []byte(`{"value":[]}`),
		"value not a list":                       []byte(`{"value":{"resource":"x"}}`),
		"null item":                              []byte(`{"value":[null]}`),
		"trailing garbage":                       append(body(ok), []byte("garbage")...),
		"two objects":                            append(body(ok), body(ok)...),
		"truncated":                              body(ok)[:40],
		"number for a string":                    with("changeType", 7),
		"no subscriptionId":                      with("subscriptionId", nil),
		"no resource":                            with("resource", nil),
		"no changeType":                          with("changeType", nil),
		"no lastModifiedDateTime":                with("lastModifiedDateTime", nil),
		"bad lastModifiedDateTime":               with("lastModifiedDateTime", "yesterday"),
		"lastModifiedDateTime after 9999 in UTC": with("lastModifiedDateTime", "9999-12-31T23:59:59-05:00"),
		"expirationDateTime after 9999 in UTC":   with("expirationDateTime", "9999-12-31T23:59:59-05:00"),
		"bad expirationDateTime":                 with("expirationDateTime", "soon"),
		"unknown changeType":                     with("changeType", "renamed"),
		"resource not the API":                   with("resource", "companies("+companyID+")/customers("+customerID+")"),
		"resource of another API":                with("resource", "api/contoso/app/v1.0/companies("+companyID+")/customers("+customerID+")"),
		"resource too deep":                      with("resource", "api/v2.0/companies("+companyID+")/salesOrders("+customerID+")/salesOrderLines("+customerID+")"),
		"resource without company":               with("resource", "api/v2.0/customers("+customerID+")"),
		"company id not a GUID":                  with("resource", "api/v2.0/companies(CRONUS)/customers("+customerID+")"),
		"record id not a GUID":                   with("resource", "api/v2.0/companies("+companyID+")/customers('C0001')"),
		"unknown entity set":                     with("resource", "api/v2.0/companies("+companyID+")/widgets("+customerID+")"),
		"locations":                              with("resource", "api/v2.0/companies("+companyID+")/locations("+customerID+")"),
		"update without record":                  with("resource", "api/v2.0/companies("+companyID+")/customers"),
		"update with a query":                    with("resource", customerRes(customerID)+"?$select=id"),
		"resource with spaces":                   with("resource", "api/v2.0/companies("+companyID+")/customers ("+customerID+")"),
		"resource with control char":             with("resource", customerRes(customerID)+"\n"),
		"oversized body":                         body(many...),
	}
	for name, b := range tests {
		status, answer := r.post(t, "demo", b)
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", name, status, answer)
		}
		assertNoSecret(t, name+" answer", answer)
	}
	if n := len(jobs(t, r.js)); n != 0 {
		t.Errorf("%d jobs enqueued from malformed notifications", n)
	}
	st := r.recv.Stats()
	if st.Rejected[webhook.ReasonTooLarge] != 1 || st.Rejected[webhook.ReasonMalformed] != int64(len(tests)-1) {
		t.Errorf("stats %+v", st)
	}
	assertNoSecret(t, "logs", r.logs.String())
}

// When JetStream cannot take the jobs the Receiver answers 503, which BC
// retries, never a 4xx, which would make BC drop the subscription.
func TestJetStreamDownIs503(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"server shut down", "connection closed"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
			if err != nil {
				t.Fatal(err)
			}
			go srv.Start()
			if !srv.ReadyForConnections(10 * time.Second) {
				t.Fatal("nats-server did not start")
			}
			t.Cleanup(srv.Shutdown)
			nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if err := broker.EnsureStreams(context.Background(), js, broker.StreamOptions{}); err != nil {
				t.Fatal(err)
			}
			r := newRigJS(t, js, func(c *webhook.ReceiverConfig) { c.PublishTimeout = 300 * time.Millisecond })
			b := body(item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00Z"))
			if status, answer := r.post(t, "demo", b); status != http.StatusAccepted {
				t.Fatalf("with JetStream up: %d %s", status, answer)
			}
			if how == "connection closed" {
				nc.Close()
			} else {
				srv.Shutdown()
				srv.WaitForShutdown()
			}
			start := time.Now()
			b = body(item(testState, "updated", customerRes(customerID), "2026-11-29T10:05:00Z"))
			if status, answer := r.post(t, "demo", b); status != http.StatusServiceUnavailable {
				t.Fatalf("with JetStream down: %d %s, want 503", status, answer)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answered after %v", d)
			}
			if st := r.recv.Stats(); st.Rejected[webhook.ReasonUnavailable] != 1 || st.Accepted != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestChangesBecomeJobs(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	const (
		other   = "11111111-2222-4333-8444-555555555555"
		deleted = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE" // upper-case, as BC may send it
	)
	b := body(
		item(testState, "created", customerRes(customerID), "2026-11-29T10:00:00.100Z"),
		item(testState, "updated", "/"+customerRes(other), "2026-11-29T10:00:00.200Z"),
		item(testState, "deleted", "api/v2.0/companies("+companyID+")/Customers("+deleted+")", "2026-11-29T10:00:00.300Z"),
		item(testState, "Updated", "api/v2.0/companies("+companyID+")/shipmentmethods("+methodID+")", "2026-11-29T10:00:00.400Z"),
		item(testState, "created", "api/v2.0/companies("+companyID+")/items("+other+")", "2026-11-29T10:00:00.500Z"),
		item(testState, "updated", "api/v2.0/companies("+companyID+")/salesOrders("+other+")", "2026-11-29T10:00:00.600Z"),
	)
	status, answer := r.post(t, "demo", b)
	if status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, answer)
	}
	assertNoSecret(t, "answer", answer)
	got := byChange(jobs(t, r.js))
	want := []struct {
		typ     messages.Type
		op      messages.Op
		key     string
		changed string
	}{
		{messages.TypeCustomer, messages.OpUpsert, customerID, "2026-11-29T10:00:00.1Z"},
		{messages.TypeCustomer, messages.OpUpsert, other, "2026-11-29T10:00:00.2Z"},
		{messages.TypeCustomer, messages.OpDelete, strings.ToLower(deleted), "2026-11-29T10:00:00.3Z"},
		{messages.TypeShippingMethod, messages.OpUpsert, methodID, "2026-11-29T10:00:00.4Z"},
		{messages.TypeProduct, messages.OpUpsert, other, "2026-11-29T10:00:00.5Z"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d jobs, want %d (sales orders are not synced): %+v", len(got), len(want), got)
	}
	for i, w := range want {
		j := got[i].Job
		if j.Type != w.typ || j.Op != w.op || j.Key != w.key || j.Subscription != "demo" || j.Source != "webhook" ||
			j.ChangedAt.Format(time.RFC3339Nano) != w.changed || !strings.HasPrefix(j.ID, "wh-") || len(j.Data) != 0 {
			t.Errorf("job %d: %+v, want %+v", i, j, w)
		}
		if s := messages.JobSubject("demo", w.typ, w.key); got[i].Subject != s {
			t.Errorf("job %d on %s, want %s", i, got[i].Subject, s)
		}
	}
	if st := r.recv.Stats(); st.Accepted != 1 || st.Items != 6 || st.Ignored != 1 || st.Enqueued != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestCollectionYieldsOneDeltaJob(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	coll := "api/v2.0/companies(" + companyID + ")/customers?$filter=lastModifiedDateTime%20gt%202026-11-29T09:59:00.000Z"
	b := body(
		item(testState, "collection", coll, "2026-11-29T10:00:00.000Z"),
		item(testState, "collection", "/api/v2.0/companies("+companyID+")/customers?$filter=lastModifiedDateTime gt 2026-11-29T09:59:30Z", "2026-11-29T10:00:30Z"),
		item(testState, "collection", "api/v2.0/companies("+companyID+")/customers", "2026-11-29T10:00:10Z"),
	)
	if status, answer := r.post(t, "demo", b); status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, answer)
	}
	got := jobs(t, r.js)
	if len(got) != 1 {
		t.Fatalf("%d jobs, want one delta job: %+v", len(got), got)
	}
	j := got[0]
	if j.Job.Op != messages.OpDelta || j.Job.Type != messages.TypeCustomer || j.Job.Key != "" ||
		j.Subject != "bcsync.jobs.demo.customer."+messages.InitKeyToken || !j.Job.ChangedAt.Equal(time.Date(2026, 11, 29, 10, 0, 30, 0, time.UTC)) {
		t.Errorf("job %+v on %s", j.Job, j.Subject)
	}
}

// BC delivers a notification again when its first delivery got no 2xx
// (e.g. BC timed out): it yields one job.
func TestSameNotificationTwiceIsOneJob(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	b := body(
		item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00.123Z"),
		item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00.100Z"), // same record, older: one job
	)
	for i := range 2 {
		if status, answer := r.post(t, "demo", b); status != http.StatusAccepted {
			t.Fatalf("delivery %d: %d %s", i+1, status, answer)
		}
	}
	if got := jobs(t, r.js); len(got) != 1 {
		t.Fatalf("%d jobs, want 1: %+v", len(got), got)
	}
	if st := r.recv.Stats(); st.Enqueued != 1 || st.Duplicates != 1 || st.Accepted != 2 {
		t.Errorf("stats %+v", st)
	}
	// A later change of the same record is another job.
	b = body(item(testState, "updated", customerRes(customerID), "2026-11-29T10:01:00Z"))
	if status, _ := r.post(t, "demo", b); status != http.StatusAccepted {
		t.Fatal(status)
	}
	if got := jobs(t, r.js); len(got) != 2 {
		t.Errorf("%d jobs, want 2", len(got))
	}
}

// End to end: the Manager subscribes through the Receiver, BC changes a
// customer and notifies, and a job for that customer is in JetStream.
func TestBCNotifyEnqueuesJobs(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bc := newBC(t, nil)
	m, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{{
		Subscription: "demo", BC: bcClient(t, bc), NotificationURL: r.url("demo"),
		ClientState: config.NewSecret(testState), Resources: []string{"customers", "shipmentMethods"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	number := bc.CustomerNumbers()[2]
	if !bc.Update(bctest.SetCustomers, number, func(f map[string]any) { f["displayName"] = "Renamed Ltd." }) {
		t.Fatal("no such customer")
	}
	rec, _ := bc.Record(bctest.SetCustomers, number)
	id := rec["id"].(string)
	ds, err := bc.Notify(ctx, bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: number},
		bctest.Change{Set: bctest.SetShipmentMethods, Type: bctest.ChangeCollection})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Status != http.StatusAccepted || ds[0].Err != nil || ds[0].Dropped {
		t.Fatalf("deliveries %+v", ds)
	}
	got := byChange(jobs(t, r.js))
	if len(got) != 2 {
		t.Fatalf("%d jobs, want 2: %+v", len(got), got)
	}
	if j := got[0].Job; j.Type != messages.TypeCustomer || j.Op != messages.OpUpsert || !strings.EqualFold(j.Key, id) ||
		j.ChangedAt.Format("2006-01-02T15:04:05.000Z") != rec["lastModifiedDateTime"] {
		t.Errorf("customer job %+v, want an upsert of %s changed at %v", j, id, rec["lastModifiedDateTime"])
	}
	if j := got[1].Job; j.Type != messages.TypeShippingMethod || j.Op != messages.OpDelta {
		t.Errorf("collection job %+v", j)
	}
	if n := len(bc.Subscriptions()); n != 2 {
		t.Errorf("BC holds %d subscriptions after the notifications, want 2", n)
	}
	assertNoSecret(t, "logs", r.logs.String())
}

func TestNoSecretInLogsOrAnswers(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bc := newBC(t, nil)
	mlogs := &syncBuffer{}
	m, err := webhook.NewManager(webhook.ManagerConfig{
		Subscriptions: []webhook.Managed{{
			Subscription: "demo", BC: bcClient(t, bc), NotificationURL: r.url("demo"),
			ClientState: config.NewSecret(testState), Resources: []string{"customers"},
		}},
		Log: zerologAt(mlogs),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var answers []string
	add := func(_ int, a string) { answers = append(answers, a) }
	add(do(t, "POST", r.url("demo")+"?validationToken="+testToken, nil))
	add(r.post(t, "demo", body(item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00Z"))))
	add(r.post(t, "demo", body(item(wrongState, "updated", customerRes(customerID), "2026-11-29T10:00:00Z"))))
	add(r.post(t, "demo", body(item(testState, "bogus", customerRes(customerID), "2026-11-29T10:00:00Z"))))
	add(r.post(t, "demo", []byte(`{"value":[{"clientState":"`+testState+`","resource":7}]}`)))
	add(r.post(t, "demo", []byte(`{"value":[{"clientState":"`+wrongState+`"`)))
	add(r.post(t, "demo", body(item(testState, "updated", "api/v2.0/companies("+companyID+")/x"+testState+"(1)", "2026-11-29T10:00:00Z"))))
	if _, err := bc.Notify(context.Background(), bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeCreated, Key: bc.CustomerNumbers()[0]}); err != nil {
		t.Fatal(err)
	}
	logs := r.logs.String() + mlogs.String()
	if !strings.Contains(logs, "webhook notification enqueued") || !strings.Contains(logs, "webhook request rejected") ||
		!strings.Contains(logs, "webhook subscription created") {
		t.Errorf("the logs lack the expected lines:\n%s", logs)
	}
	assertNoSecret(t, "logs", logs)
	assertNoSecret(t, "answers", strings.Join(answers[1:], "\n"))
}

func TestNewReceiverChecksItsConfig(t *testing.T) {
	t.Parallel()
	_, err := webhook.NewReceiver(webhook.ReceiverConfig{Endpoints: []webhook.Endpoint{
		{Subscription: "Bad Name", ClientState: config.NewSecret("x")},
		{Subscription: "demo"},
		{Subscription: "twice", ClientState: config.NewSecret("x")},
		{Subscription: "twice", ClientState: config.NewSecret("x")},
	}})
	for _, want := range []string{"JS is required", `"Bad Name"`, `"demo": a clientState is required`, `"twice" listed twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	if _, err := webhook.NewReceiver(webhook.ReceiverConfig{JS: nil}); err == nil || !strings.Contains(err.Error(), "no endpoint") {
		t.Errorf("no endpoints: %v", err)
	}
	cfg := &config.Config{Subscriptions: []config.Subscription{
		{Name: "a", Webhook: config.Webhook{Enabled: true, ClientState: config.NewSecret(testState)}},
		{Name: "b"},
	}}
	if eps := webhook.EndpointsFromConfig(cfg); len(eps) != 1 || eps[0].Subscription != "a" || eps[0].ClientState.Reveal() != testState {
		t.Errorf("endpoints %+v", eps)
	}
}

// BC allows a clientState of up to 2048 characters (config accepts 16 to
// 2048) and sends up to 1,000 items in one notification, each repeating
// the clientState. Such a genuine notification, 2.35 MB, was over the
// default MaxBodyBytes (then 1 MiB) and answered 400, which makes BC delete
// the subscription.
func TestLargestGenuineNotificationIsAccepted(t *testing.T) {
	t.Parallel()
	state := strings.Repeat("S", config.MaxClientStateLen)
	r := newRig(t, func(cfg *webhook.ReceiverConfig) {
		cfg.Endpoints = []webhook.Endpoint{{Subscription: "demo", ClientState: config.NewSecret(state)}}
	})
	items := make([]map[string]any, 1000)
	for i := range items {
		id := fmt.Sprintf("7c6b5a49-3827-4160-9f8e-%012d", i)
		items[i] = item(state, "updated", customerRes(id), "2026-11-29T08:00:00.123Z")
	}
	b := body(items...)
	if max := config.NotificationBytes(state, 1); int64(len(b)) > max || max > webhook.DefaultMaxBodyBytes {
		t.Errorf("a notification of %d bytes; config.NotificationBytes says %d, over the default %d", len(b), max, webhook.DefaultMaxBodyBytes)
	}
	status, answer := r.post(t, "demo", b)
	if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
		t.Errorf("a genuine notification of %d items (%d bytes, clientState of %d characters) was answered %d %q: BC deletes the subscription",
			len(items), len(b), len(state), status, strings.TrimSpace(answer))
	}
}

// slowJS adds a network round trip to every publish, as a JetStream
// cluster reached over the network does.
type slowJS struct {
	messages.Publisher
	rtt time.Duration
}

func (s slowJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	select {
	case <-time.After(s.rtt):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Publisher.PublishMsg(ctx, m, opts...)
}

// BC's largest notification (1,000 changes) must be published within the
// 5 s PublishTimeout when each publish is a round trip across zones (6 ms
// here). Published one job after the other, it took 6 s, was answered 503,
// and BC's retry started again from the first job, so it was 503 again at
// the same place: the notification was never accepted.
func TestLargestNotificationOverASlowLinkIsAccepted(t *testing.T) {
	b := brokertest.New(t)
	r := newRigJS(t, nil, func(c *webhook.ReceiverConfig) { c.JS = slowJS{Publisher: b.JS, rtt: 6 * time.Millisecond} })
	var items []map[string]any
	for i := range 1000 {
		id := fmt.Sprintf("7c6b5a49-3827-4160-9f8e-%012d", i)
		items = append(items, item(testState, "updated", customerRes(id), "2026-11-29T10:00:00.123Z"))
	}
	nb := body(items...)
	var statuses []int
	for range 2 { // BC's delivery and its retry
		status, _ := r.post(t, "demo", nb)
		statuses = append(statuses, status)
		t.Logf("attempt: status %d, %d jobs stored", status, len(jobs(t, b.JS)))
	}
	if statuses[0] != http.StatusAccepted || len(jobs(t, b.JS)) != 1000 {
		t.Errorf("statuses %v: BC's largest notification is never accepted; %d of 1000 jobs stored", statuses, len(jobs(t, b.JS)))
	}
}

// firstSlowJS holds the first publish of each subject for a while: were two
// jobs of one record published at once, the second would be stored first.
type firstSlowJS struct {
	messages.Publisher
	mu   sync.Mutex
	seen map[string]bool
}

func (s *firstSlowJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	s.mu.Lock()
	first := !s.seen[m.Subject]
	s.seen[m.Subject] = true
	s.mu.Unlock()
	if first {
		time.Sleep(50 * time.Millisecond)
	}
	return s.Publisher.PublishMsg(ctx, m, opts...)
}

// The jobs of different records are published at once, but those of one
// record keep the notification's order.
func TestJobsOfOneRecordKeepTheirOrder(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	r := newRigJS(t, nil, func(c *webhook.ReceiverConfig) { c.JS = &firstSlowJS{Publisher: b.JS, seen: map[string]bool{}} })
	const other = "11111111-2222-4333-8444-555555555555"
	nb := body(
		item(testState, "updated", customerRes(other), "2026-11-29T10:00:07Z"),
		item(testState, "deleted", customerRes(other), "2026-11-29T10:00:06Z"),
		item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:05Z"),
	)
	if status, answer := r.post(t, "demo", nb); status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, answer)
	}
	var ops []messages.Op
	for _, j := range jobs(t, b.JS) {
		if j.Job.Key == other {
			ops = append(ops, j.Job.Op)
		}
	}
	if want := []messages.Op{messages.OpUpsert, messages.OpDelete}; !slices.Equal(ops, want) {
		t.Errorf("jobs of %s stored as %v, want %v (the notification's order)", other, ops, want)
	}
}

// BC posts the changes of every subscription of one notification URL in
// one notification (bctest.Notify), up to 1,000 per entity set (more become
// a collection item). With the default resources (customers and
// shipmentMethods) and a 2,048-character clientState, 1,000 changes of each
// make a 4.7 MB notification: over the 4 MiB default, where it was answered
// 400 and BC deleted both subscriptions, while config accepted the setting
// (NotificationBytes counted 1,000 items in all). Config now asks for
// NotificationBytes(state, 2), which holds it.
func TestTwoFullEntitySetsInOneNotificationFit(t *testing.T) {
	state := strings.Repeat("S", config.MaxClientStateLen)
	need := config.NotificationBytes(state, 2)
	if need <= webhook.DefaultMaxBodyBytes {
		t.Fatalf("NotificationBytes(state, 2) = %d fits the default %d: config would accept the default", need, webhook.DefaultMaxBodyBytes)
	}
	r := newRig(t, func(cfg *webhook.ReceiverConfig) {
		cfg.Endpoints = []webhook.Endpoint{{Subscription: "demo", ClientState: config.NewSecret(state)}}
		cfg.MaxBodyBytes = need
	})
	bc := newBC(t, nil)
	m, err := webhook.NewManager(webhook.ManagerConfig{Subscriptions: []webhook.Managed{{
		Subscription: "demo", BC: bcClient(t, bc), NotificationURL: r.url("demo"),
		ClientState: config.NewSecret(state), Resources: []string{"customers", "shipmentMethods"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if rep, err := m.Sync(ctx); err != nil || rep.Created != 2 {
		t.Fatalf("pass %+v, %v", rep, err)
	}
	var changes []bctest.Change
	for i := range 1000 { // 1,000 each: no collection
		for k, set := range []string{bctest.SetCustomers, bctest.SetShipmentMethods} {
			changes = append(changes, bctest.Change{Set: set, Type: bctest.ChangeDeleted, Key: fmt.Sprintf("7c6b5a49-3827-4160-9f8%d-%012d", k, i)})
		}
	}
	ds, err := bc.Notify(ctx, changes...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		t.Logf("delivery of %d bytes: status %d, dropped %v", len(d.Body), d.Status, d.Dropped)
		if d.Status != http.StatusAccepted || d.Dropped {
			t.Errorf("a genuine notification of 2 x 1,000 changes (%d bytes) was answered %d; BC deleted subscriptions %v; BC now holds %d",
				len(d.Body), d.Status, d.Subscriptions, len(bc.Subscriptions()))
		}
	}
}
