package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, minimalYAML, baseEnv())
	want := Config{
		NATS:    NATS{DataDir: "./data", DuplicateWindow: 2 * time.Minute, Replicas: 1},
		Log:     Log{Level: "info", Format: "json"},
		Webhook: WebhookServer{Listen: ":8080", MaxBodyBytes: 4 << 20},
		Subscriptions: []Subscription{{
			Name:              "contoso",
			Version:           "v2.0",
			CompanyName:       "CRONUS USA, Inc.",
			TenantID:          "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7",
			ClientID:          "0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d",
			ClientSecretEnv:   "BCSYNC_CONTOSO_CLIENT_SECRET",
			Scope:             "https://api.businesscentral.dynamics.com/.default",
			GrantType:         "client_credentials",
			Environment:       "Production",
			APIURL:            "https://api.businesscentral.dynamics.com",
			AuthorityURL:      "https://login.microsoftonline.com",
			PriceGroupService: "CustomerPriceGroups",
			PageSize:          1000,
			Throttling:        Throttling{RequestsPerWindow: 5400, Window: 5 * time.Minute, MaxConcurrency: 5},
			IPaaS: IPaaS{
				BaseURL:    "https://api.ipaas.com",
				APIKeyEnv:  "BCSYNC_CONTOSO_IPAAS_API_KEY",
				SystemID:   123,
				Throttling: Throttling{RequestsPerWindow: 500, Window: 60 * time.Second, MaxConcurrency: 10},
			},
			Worker: Worker{Concurrency: 8, MaxDeliver: 10, AckWait: 60 * time.Second, MaxAckPending: 1000,
				BackoffInitial: time.Second, BackoffMax: 5 * time.Minute},
			Webhook: Webhook{Resources: []string{"customers", "shipmentMethods"},
				ClientStateEnv: "BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE", RenewBefore: 24 * time.Hour},
			Poll: Poll{Interval: 5 * time.Minute, Types: []string{"location"}},
		}},
	}
	got := *cfg
	// Secrets are compared apart: they are pointers.
	s := &got.Subscriptions[0]
	if s.ClientSecret.Reveal() != testClientSecret || s.IPaaS.APIKey.Reveal() != testAPIKey {
		t.Error("secrets not resolved")
	}
	s.ClientSecret, s.IPaaS.APIKey = Secret{}, Secret{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ExampleYAML() != string(data) {
		t.Error("ExampleYAML differs from testdata/example.yaml")
	}
	secretFile := writeFile(t, "fabrikam", testClientSecret+"\n")
	env := baseEnv()
	env["BCSYNC_FABRIKAM_EU_CLIENT_SECRET_FILE"] = secretFile
	env["BCSYNC_FABRIKAM_EU_IPAAS_API_KEY"] = testAPIKey
	env["BCSYNC_FABRIKAM_EU_WEBHOOK_CLIENT_STATE"] = testClientState
	cfg := mustParse(t, ExampleYAML(), env)
	if got := cfg.Names(); !reflect.DeepEqual(got, []string{"contoso", "fabrikam-eu"}) {
		t.Fatalf("names %v", got)
	}
	// The first subscription spells out every default: it must equal the
	// defaults Parse applies.
	min := mustParse(t, minimalYAML, baseEnv())
	ex, def := cfg.Subscriptions[0], min.Subscriptions[0]
	ex.ClientSecret, ex.IPaaS.APIKey, def.ClientSecret, def.IPaaS.APIKey = Secret{}, Secret{}, Secret{}, Secret{}
	if !reflect.DeepEqual(ex, def) {
		t.Errorf("the example's values differ from the defaults:\nexample  %+v\ndefaults %+v", ex, def)
	}
	if !reflect.DeepEqual(cfg.NATS, min.NATS) || !reflect.DeepEqual(cfg.Log, min.Log) || !reflect.DeepEqual(cfg.Webhook, min.Webhook) {
		t.Errorf("the example's global values differ from the defaults")
	}
	fab, _ := cfg.Subscription("fabrikam-eu")
	if fab.ClientSecret.Reveal() != testClientSecret || fab.ClientSecretFile != secretFile || fab.ClientSecretEnv != "" {
		t.Errorf("fabrikam secret: file %q env %q", fab.ClientSecretFile, fab.ClientSecretEnv)
	}
	if fab.TenantID != "fabrikam.onmicrosoft.com" || fab.IPaaS.SystemID != 456 || fab.PageSize != 1000 {
		t.Errorf("fabrikam: %+v", fab)
	}
	if w := fab.Webhook; !w.Enabled || w.ClientState.Reveal() != testClientState || w.NotificationURL != "https://bcsync.example.com/webhook/fabrikam-eu" ||
		!reflect.DeepEqual(w.Resources, []string{"customers", "shipmentMethods"}) || w.RenewBefore != 24*time.Hour {
		t.Errorf("fabrikam webhook: %+v", w)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	env := baseEnv()
	for k, v := range map[string]string{
		"NATS_URL":                               "nats://nats-1:4222,nats://nats-2:4222",
		"BCSYNC_NATS_URL":                        "nats://loses:4222", // NATS_URL wins
		"NATS_CREDS":                             "",                  // empty: unset
		"BCSYNC_DATA_DIR":                        "/var/lib/bcsync",
		"BCSYNC_NATS_DUPLICATE_WINDOW":           "5m",
		"BCSYNC_LOG_LEVEL":                       "DEBUG",
		"BCSYNC_LOG_FORMAT":                      "console",
		"BCSYNC_CONTOSO_TENANT_ID":               "contoso.onmicrosoft.com",
		"BCSYNC_CONTOSO_COMPANY_NAME":            "  Contoso Ltd.  ",
		"BCSYNC_CONTOSO_ENVIRONMENT":             "Sandbox",
		"BCSYNC_CONTOSO_PAGE_SIZE":               "250",
		"BCSYNC_CONTOSO_THROTTLING_WINDOW":       "1m",
		"BCSYNC_CONTOSO_IPAAS_SYSTEM_ID":         "77",
		"BCSYNC_CONTOSO_IPAAS_BASE_URL":          "https://stagingapi.ipaas.com/",
		"BCSYNC_CONTOSO_IPAAS_THROTTLING_WINDOW": "30s",
		"BCSYNC_CONTOSO_WORKER_CONCURRENCY":      "16",
		"BCSYNC_CONTOSO_WORKER_BACKOFF_MAX":      "10m",
		"BCSYNC_CONTOSO_NAME":                    "renamed", // name has no variable
	} {
		env[k] = v
	}
	cfg := mustParse(t, minimalYAML, env)
	s, ok := cfg.Subscription("contoso")
	if !ok {
		t.Fatal("contoso not found")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"nats.url", cfg.NATS.URL, "nats://nats-1:4222,nats://nats-2:4222"},
		{"nats.creds_file", cfg.NATS.CredsFile, ""},
		{"nats.data_dir", cfg.NATS.DataDir, "/var/lib/bcsync"},
		{"nats.duplicate_window", cfg.NATS.DuplicateWindow, 5 * time.Minute},
		{"log.level", cfg.Log.Level, "debug"},
		{"log.format", cfg.Log.Format, "console"},
		{"tenant_id", s.TenantID, "contoso.onmicrosoft.com"},
		{"company_name", s.CompanyName, "Contoso Ltd."},
		{"environment", s.Environment, "Sandbox"},
		{"page_size", s.PageSize, 250},
		{"throttling.window", s.Throttling.Window, time.Minute},
		{"throttling.requests_per_window", s.Throttling.RequestsPerWindow, 5400},
		{"ipaas.system_id", s.IPaaS.SystemID, 77},
		{"ipaas.base_url", s.IPaaS.BaseURL, "https://stagingapi.ipaas.com"},
		{"ipaas.throttling.window", s.IPaaS.Throttling.Window, 30 * time.Second},
		{"worker.concurrency", s.Worker.Concurrency, 16},
		{"worker.backoff_max", s.Worker.BackoffMax, 10 * time.Minute},
		{"name", s.Name, "contoso"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEnvOverrideProblems(t *testing.T) {
	t.Parallel()
	env := baseEnv()
	env["BCSYNC_CONTOSO_PAGE_SIZE"] = "lots"
	env["BCSYNC_CONTOSO_WORKER_ACK_WAIT"] = "60"
	env["BCSYNC_CONTOSO_IPAAS_SYSTEM_ID"] = "0"
	_, err := Parse([]byte(minimalYAML), MapEnv(env))
	ps := problems(t, err)
	want := map[string]string{
		"subscriptions.contoso.page_size":       "BCSYNC_CONTOSO_PAGE_SIZE",
		"subscriptions.contoso.worker.ack_wait": "BCSYNC_CONTOSO_WORKER_ACK_WAIT",
		"subscriptions.contoso.ipaas.system_id": "BCSYNC_CONTOSO_IPAAS_SYSTEM_ID",
	}
	if len(ps) != len(want) {
		t.Fatalf("want %d problems:\n%v", len(want), err)
	}
	for _, p := range ps {
		if want[p.Path] != p.EnvVar {
			t.Errorf("%s: EnvVar %q, want %q", p.Path, p.EnvVar, want[p.Path])
		}
		if !strings.Contains(p.Error(), "(from $"+p.EnvVar+")") {
			t.Errorf("%q does not name the variable", p.Error())
		}
	}
}

func TestEnvOverridesFillMissing(t *testing.T) {
	t.Parallel()
	env := baseEnv()
	env["BCSYNC_CONTOSO_TENANT_ID"] = "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7"
	env["BCSYNC_CONTOSO_IPAAS_SYSTEM_ID"] = "9"
	cfg := mustParse(t, edited(t, func(m map[string]any) {
		delete(m, "tenant_id")
		delete(m, "ipaas")
	}), env)
	if s := cfg.Subscriptions[0]; s.IPaaS.SystemID != 9 || s.TenantID == "" {
		t.Errorf("got %+v", s)
	}
}

func TestSecretFromEnv(t *testing.T) {
	t.Parallel()
	env := baseEnv()
	env["MY_BC_SECRET"] = "from-my-variable~x"
	cfg := mustParse(t, edited(t, set("client_secret_env", "MY_BC_SECRET")), env)
	if got := cfg.Subscriptions[0].ClientSecret.Reveal(); got != "from-my-variable~x" {
		t.Errorf("client secret %q", got)
	}
	if got := cfg.Subscriptions[0].IPaaS.APIKey.Reveal(); got != testAPIKey {
		t.Errorf("api key %q", got)
	}
}

func TestSecretFromFile(t *testing.T) {
	t.Parallel()
	clientFile := writeFile(t, "client", testClientSecret+"\r\n")
	keyFile := writeFile(t, "key", testAPIKey)
	cfg := mustParse(t, edited(t, func(m map[string]any) {
		m["client_secret_file"] = clientFile
		set("ipaas.api_key_file", keyFile)(m)
	}), nil)
	s := cfg.Subscriptions[0]
	if s.ClientSecret.Reveal() != testClientSecret {
		t.Errorf("client secret %q: want the trailing newline trimmed", s.ClientSecret.Reveal())
	}
	if s.IPaaS.APIKey.Reveal() != testAPIKey {
		t.Errorf("api key %q", s.IPaaS.APIKey.Reveal())
	}
	if s.ClientSecretEnv != "" || s.IPaaS.APIKeyEnv != "" {
		t.Errorf("env names defaulted although files are set: %q %q", s.ClientSecretEnv, s.IPaaS.APIKeyEnv)
	}
	// The file may also come from the environment.
	env := map[string]string{"BCSYNC_CONTOSO_CLIENT_SECRET_FILE": clientFile, "BCSYNC_CONTOSO_IPAAS_API_KEY_FILE": keyFile}
	cfg = mustParse(t, minimalYAML, env)
	if cfg.Subscriptions[0].ClientSecret.Reveal() != testClientSecret {
		t.Error("client secret file from the environment not read")
	}
}

func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, minimalYAML, baseEnv())
	s := cfg.Subscriptions[0]
	type holder struct{ sub Subscription } // unexported: fmt cannot call methods
	outputs := map[string]string{
		"%v":          fmt.Sprintf("%v", cfg),
		"%+v":         fmt.Sprintf("%+v", cfg),
		"%#v":         fmt.Sprintf("%#v", cfg),
		"%s":          fmt.Sprintf("%s", s.ClientSecret),
		"%q":          fmt.Sprintf("%q", s.ClientSecret),
		"%x":          fmt.Sprintf("%x", s.ClientSecret),
		"%d":          fmt.Sprintf("%d", s.IPaaS.APIKey),
		"%+v sub":     fmt.Sprintf("%+v", s),
		"%#v sub":     fmt.Sprintf("%#v", s),
		"unexported":  fmt.Sprintf("%+v %#v", holder{s}, holder{s}),
		"String":      s.ClientSecret.String() + s.IPaaS.APIKey.GoString(),
		"Println":     fmt.Sprintln(s.ClientSecret, &s.ClientSecret, s.IPaaS),
		"json secret": mustJSON(t, s.ClientSecret),
		"json":        mustJSON(t, cfg),
		"yaml":        mustYAML(t, cfg),
		"yaml secret": mustYAML(t, map[string]any{"s": s.ClientSecret}),
	}
	for what, out := range outputs {
		assertNoSecret(t, what, out)
	}
	if !strings.Contains(outputs["%+v"], "ClientSecret:[redacted]") {
		t.Errorf("%%+v: want ClientSecret:[redacted] in %s", outputs["%+v"])
	}
	if outputs["json secret"] != `"[redacted]"` {
		t.Errorf("json secret %s", outputs["json secret"])
	}
	if strings.Contains(outputs["json"], "redacted") {
		t.Errorf("json of the config serializes the secrets: %s", outputs["json"])
	}
	var zero Secret
	if !zero.IsZero() || zero.Reveal() != "" || s.ClientSecret.IsZero() {
		t.Error("IsZero")
	}
}

// TestSecretsNeverInErrors makes every secret problem happen next to a
// resolved secret and checks that no error shows either.
func TestSecretsNeverInErrors(t *testing.T) {
	t.Parallel()
	guid := "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	env := baseEnv()
	env["BCSYNC_CONTOSO_CLIENT_SECRET"] = guid
	// A secret pasted where a variable name or a file name belongs.
	_, err := Parse([]byte(edited(t, func(m map[string]any) {
		set("ipaas.api_key_env", testAPIKey)(m)
		m["page_size"] = 0
	})), MapEnv(env))
	ps := problems(t, err)
	assertNoSecret(t, "error", err.Error())
	if strings.Contains(err.Error(), guid) {
		t.Errorf("the GUID-shaped secret shows: %v", err)
	}
	if len(ps) != 3 {
		t.Errorf("want 3 problems:\n%v", err)
	}
	_, err = Parse([]byte(edited(t, set("client_secret_file", testClientSecret))), MapEnv(baseEnv()))
	problems(t, err)
	assertNoSecret(t, "error", err.Error())
	_, err = Parse([]byte(edited(t, set("client_secret", testClientSecret))), MapEnv(baseEnv()))
	assertNoSecret(t, "error", err.Error())
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnknownFieldNamesFieldAndLine(t *testing.T) {
	t.Parallel()
	data := "nats:\n  url: \"\"\n  dataa_dir: x\nsubscriptions: []\nextra: 1\n"
	_, err := Parse([]byte(data), MapEnv(nil))
	ps := problems(t, err)
	byPath := map[string]*FieldError{}
	for _, p := range ps {
		byPath[p.Path] = p
	}
	if p := byPath["nats.dataa_dir"]; p == nil || p.Line != 3 || !strings.Contains(p.Fix, `"data_dir"`) {
		t.Errorf("nats.dataa_dir: got %v", p)
	}
	if p := byPath["extra"]; p == nil || p.Line != 5 || p.Problem != "unknown field" {
		t.Errorf("extra: got %v", p)
	}
	if !strings.Contains(err.Error(), "nats.dataa_dir (line 3): unknown field") {
		t.Errorf("error text:\n%v", err)
	}
	// A key that is no plain name is quoted.
	_, err = Parse([]byte("\"a b.c\": 1\n"+minimalYAML), MapEnv(baseEnv()))
	if ps := problems(t, err); len(ps) != 1 || ps[0].Path != `"a b.c"` {
		t.Errorf("got %v", err)
	}
}

func TestParseError(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"subscriptions: [\n", "a: 1\na: 2\n", "a:\n\t- b\n"} {
		_, err := Parse([]byte(data), MapEnv(nil))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%q: want *ParseError, got %T %v", data, err, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: the error quotes the file: %v", data, err)
		}
	}
	_, err := Parse([]byte("a: 1\na: 2\n"), MapEnv(nil))
	var pe *ParseError
	if errors.As(err, &pe) && pe.Line != 2 {
		t.Errorf("line %d, want 2: %v", pe.Line, err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "bcsync.yaml", minimalYAML)
	cfg, err := Load(p, MapEnv(baseEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Subscription("contoso"); !ok {
		t.Error("contoso missing")
	}
	if _, ok := cfg.Subscription("other"); ok {
		t.Error("other found")
	}
	_, err = Load(p, MapEnv(nil))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != p || !strings.HasPrefix(err.Error(), "config: "+p+": 2 problems:") {
		t.Errorf("got %v", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Error("errors.As does not find a *FieldError")
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	t.Parallel()
	data := `
subscriptions:
  - &base
    name: contoso
    company_name: "CRONUS USA, Inc."
    tenant_id: 6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    environment: Production
    worker: &worker {concurrency: 4, max_ack_pending: 40}
    ipaas: {system_id: 123}
  - <<: *base
    name: contoso-test
    environment: Sandbox
    worker: *worker
`
	env := baseEnv()
	env["BCSYNC_CONTOSO_TEST_CLIENT_SECRET"] = testClientSecret
	env["BCSYNC_CONTOSO_TEST_IPAAS_API_KEY"] = testAPIKey
	cfg := mustParse(t, data, env)
	s, ok := cfg.Subscription("contoso-test")
	if !ok {
		t.Fatal("contoso-test missing")
	}
	if s.Environment != "Sandbox" || s.CompanyName != "CRONUS USA, Inc." || s.Worker.Concurrency != 4 || s.Worker.MaxAckPending != 40 || s.IPaaS.SystemID != 123 {
		t.Errorf("got %+v", s)
	}
	if s.ClientSecretEnv != "BCSYNC_CONTOSO_TEST_CLIENT_SECRET" {
		t.Errorf("client_secret_env %q", s.ClientSecretEnv)
	}
}

func TestEnvPrefix(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{"contoso": "BCSYNC_CONTOSO_", "fabrikam-eu": "BCSYNC_FABRIKAM_EU_", "a_1": "BCSYNC_A_1_"} {
		if got := EnvPrefix(name); got != want {
			t.Errorf("EnvPrefix(%q) = %q, want %q", name, got, want)
		}
	}
	for name, want := range map[string]bool{"contoso": true, "a-b_9": true, "": false, "Contoso": false, "a.b": false, strings.Repeat("x", 33): false} {
		if ValidName(name) != want {
			t.Errorf("ValidName(%q) != %v", name, want)
		}
	}
}

func TestPollSettings(t *testing.T) {
	t.Parallel()
	base := "subscriptions:\n  - name: contoso\n    company_name: C\n    tenant_id: 6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7\n    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d\n    environment: Production\n    ipaas: {system_id: 1}\n"
	env := MapEnv(map[string]string{"BCSYNC_CONTOSO_CLIENT_SECRET": "s3cret~value", "BCSYNC_CONTOSO_IPAAS_API_KEY": "k"})
	cfg, err := Parse([]byte(base+"    poll: {interval: 1m, types: [location, customer]}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Subscriptions[0].Poll; p.Interval != time.Minute || len(p.Types) != 2 {
		t.Errorf("poll = %+v", p)
	}
	cfg, err = Parse([]byte(base+"    poll: {interval: 0s}\n"), env)
	if err != nil || cfg.Subscriptions[0].Poll.Interval != 0 {
		t.Errorf("polling off: %+v, %v", cfg, err)
	}
	_, err = Parse([]byte(base+"    poll: {interval: 1s, types: [vendor]}\n"), env)
	for _, want := range []string{"poll.interval", "poll.types[0]", "10s", "location, shipping_method"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

// README: poll.types are "the types polled" (default [location]; "add the
// others as a safety net for lost notifications"). Products are synced,
// BC sends webhooks for items (which may be lost), and the worker runs a
// product delta (bcclient DeltaItems), but the configuration refuses it.
func TestPollTypesAcceptProduct(t *testing.T) {
	t.Parallel()
	y := minimalYAML + "    poll: {interval: 5m, types: [location, product]}\n"
	cfg, err := Parse([]byte(y), MapEnv(baseEnv()))
	if err != nil {
		t.Fatalf("poll.types [location, product]: %v", err)
	}
	if got := cfg.Subscriptions[0].Poll.Types; !slices.Equal(got, []string{"location", "product"}) {
		t.Errorf("poll.types = %v", got)
	}
}

// An explicit empty list is silently replaced by the default [location]:
// applyDefaults asks st.isSet("...poll.types"), but the decoder never marks
// a list as set, so the check cannot tell `types: []` from no setting.
func TestPollTypesExplicitEmptyIsKept(t *testing.T) {
	t.Parallel()
	for _, y := range []string{
		minimalYAML + "    poll: {interval: 5m, types: []}\n",
		minimalYAML + "    poll:\n      types: []\n",
	} {
		cfg, err := Parse([]byte(y), MapEnv(baseEnv()))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if got := cfg.Subscriptions[0].Poll.Types; len(got) != 0 {
			t.Errorf("poll.types: [] in the file became %v", got)
		}
	}
}
