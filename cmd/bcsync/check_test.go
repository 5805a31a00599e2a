package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Test credentials of the fakes: distinctive, so that the tests can tell
// that no output holds them.
const (
	checkSecret      = "Check~Secret.Value_0123456789abcdefXYZ"
	checkWrongSecret = "Wrong~Secret.Value_9876543210zyxwvuTS"
	checkAPIKey      = "ipaas-Key.for-check-tests_0123456789abcdef"
	checkWrongAPIKey = "ipaas-Key.expired_fedcba9876543210"
)

// checkFakes are what `bcsync check` runs against in the tests: the BC
// fake, behind a proxy that records every bearer token sent to it, and
// the iPaaS.com fake.
type checkFakes struct {
	bc    *bctest.Server
	bcURL string
	ip    *ipaastest.Server
	dir   string

	mu      sync.Mutex
	bearers []string
	configs int
}

func newCheckFakes(t *testing.T) *checkFakes {
	t.Helper()
	f := &checkFakes{
		bc: bctest.New(bctest.Options{
			ClientSecret: checkSecret,
			Locations:    3, ShipmentMethods: 2, Customers: 3, PriceGroups: 2, Items: -1, SalesOrders: -1,
		}),
		ip:  ipaastest.NewServer(ipaastest.Options{APIKey: checkAPIKey}),
		dir: t.TempDir(),
	}
	t.Cleanup(f.ip.Close)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			f.mu.Lock()
			f.bearers = append(f.bearers, tok)
			f.mu.Unlock()
		}
		f.bc.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	f.bcURL = hs.URL
	return f
}

// checkSub is one subscription of a test configuration; empty fields mean
// the fakes' values.
type checkSub struct {
	name      string
	company   string
	secret    string // written to the secret file
	secretEnv string // read the secret from this variable instead of a file
	service   string // price_group_service
	apiKey    string
}

// config writes a configuration file for the fakes and returns its path.
func (f *checkFakes) config(t *testing.T, natsURL string, subs ...checkSub) string {
	t.Helper()
	f.mu.Lock()
	f.configs++
	n := f.configs
	f.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "nats:\n  url: %q\nsubscriptions:\n", natsURL)
	for _, s := range subs {
		secretLine := "client_secret_env: " + s.secretEnv
		if s.secretEnv == "" {
			path := filepath.Join(f.dir, fmt.Sprintf("%d-%s.secret", n, s.name))
			if err := writeFile(path, cmpOr(s.secret, checkSecret)+"\n"); err != nil {
				t.Fatal(err)
			}
			secretLine = "client_secret_file: " + path
		}
		keyFile := filepath.Join(f.dir, fmt.Sprintf("%d-%s.key", n, s.name))
		if err := writeFile(keyFile, cmpOr(s.apiKey, checkAPIKey)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, `  - name: %s
    company_name: %q
    tenant_id: %s
    client_id: %s
    %s
    environment: %s
    api_url: %s
    authority_url: %s
    price_group_service: %s
    ipaas:
      base_url: %s
      api_key_file: %s
      system_id: %d
`, s.name, cmpOr(s.company, f.bc.CompanyName()), f.bc.TenantID(), f.bc.ClientID(), secretLine,
			f.bc.Environment(), f.bcURL, f.bcURL, cmpOr(s.service, f.bc.PriceGroupService()),
			f.ip.URL(), keyFile, f.ip.SystemID())
	}
	path := filepath.Join(f.dir, fmt.Sprintf("bcsync-%d.yaml", n))
	if err := writeFile(path, b.String()); err != nil {
		t.Fatal(err)
	}
	return path
}

func cmpOr(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

var bctestTokenRE = regexp.MustCompile(`bctest\.[A-Za-z0-9_-]{16,}`)

// assertNoSecrets fails the test if the output holds a client secret, an
// API key or a bearer token the fakes saw.
func (f *checkFakes) assertNoSecrets(t *testing.T, output string) {
	t.Helper()
	f.mu.Lock()
	secrets := append([]string{checkSecret, checkWrongSecret, checkAPIKey, checkWrongAPIKey}, f.bearers...)
	bearers := len(f.bearers)
	f.mu.Unlock()
	if bearers == 0 {
		t.Error("BC saw no bearer token: the test checks nothing")
	}
	for _, s := range secrets {
		if strings.Contains(output, s) {
			t.Errorf("the output holds the secret %q:\n%s", s, output)
		}
	}
	if m := bctestTokenRE.FindString(output); m != "" {
		t.Errorf("the output holds an access token %q", m)
	}
}

// checkLines returns the lines of a checklist that start with mark.
func checkLines(out, mark string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, mark) {
			lines = append(lines, l)
		}
	}
	return lines
}

func checkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestCheckHealthy(t *testing.T) {
	t.Parallel()
	f := newCheckFakes(t)
	b := brokertest.New(t)
	path := f.config(t, b.ClientURL(), checkSub{name: "a"}, checkSub{name: "b"})
	ctx := checkCtx(t)

	start := time.Now()
	code, out, errOut := runCmd(t, ctx, "", "check", "--config", path)
	t.Logf("check of 2 subscriptions and NATS: %v", time.Since(start))
	if code != 0 {
		t.Fatalf("check exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if failed := checkLines(out, "✘"); len(failed) > 0 {
		t.Errorf("failed items on a healthy setup: %q", failed)
	}
	want := []string{"✔ config: " + path + ": 2 subscription(s): a, b"}
	for _, sub := range []string{"a", "b"} {
		for _, check := range []string{"token", "company", "read locations", "read shipmentMethods", "read customers", "read items",
			"read " + f.bc.PriceGroupService(), "ipaas key"} {
			want = append(want, "✔ "+check+" for "+sub+": ")
		}
	}
	want = append(want, "✔ nats: connected to ", "✔ stream BCSYNC_JOBS: ", "✔ stream BCSYNC_DLQ: ", "✔ stream BCSYNC_ADVISORIES: ", "all 21 checks passed")
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// One page of one row per entity set: the check reads no more.
	st := f.bc.Stats()
	for _, set := range []string{bctest.SetLocations, bctest.SetShipmentMethods, bctest.SetCustomers, f.bc.PriceGroupService()} {
		if n := st.DataRequests[set]; n != 2 {
			t.Errorf("%s read with %d requests for 2 subscriptions, want 2", set, n)
		}
	}
	f.assertNoSecrets(t, out+errOut)

	code, out, errOut = runCmd(t, ctx, "", "check", "--config", path, "--subscription", "b")
	if code != 0 || strings.Contains(out, " for a:") || !strings.Contains(out, "✔ company for b:") || !strings.Contains(out, "all 13 checks passed") {
		t.Errorf("check --subscription b exited %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, ctx, "", "check", "--config", path, "--subscription", "nope")
	if code == 0 || !strings.Contains(out, `✘ subscription for nope: no subscription "nope"`) || !strings.Contains(out, "one of: a, b") {
		t.Errorf("check --subscription nope exited %d\n%s", code, out)
	}
}

// TestCheckShowsEveryFailureWithItsFix is the acceptance test: a wrong
// client secret, a wrong company name and a missing permission, each in its
// own subscription, give three failed items in one run, each with its fix.
func TestCheckShowsEveryFailureWithItsFix(t *testing.T) {
	// Not parallel: it sets an environment variable.
	f := newCheckFakes(t)
	b := brokertest.New(t)
	t.Setenv("BCSYNC_CHECKTEST_A_SECRET", checkWrongSecret)
	f.bc.SetForbidden(bctest.SetCustomers, true)
	path := f.config(t, b.ClientURL(),
		checkSub{name: "a", secretEnv: "BCSYNC_CHECKTEST_A_SECRET"},
		checkSub{name: "b", company: "CRONUS US"},
		checkSub{name: "c"},
	)
	code, out, errOut := runCmd(t, checkCtx(t), "", "check", "--config", path)
	if code == 0 {
		t.Errorf("check exited 0 with three failures\n%s", out)
	}
	failed := checkLines(out, "✘")
	if len(failed) != 3 {
		t.Fatalf("%d failed items, want 3:\n%s\nstderr:\n%s", len(failed), out, errOut)
	}
	tokenFix := (&bcclient.TokenError{Codes: []int{7000215}}).Fix()
	for i, want := range [][]string{
		{"✘ token for a: ", "AADSTS7000215", "— fix: " + tokenFix, "the environment variable BCSYNC_CHECKTEST_A_SECRET"},
		{"✘ company for b: ", "company 'CRONUS US' not found", "— fix: ", "did you mean 'CRONUS USA, Inc.'", "Companies page"},
		{"✘ read customers for c: ", "lacks permission to read customers", "Authorization_InsufficientPermissions",
			"— fix: in Business Central, open Microsoft Entra Applications", f.bc.ClientID(), "read access to the Customer table"},
	} {
		for _, w := range want {
			if !strings.Contains(failed[i], w) {
				t.Errorf("failed item %d lacks %q:\n%s", i+1, w, failed[i])
			}
		}
	}
	// What works around the failures is still checked and shown.
	for _, w := range []string{"✔ ipaas key for a:", "✔ ipaas key for b:", "✔ token for b:", "✔ company for c:",
		"✔ read locations for c:", "✔ read " + f.bc.PriceGroupService() + " for c:", "✔ stream BCSYNC_DLQ:", "3 of 18 checks failed"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(errOut, "3 of 18 checks failed") {
		t.Errorf("stderr %q", errOut)
	}
	f.assertNoSecrets(t, out+errOut)
}

// checkJSONItem is an item of `bcsync check --json`, with the documented
// field names.
type checkJSONItem struct {
	Subscription string  `json:"subscription"`
	Check        string  `json:"check"`
	OK           *bool   `json:"ok"`
	Warning      bool    `json:"warning"`
	Detail       string  `json:"detail"`
	Fix          *string `json:"fix"`
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	f := newCheckFakes(t)
	f.bc.SetForbidden(bctest.SetLocations, true)
	// No NATS URL: a warning, not a failure.
	path := f.config(t, "", checkSub{name: "j", service: "PriceGroupsX", apiKey: checkWrongAPIKey})
	code, out, errOut := runCmd(t, checkCtx(t), "", "check", "--config", path, "--json")
	if code == 0 {
		t.Errorf("check --json exited 0 with failures")
	}
	var items []checkJSONItem
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, out)
	}
	byCheck := map[string]checkJSONItem{}
	for _, it := range items {
		if it.OK == nil || it.Fix == nil || it.Check == "" || it.Detail == "" {
			t.Errorf("incomplete item %+v", it)
			continue
		}
		byCheck[it.Check] = it
	}
	for check, want := range map[string][]string{
		"read locations":    {"in Business Central, open Microsoft Entra Applications", "read access to the Location table"},
		"read PriceGroupsX": {"publish the web service PriceGroupsX", "Web Services page"},
		"ipaas key":         {"the iPaaS.com API key was refused", "create a new company API key", "the file " + filepath.Join(f.dir, "1-j.key")},
	} {
		it, ok := byCheck[check]
		if !ok {
			t.Errorf("no item %q in %s", check, out)
			continue
		}
		if *it.OK || it.Subscription != "j" {
			t.Errorf("%q: ok=%v subscription=%q, want a failure of j", check, *it.OK, it.Subscription)
		}
		for _, w := range want {
			if !strings.Contains(*it.Fix, w) {
				t.Errorf("%q: fix %q lacks %q", check, *it.Fix, w)
			}
		}
	}
	if it := byCheck["ipaas key"]; !strings.Contains(it.Detail, "AUTH-1001") {
		t.Errorf("ipaas key detail %q lacks the AUTH code", it.Detail)
	}
	nats := byCheck["nats"]
	if nats.OK == nil || !*nats.OK || !nats.Warning || !strings.Contains(nats.Detail, "no NATS URL: workers would start an embedded server (development only)") {
		t.Errorf("nats item %+v, want a warning", nats)
	}
	passed := 0
	for _, it := range items {
		if it.OK != nil && *it.OK {
			passed++
		}
	}
	if len(items) != 10 || passed != 7 {
		t.Errorf("%d items, %d passed; want 10 and 7:\n%s", len(items), passed, out)
	}
	f.assertNoSecrets(t, out+errOut)
}

func TestCheckMissingStreams(t *testing.T) {
	t.Parallel()
	f := newCheckFakes(t)
	// A NATS server with JetStream but without bcsync's streams.
	b, err := broker.Connect(context.Background(), broker.Options{DataDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	path := f.config(t, b.ClientURL(), checkSub{name: "s"})
	code, out, _ := runCmd(t, checkCtx(t), "", "check", "--config", path)
	if code == 0 {
		t.Errorf("check exited 0 without streams")
	}
	failed := checkLines(out, "✘")
	if len(failed) != 3 {
		t.Fatalf("failed items %q, want the three streams:\n%s", failed, out)
	}
	for i, stream := range []string{"BCSYNC_JOBS", "BCSYNC_DLQ"} {
		want := "✘ stream " + stream + ": stream " + stream + " does not exist — fix: start a worker once (it creates the streams), or create them with deploy/streams/*.json"
		if !strings.HasPrefix(failed[i], want) {
			t.Errorf("failed item %q, want it to start %q", failed[i], want)
		}
	}
	if !strings.Contains(out, "✔ nats: connected to ") {
		t.Errorf("no nats item:\n%s", out)
	}

	// An unreachable server is a failure with its fix too.
	path = f.config(t, "nats://127.0.0.1:1", checkSub{name: "s"})
	code, out, _ = runCmd(t, checkCtx(t), "", "check", "--config", path)
	if failed := checkLines(out, "✘"); code == 0 || len(failed) != 1 || !strings.Contains(failed[0], "✘ nats: ") || !strings.Contains(failed[0], "fix: check nats.url") {
		t.Errorf("check against a closed port exited %d:\n%s", code, out)
	}
}

func TestCheckConfigProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := writeFile(path, "subscriptions:\n  - name: bad\n    environment: Production\n"); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(t, context.Background(), "", "check", "--config", path)
	failed := checkLines(out, "✘ config for bad: ")
	if code == 0 || len(failed) < 3 || len(failed) != len(checkLines(out, "✘")) {
		t.Fatalf("check of a bad file exited %d, failed items %q:\n%s", code, failed, out)
	}
	for _, field := range []string{"company_name", "tenant_id", "client_id"} {
		i := slices.IndexFunc(failed, func(l string) bool { return strings.Contains(l, "subscriptions.bad."+field) })
		if i < 0 {
			t.Errorf("no item for %s:\n%s", field, out)
		} else if !strings.Contains(failed[i], " — fix: ") {
			t.Errorf("item without a fix: %s", failed[i])
		}
	}
	if passed := checkLines(out, "✔"); len(passed) > 0 {
		t.Errorf("checks ran past a file that does not load: %q", passed)
	}

	code, out, _ = runCmd(t, context.Background(), "", "check", "--config", filepath.Join(dir, "missing.yaml"), "--json")
	var items []checkJSONItem
	if err := json.Unmarshal([]byte(out), &items); err != nil || code == 0 || len(items) != 1 || *items[0].OK ||
		!strings.Contains(items[0].Detail, "cannot load the configuration") || !strings.Contains(*items[0].Fix, "--config") {
		t.Errorf("check of a missing file exited %d (%v):\n%s", code, err, out)
	}
}

func TestCheckSuggestCompanies(t *testing.T) {
	t.Parallel()
	names := []string{"CRONUS USA, Inc.", "CRONUS USA, Inc. (Copy)", "My Company", "Fabrikam Ltd"}
	for _, tc := range []struct {
		want    string
		suggest []string
	}{
		{"CRONUS US", []string{"CRONUS USA, Inc.", "CRONUS USA, Inc. (Copy)"}},
		{"cronus usa, inc", []string{"CRONUS USA, Inc.", "CRONUS USA, Inc. (Copy)"}},
		{"CRONUS USA Inc.", []string{"CRONUS USA, Inc."}},
		{"Fabrikam Limited", []string{"Fabrikam Ltd"}},
		{"my compnay", []string{"My Company"}},
		{"Contoso", nil},
	} {
		if got := suggestCompanies(tc.want, names, 3); !slices.Equal(got, tc.suggest) {
			t.Errorf("suggestCompanies(%q) = %q, want %q", tc.want, got, tc.suggest)
		}
	}
	if got := rankCompanies("Contoso", names)[0]; got != "My Company" {
		t.Errorf("closest to Contoso: %q", got)
	}
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"crönus", "cronus", 1}} {
		if d := levenshtein(tc.a, tc.b); d != tc.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
	if got := joinQuoted([]string{"a", "b", "c"}, "or"); got != "'a', 'b' or 'c'" {
		t.Errorf("joinQuoted = %q", got)
	}
}

// NATS without JetStream: check has a dedicated fix ("enable JetStream"),
// which it never prints.
func TestCheckNamesJetStreamWhenNATSHasNone(t *testing.T) {
	t.Parallel()
	f := newCheckFakes(t)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(srv.Shutdown)
	path := f.config(t, srv.ClientURL(), checkSub{name: "s"})
	code, out, _ := runCmd(t, checkCtx(t), "", "check", "--config", path)
	failed := checkLines(out, "✘ stream")
	if code == 0 || len(failed) != 3 {
		t.Fatalf("check exited %d with failed stream items %q:\n%s", code, failed, out)
	}
	for _, l := range failed {
		if !strings.Contains(l, "enable JetStream") {
			t.Errorf("item %q: want the fix to enable JetStream on the NATS servers", l)
		}
	}
}

// A stream made by hand with another retention: one a stream cannot change
// (to or from a work queue) makes every worker refuse to start, and check
// must fail it with the fix, not pass it; one a worker converts (limits and
// interest) must pass, not send the operator to delete the dead letters.
func TestCheckStreamsMadeByHand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		stream    string
		retention jetstream.RetentionPolicy
		refused   bool // by the workers, and so by check
	}{
		{"BCSYNC_JOBS", jetstream.LimitsPolicy, true},
		{"BCSYNC_ADVISORIES", jetstream.LimitsPolicy, true},
		{"BCSYNC_DLQ", jetstream.InterestPolicy, false},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			t.Parallel()
			f := newCheckFakes(t)
			b, err := broker.Connect(context.Background(), broker.Options{DataDir: t.TempDir(), Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			ctx := context.Background()
			o := broker.StreamOptions{}
			for _, c := range []jetstream.StreamConfig{broker.JobsStreamConfig(o), broker.DLQStreamConfig(o), broker.AdvisoriesStreamConfig(o)} {
				if c.Name == tc.stream {
					c.Retention = tc.retention
				}
				if _, err := b.JS.CreateStream(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			path := f.config(t, b.ClientURL(), checkSub{name: "s"})
			code, out, _ := runCmd(t, checkCtx(t), "", "check", "--config", path)
			failed := checkLines(out, "✘ stream "+tc.stream)
			// What a worker does at start-up (after check: a worker converts
			// the streams it can):
			if werr := broker.EnsureStreams(ctx, b.JS, o); (werr != nil) != tc.refused {
				t.Fatalf("precondition: the worker's EnsureStreams: %v, want refused %v", werr, tc.refused)
			}
			switch {
			case !tc.refused && (code != 0 || len(failed) > 0):
				t.Errorf("check exited %d, failing %q, on a stream workers start on:\n%s", code, failed, out)
			case tc.refused && (code == 0 || len(failed) != 1 || !strings.Contains(failed[0], strings.ToLower(tc.retention.String())+" retention") ||
				!strings.Contains(failed[0], "nats stream rm "+tc.stream)):
				t.Errorf("check exited %d on a stream workers refuse; want its item to name the retention and the fix:\n%s", code, out)
			}
		})
	}
}
