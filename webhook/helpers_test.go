package webhook_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/webhook"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The secrets of the tests: neither may show in a log line or an answer.
const (
	testState  = "cs~Webhook.State_0123456789abcdef"
	wrongState = "cs~Forged.State_fedcba9876543210"
	testToken  = "vt-3f2a9c1e-token-7b6d"
)

// Ids used in hand-written notifications.
const (
	companyID  = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
	customerID = "7c6b5a49-3827-4160-9f8e-7d6c5b4a3921"
	methodID   = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	bcSubID    = "9a8b7c6d5e4f40312a1b2c3d4e5f6071"
)

// syncBuffer is a log writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rig is a Receiver served by an httptest.Server, publishing to a real
// embedded JetStream.
type rig struct {
	js   jetstream.JetStream
	recv *webhook.Receiver
	srv  *httptest.Server
	logs *syncBuffer
}

// newRig serves the endpoint "demo" (clientState testState) and any extra
// endpoints.
func newRig(t *testing.T, mod func(*webhook.ReceiverConfig)) *rig {
	t.Helper()
	b := brokertest.New(t)
	return newRigJS(t, b.JS, mod)
}

func newRigJS(t *testing.T, js jetstream.JetStream, mod func(*webhook.ReceiverConfig)) *rig {
	t.Helper()
	logs := &syncBuffer{}
	cfg := webhook.ReceiverConfig{
		JS:        js,
		Endpoints: []webhook.Endpoint{{Subscription: "demo", ClientState: config.NewSecret(testState)}},
		Log:       zerologAt(logs),
	}
	if mod != nil {
		mod(&cfg)
	}
	recv, err := webhook.NewReceiver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	return &rig{js: js, recv: recv, srv: srv, logs: logs}
}

// url is the notification URL of subscription name.
func (r *rig) url(name string) string { return r.srv.URL + webhook.PathPrefix + name }

// post posts body to the notification URL of name and returns the status
// and the answer.
func (r *rig) post(t *testing.T, name string, body []byte) (int, string) {
	t.Helper()
	return do(t, http.MethodPost, r.url(name), body)
}

func do(t *testing.T, method, url string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stored is a job as JetStream holds it.
type stored struct {
	Subject string
	Job     messages.Job
}

// jobs returns every job in BCSYNC_JOBS, in order.
// byChange sorts stored jobs by their change's time, then type and key:
// the receiver publishes the jobs of different records at once, so their
// order in the stream is not the notification's.
func byChange(s []stored) []stored {
	slices.SortStableFunc(s, func(a, b stored) int {
		return cmp.Or(a.Job.ChangedAt.Compare(b.Job.ChangedAt), cmp.Compare(a.Job.Type, b.Job.Type), cmp.Compare(a.Job.Key, b.Job.Key))
	})
	return s
}

func jobs(t *testing.T, js jetstream.JetStream) []stored {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		j, err := messages.Decode(m.Data)
		if err != nil {
			t.Fatalf("job %d: %v", seq, err)
		}
		out = append(out, stored{Subject: m.Subject, Job: *j})
	}
	return out
}

// item is one notification item, as BC writes it.
func item(state, changeType, resource, at string) map[string]any {
	it := map[string]any{
		"subscriptionId":       bcSubID,
		"expirationDateTime":   "2026-12-02T10:00:00Z",
		"resource":             resource,
		"changeType":           changeType,
		"lastModifiedDateTime": at,
	}
	if state != "" {
		it["clientState"] = state
	}
	return it
}

func body(items ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"value": items})
	if err != nil {
		panic(err)
	}
	return b
}

func customerRes(id string) string {
	return "api/v2.0/companies(" + companyID + ")/customers(" + id + ")"
}

// newBC starts a small BC fake; now, when set, is its clock.
func newBC(t *testing.T, now func() time.Time) *bctest.Server {
	t.Helper()
	bc := bctest.NewServer(bctest.Options{
		Locations: 1, ShipmentMethods: 3, Customers: 5, PriceGroups: 1, Items: 2, SalesOrders: -1, Now: now,
	})
	t.Cleanup(bc.Close)
	return bc
}

// bcClient is a real BC client of bc.
func bcClient(t *testing.T, bc *bctest.Server) *bcclient.Client {
	t.Helper()
	ts := bcclient.NewTokenSource(context.Background(), bcclient.Credentials{
		AuthorityURL: bc.URL(), TenantID: bc.TenantID(), ClientID: bc.ClientID(), ClientSecret: bc.ClientSecret(),
	})
	c, err := bcclient.New(bcclient.Config{
		APIURL: bc.URL(), TenantID: bc.TenantID(), Environment: bc.Environment(), CompanyName: bc.CompanyName(),
		TokenSource: ts, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clock is a fake clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// zerologAt logs everything to w.
func zerologAt(w io.Writer) zerolog.Logger { return zerolog.New(w).Level(zerolog.TraceLevel) }

// assertNoSecret fails when text holds a secret of the tests.
func assertNoSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range append([]string{testState, wrongState, testToken}, secrets...) {
		if strings.Contains(text, s) {
			t.Errorf("%s holds the secret %q:\n%s", what, s, text)
		}
	}
}
