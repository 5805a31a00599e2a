package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidationProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingFile := filepath.Join(dir, "no-such-file")

	const sub = "subscriptions.contoso."
	tests := []struct {
		name string
		yaml string // used when set; else minimalYAML after edit
		edit func(map[string]any)
		env  func(map[string]string)
		path string // the problem's path
		want string // in the problem or its fix
	}{
		{name: "no subscriptions", yaml: "log: {level: info}\n", path: "subscriptions", want: "add at least one"},
		{name: "empty file", yaml: "", path: "subscriptions", want: "add at least one"},
		{name: "subscriptions not a list", yaml: "subscriptions:\n  name: contoso\n", path: "subscriptions", want: "start each entry with '- '"},
		{name: "name missing", edit: del("name"), path: "subscriptions[0].name", want: "set it to a short unique name"},
		{name: "name upper case", edit: set("name", "Contoso"), path: "subscriptions[0].name", want: "choose a name like contoso"},
		{name: "name with a dot", edit: set("name", "con.toso"), path: "subscriptions[0].name", want: "NATS subjects"},
		{name: "name too long", edit: set("name", strings.Repeat("a", 33)), path: "subscriptions[0].name", want: "up to 32"},
		{name: "version", edit: set("version", "v1.0"), path: sub + "version", want: "set it to v2.0"},
		{name: "company missing", edit: del("company_name"), path: sub + "company_name", want: "Companies page"},
		{name: "tenant missing", edit: del("tenant_id"), path: sub + "tenant_id", want: "Directory (tenant) ID"},
		{name: "tenant malformed", edit: set("tenant_id", "not a tenant"), path: sub + "tenant_id", want: "Directory (tenant) ID"},
		{name: "tenant short guid", edit: set("tenant_id", "6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f"), path: sub + "tenant_id", want: "contoso.onmicrosoft.com"},
		{name: "client id missing", edit: del("client_id"), path: sub + "client_id", want: "Application (client) ID of the Entra app registration"},
		{name: "client id not a guid", edit: set("client_id", "bcsync-app"), path: sub + "client_id", want: "Application (client) ID"},
		{name: "environment missing", edit: del("environment"), path: sub + "environment", want: "Production or Sandbox"},
		{name: "environment with a slash", edit: set("environment", "Prod/uction"), path: sub + "environment", want: "admin center"},
		{name: "scope", edit: set("scope", "https://api.businesscentral.dynamics.com/user_impersonation"), path: sub + "scope", want: DefaultScope},
		{name: "grant type", edit: set("grant_type", "password"), path: sub + "grant_type", want: "client_credentials"},
		{name: "api url http", edit: set("api_url", "http://bc.example.com"), path: sub + "api_url", want: "localhost or 127.0.0.1"},
		{name: "api url relative", edit: set("api_url", "api.businesscentral.dynamics.com"), path: sub + "api_url", want: "absolute https URL"},
		{name: "api url credentials", edit: set("api_url", "https://u:p@bc.example.com"), path: sub + "api_url", want: "remove them"},
		{name: "authority url scheme", edit: set("authority_url", "ftp://login.example.com"), path: sub + "authority_url", want: DefaultAuthorityURL},
		{name: "authority url query", edit: set("authority_url", "https://login.example.com/?x=1"), path: sub + "authority_url", want: "absolute https URL"},
		{name: "ipaas url http", edit: set("ipaas.base_url", "http://api.ipaas.com"), path: sub + "ipaas.base_url", want: DefaultIPaaSBaseURL},
		{name: "price group service", edit: set("price_group_service", "Customer Price/Groups"), path: sub + "price_group_service", want: "Web Services"},
		{name: "page size 0", edit: set("page_size", 0), path: sub + "page_size", want: "1000"},
		{name: "page size too large", edit: set("page_size", 20001), path: sub + "page_size", want: "between 1 and 20000"},
		{name: "page size not a number", edit: set("page_size", "many"), path: sub + "page_size", want: "digits only"},
		{name: "requests per window", edit: set("throttling.requests_per_window", 0), path: sub + "throttling.requests_per_window", want: "5400"},
		{name: "window", edit: set("throttling.window", "0s"), path: sub + "throttling.window", want: "5m"},
		{name: "window without unit", edit: set("throttling.window", 300), path: sub + "throttling.window", want: "with a unit"},
		{name: "max concurrency", edit: set("throttling.max_concurrency", -1), path: sub + "throttling.max_concurrency", want: "e.g. 5"},
		{name: "ipaas requests per window", edit: set("ipaas.throttling.requests_per_window", 0), path: sub + "ipaas.throttling.requests_per_window", want: "500"},
		{name: "ipaas window", edit: set("ipaas.throttling.window", "10ms"), path: sub + "ipaas.throttling.window", want: "1m"},
		{name: "ipaas max concurrency", edit: set("ipaas.throttling.max_concurrency", 0), path: sub + "ipaas.throttling.max_concurrency", want: "e.g. 10"},
		{name: "system id missing", edit: del("ipaas.system_id"), path: sub + "ipaas.system_id", want: "iPaaS.com subscription"},
		{name: "system id zero", edit: set("ipaas.system_id", 0), path: sub + "ipaas.system_id", want: "greater than 0"},
		{name: "system id negative", edit: set("ipaas.system_id", -5), path: sub + "ipaas.system_id", want: "iPaaS.com subscription"},
		{name: "worker concurrency", edit: set("worker.concurrency", 0), path: sub + "worker.concurrency", want: "e.g. 8"},
		{name: "worker max deliver", edit: set("worker.max_deliver", 1), path: sub + "worker.max_deliver", want: "2 or more"},
		{name: "worker ack wait", edit: set("worker.ack_wait", "4s"), path: sub + "worker.ack_wait", want: "60s"},
		{name: "worker ack wait not a duration", edit: set("worker.ack_wait", "a minute"), path: sub + "worker.ack_wait", want: "90s, 5m or 1h30m"},
		{name: "worker max ack pending", edit: func(m map[string]any) {
			set("worker.concurrency", 20)(m)
			set("worker.max_ack_pending", 10)(m)
		}, path: sub + "worker.max_ack_pending", want: "raise it"},
		{name: "worker backoff initial", edit: set("worker.backoff_initial", "0s"), path: sub + "worker.backoff_initial", want: "1s"},
		{name: "worker backoff max", edit: func(m map[string]any) {
			set("worker.backoff_initial", "10m")(m)
		}, path: sub + "worker.backoff_max", want: "5m"},
		{name: "client secret env unset", env: func(e map[string]string) { delete(e, "BCSYNC_CONTOSO_CLIENT_SECRET") },
			path: sub + "client_secret_env", want: "set BCSYNC_CONTOSO_CLIENT_SECRET to the Value of a client secret"},
		{name: "client secret env empty", env: func(e map[string]string) { e["BCSYNC_CONTOSO_CLIENT_SECRET"] = "" },
			path: sub + "client_secret_env", want: "set BCSYNC_CONTOSO_CLIENT_SECRET"},
		{name: "named client secret env unset", edit: set("client_secret_env", "CONTOSO_BC_SECRET"),
			path: sub + "client_secret_env", want: "set CONTOSO_BC_SECRET"},
		{name: "client secret env is not a name", edit: set("client_secret_env", "Zq8Q~pasted.secret"),
			path: sub + "client_secret_env", want: "not to the client secret itself"},
		{name: "client secret env and file", edit: func(m map[string]any) {
			m["client_secret_env"] = "X"
			m["client_secret_file"] = secretFile
		}, path: sub + "client_secret_file", want: "keep one of them"},
		{name: "client secret file missing", edit: set("client_secret_file", missingFile), path: sub + "client_secret_file", want: "make the file readable"},
		{name: "client secret file empty", edit: set("client_secret_file", emptyFile), path: sub + "client_secret_file", want: "Certificates & secrets"},
		{name: "client secret is its id", env: func(e map[string]string) { e["BCSYNC_CONTOSO_CLIENT_SECRET"] = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d" },
			path: sub + "client_secret_env", want: "use the secret's Value"},
		{name: "api key env unset", env: func(e map[string]string) { delete(e, "BCSYNC_CONTOSO_IPAAS_API_KEY") },
			path: sub + "ipaas.api_key_env", want: "set BCSYNC_CONTOSO_IPAAS_API_KEY to a company API key"},
		{name: "api key env and file", edit: func(m map[string]any) {
			set("ipaas.api_key_env", "K")(m)
			set("ipaas.api_key_file", secretFile)(m)
		}, path: sub + "ipaas.api_key_file", want: "keep one of them"},
		{name: "api key file missing", edit: set("ipaas.api_key_file", missingFile), path: sub + "ipaas.api_key_file", want: "api_key_env"},
		{name: "inline client secret", edit: set("client_secret", testClientSecret),
			path: sub + "client_secret", want: "never put the client secret in the file"},
		{name: "inline api key", edit: set("ipaas.api_key", testAPIKey),
			path: sub + "ipaas.api_key", want: "use api_key_env or api_key_file"},
		{name: "unknown field", edit: set("tenantid", "x"), path: sub + "tenantid", want: `did you mean "tenant_id"`},
		{name: "unknown nested field", edit: set("worker.concurency", 4), path: sub + "worker.concurency", want: `did you mean "concurrency"`},
		{name: "unknown field far from any", edit: set("colour", "blue"), path: sub + "colour", want: "the fields here are name, version"},
		{name: "section not a mapping", edit: set("worker", 5), path: sub + "worker", want: "indented `key: value`"},
		{name: "scalar given a list", edit: set("company_name", []any{"a", "b"}), path: sub + "company_name", want: "on one line"},
		{name: "env prefix collision", yaml: minimalYAML + `
  - name: contoso_ipaas
    company_name: B
    tenant_id: contoso.onmicrosoft.com
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    environment: Production
    ipaas: {system_id: 2}
`, env: func(e map[string]string) {
			e["BCSYNC_CONTOSO_IPAAS_CLIENT_SECRET"] = testClientSecret
			e["BCSYNC_CONTOSO_IPAAS_IPAAS_API_KEY"] = testAPIKey
		}, path: "subscriptions.contoso_ipaas.name", want: "BCSYNC_CONTOSO_IPAAS_CLIENT_ID"},
		{name: "duplicate name", yaml: minimalYAML + `
  - name: contoso
    company_name: B
    tenant_id: contoso.onmicrosoft.com
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    environment: Production
    ipaas: {system_id: 2}
`, path: "subscriptions[1].name", want: "its own name"},
		{name: "log level", yaml: "log: {level: verbose}\n" + minimalYAML, path: "log.level", want: "trace, debug, info, warn or error"},
		{name: "log format", yaml: "log: {format: xml}\n" + minimalYAML, path: "log.format", want: "json or console"},
		{name: "nats url scheme", yaml: "nats: {url: 'http://nats:4222'}\n" + minimalYAML, path: "nats.url", want: "nats://host:4222"},
		{name: "nats url credentials", yaml: "nats: {url: 'nats://u:p@nats:4222'}\n" + minimalYAML, path: "nats.url", want: "nats.creds_file"},
		{name: "nats url empty entry", yaml: "nats: {url: 'nats://a:4222,,nats://b:4222'}\n" + minimalYAML, path: "nats.url", want: "several separated by commas"},
		{name: "nats creds file", yaml: "nats: {creds_file: " + missingFile + "}\n" + minimalYAML, path: "nats.creds_file", want: "credentials (.creds) file"},
		{name: "nats tls key without cert", yaml: "nats: {tls: {key_file: " + secretFile + "}}\n" + minimalYAML, path: "nats.tls.cert_file", want: "remove key_file"},
		{name: "nats tls ca is a directory", yaml: "nats: {tls: {ca_file: " + dir + "}}\n" + minimalYAML, path: "nats.tls.ca_file", want: "CA certificate"},
		{name: "nats duplicate window", yaml: "nats: {duplicate_window: 0s}\n" + minimalYAML, path: "nats.duplicate_window", want: "2m"},
		{name: "two documents", yaml: minimalYAML + "---\nlog: {level: info}\n", path: "", want: "keep one document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := tt.yaml
			if data == "" && tt.edit != nil || tt.yaml == "" && tt.name != "empty file" {
				data = edited(t, tt.edit)
			}
			env := baseEnv()
			if tt.env != nil {
				tt.env(env)
			}
			cfg, err := Parse([]byte(data), MapEnv(env))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			assertNoSecret(t, "error", err.Error())
			var found *FieldError
			for _, p := range problems(t, err) {
				if p.Path == tt.path {
					found = p
				}
			}
			if found == nil {
				t.Fatalf("no problem with %q in:\n%v", tt.path, err)
			}
			if !strings.Contains(found.Problem+" — "+found.Fix, tt.want) {
				t.Errorf("problem %q: want %q in it", found.Error(), tt.want)
			}
			if found.Problem == "" || found.Fix == "" {
				t.Errorf("problem %q: empty problem or fix", found.Error())
			}
			if strings.Contains(found.Error(), "\n") {
				t.Errorf("problem %q spans lines", found.Error())
			}
		})
	}
}

// TestValidationOnlyTheProblem checks that each single mistake yields one
// problem, so that a user is not buried in follow-on noise.
func TestValidationOnlyTheProblem(t *testing.T) {
	t.Parallel()
	for _, edit := range []func(map[string]any){
		del("tenant_id"), set("page_size", "x"), set("page_size", 0), set("client_secret", "x"),
		set("tenantid", "x"), set("worker.ack_wait", "1"), set("api_url", "http://x"),
	} {
		_, err := Parse([]byte(edited(t, edit)), MapEnv(baseEnv()))
		if ps := problems(t, err); len(ps) != 1 {
			t.Errorf("want 1 problem, got:\n%v", err)
		}
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	t.Parallel()
	data := `
log:
  level: loud
subscriptions:
  - name: contoso
    company_name: "CRONUS USA, Inc."
    client_id: bcsync
    environment: Production
    client_secret: do-not-do-this
    ipaas:
      system_id: 123
    worker:
      max_deliver: 1
`
	_, err := Parse([]byte(data), MapEnv(baseEnv()))
	ps := problems(t, err)
	want := []struct {
		path string
		line int
	}{
		{"log.level", 3},
		{"subscriptions.contoso.client_id", 7},
		{"subscriptions.contoso.tenant_id", 0},
		{"subscriptions.contoso.client_secret", 9},
		{"subscriptions.contoso.worker.max_deliver", 13},
	}
	if len(ps) != len(want) {
		t.Fatalf("want %d problems, got %d:\n%v", len(want), len(ps), err)
	}
	for _, w := range want {
		found := false
		for _, p := range ps {
			if p.Path == w.path {
				found = true
				if p.Line != w.line {
					t.Errorf("%s: line %d, want %d", w.path, p.Line, w.line)
				}
			}
		}
		if !found {
			t.Errorf("no problem with %s in:\n%v", w.path, err)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 1+len(want) {
		t.Fatalf("want a header and %d lines, got:\n%v", len(want), err)
	}
	if lines[0] != "config: 5 problems:" {
		t.Errorf("header %q", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "  - ") || !strings.Contains(l, " — ") {
			t.Errorf("line %q: want `  - path: problem — fix`", l)
		}
	}
	if strings.Contains(err.Error(), "do-not-do-this") {
		t.Errorf("the inline secret shows in the error:\n%v", err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{Path: "subscriptions.contoso.client_id", Problem: "missing", Fix: "set it to the Application (client) ID of the Entra app registration"},
			"subscriptions.contoso.client_id: missing — set it to the Application (client) ID of the Entra app registration"},
		{FieldError{Path: "log.level", Line: 3, Problem: "unknown level", Fix: "set it to info"}, "log.level (line 3): unknown level — set it to info"},
		{FieldError{Path: "subscriptions.contoso.page_size", Line: 3, EnvVar: "BCSYNC_CONTOSO_PAGE_SIZE", Problem: "not a whole number"},
			"subscriptions.contoso.page_size (from $BCSYNC_CONTOSO_PAGE_SIZE): not a whole number"},
		{FieldError{Problem: "two documents", Fix: "keep one"}, "file: two documents — keep one"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
	ve := &ValidationError{File: "bcsync.yaml", Problems: []*FieldError{&tests[1].e}}
	if got, want := ve.Error(), "config: bcsync.yaml: 1 problem:\n  - log.level (line 3): unknown level — set it to info"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestValidValues(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(map[string]any){
		"tenant domain":         set("tenant_id", "contoso.onmicrosoft.com"),
		"upper-case guid":       set("client_id", "0A1B2C3D-4E5F-4A6B-9C7D-8E9F0A1B2C3D"),
		"localhost http":        set("api_url", "http://localhost:8080/bc/"),
		"loopback http":         set("authority_url", "http://127.0.0.1:9000"),
		"ipaas staging":         set("ipaas.base_url", "https://stagingapi.ipaas.com"),
		"page size max":         set("page_size", 20000),
		"max deliver 2":         set("worker.max_deliver", 2),
		"ack wait 5s":           set("worker.ack_wait", "5s"),
		"ack pending equal":     func(m map[string]any) { set("worker.concurrency", 3)(m); set("worker.max_ack_pending", 3)(m) },
		"explicit secret env":   set("client_secret_env", "BCSYNC_CONTOSO_CLIENT_SECRET"),
		"block scalar":          set("company_name", "CRONUS\n"),
		"quoted number string":  set("page_size", "500"),
		"ipaas client id":       set("ipaas.client_id", "company-client"),
		"sandbox":               set("environment", "Sandbox-2"),
		"durations with hours":  set("worker.backoff_max", "1h30m"),
		"empty string defaults": set("scope", ""),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mustParse(t, edited(t, edit), baseEnv())
		})
	}
	cfg := mustParse(t, edited(t, set("name", "contoso-eu_2")), map[string]string{
		"BCSYNC_CONTOSO_EU_2_CLIENT_SECRET": testClientSecret,
		"BCSYNC_CONTOSO_EU_2_IPAAS_API_KEY": testAPIKey,
	})
	if _, ok := cfg.Subscription("contoso-eu_2"); !ok {
		t.Error("subscription contoso-eu_2 not found")
	}
	cfg = mustParse(t, "nats: {url: 'nats://a:4222, tls://b:4222,c:4222'}\n"+minimalYAML, baseEnv())
	if cfg.NATS.URL == "" {
		t.Error("nats url lost")
	}
	cfg = mustParse(t, edited(t, set("api_url", "http://localhost:8080/bc/")), baseEnv())
	if got := cfg.Subscriptions[0].APIURL; got != "http://localhost:8080/bc" {
		t.Errorf("api_url %q: want the trailing slash removed", got)
	}
}
