package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/messages"
)

// testClientState is the webhook clientState of the tests; like the other
// secrets, it must never show in an error.
const testClientState = "wh-state~9f8e7d6c5b4a3210-fedcba"

// webhookOn is an edit that enables contoso's webhook.
func webhookOn(m map[string]any) {
	set("webhook.enabled", true)(m)
	set("webhook.notification_url", "https://bcsync.example.com/webhook/contoso")(m)
}

func webhookEnv() map[string]string {
	env := baseEnv()
	env["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = testClientState
	return env
}

func TestWebhookSettings(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, edited(t, func(m map[string]any) {
		webhookOn(m)
		set("webhook.resources", []any{"Customers", "items", "SHIPMENTMETHODS"})(m)
		set("webhook.renew_before", "36h")(m)
	}), webhookEnv())
	w := cfg.Subscriptions[0].Webhook
	if !w.Enabled || w.NotificationURL != "https://bcsync.example.com/webhook/contoso" || w.RenewBefore != 36*time.Hour {
		t.Errorf("webhook %+v", w)
	}
	if want := []string{"customers", "items", "shipmentMethods"}; !reflect.DeepEqual(w.Resources, want) {
		t.Errorf("resources %v, want them spelt as BC does: %v", w.Resources, want)
	}
	if w.ClientState.Reveal() != testClientState || w.ClientStateEnv != "BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE" {
		t.Errorf("clientState not read from the default variable (env %q)", w.ClientStateEnv)
	}
	if out := fmt.Sprintf("%v %+v %#v", cfg, w, w) + mustJSON(t, cfg) + mustYAML(t, cfg); strings.Contains(out, testClientState) {
		t.Errorf("the clientState shows: %s", out)
	}

	// From a file, and every scalar from the environment.
	file := writeFile(t, "state", testClientState+"\n")
	env := baseEnv()
	for k, v := range map[string]string{
		"BCSYNC_CONTOSO_WEBHOOK_ENABLED":           "true",
		"BCSYNC_CONTOSO_WEBHOOK_NOTIFICATION_URL":  "https://hooks.example.com/webhook/contoso",
		"BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE_FILE": file,
		"BCSYNC_CONTOSO_WEBHOOK_RENEW_BEFORE":      "48h",
		"BCSYNC_WEBHOOK_LISTEN":                    "127.0.0.1:9090",
		"BCSYNC_WEBHOOK_MAX_BODY_BYTES":            "2097152",
	} {
		env[k] = v
	}
	cfg = mustParse(t, minimalYAML, env)
	w = cfg.Subscriptions[0].Webhook
	if !w.Enabled || w.NotificationURL != "https://hooks.example.com/webhook/contoso" || w.RenewBefore != 48*time.Hour ||
		w.ClientState.Reveal() != testClientState || w.ClientStateEnv != "" {
		t.Errorf("webhook from the environment: %+v (env %q)", w, w.ClientStateEnv)
	}
	if cfg.Webhook.Listen != "127.0.0.1:9090" || cfg.Webhook.MaxBodyBytes != 2097152 {
		t.Errorf("webhook server %+v", cfg.Webhook)
	}
}

// A disabled webhook needs no clientState nor URL.
func TestWebhookDisabledNeedsNothing(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, edited(t, set("webhook.resources", []any{"items"})), baseEnv())
	w := cfg.Subscriptions[0].Webhook
	if w.Enabled || !w.ClientState.IsZero() || !reflect.DeepEqual(w.Resources, []string{"items"}) {
		t.Errorf("webhook %+v", w)
	}
	// An empty list means the default.
	cfg = mustParse(t, edited(t, set("webhook.resources", []any{})), baseEnv())
	if got := cfg.Subscriptions[0].Webhook.Resources; !reflect.DeepEqual(got, []string{"customers", "shipmentMethods"}) {
		t.Errorf("resources %v", got)
	}
}

func TestWebhookType(t *testing.T) {
	t.Parallel()
	for set, want := range map[string]messages.Type{"customers": messages.TypeCustomer, "shipmentMethods": messages.TypeShippingMethod, "items": messages.TypeProduct} {
		if got, ok := WebhookType(set); !ok || got != want {
			t.Errorf("WebhookType(%q) = %q, %v", set, got, ok)
		}
	}
	for _, set := range []string{"locations", "salesOrders", "Customers", ""} {
		if _, ok := WebhookType(set); ok {
			t.Errorf("WebhookType(%q) accepted", set)
		}
	}
	sets := WebhookEntitySets()
	sets[0] = "changed"
	if WebhookEntitySets()[0] == "changed" {
		t.Error("WebhookEntitySets returns the package's slice")
	}
}

func TestWebhookProblems(t *testing.T) {
	t.Parallel()
	const sub = "subscriptions.contoso.webhook."
	long := strings.Repeat("x", MaxClientStateLen+1)
	tests := []struct {
		name string
		yaml string
		edit func(map[string]any)
		env  func(map[string]string)
		path string
		want string
	}{
		{name: "locations", edit: set("webhook.resources", []any{"customers", "locations"}), path: sub + "resources[1]", want: "locations are not webhook-enabled in BC: they are polled"},
		{name: "unknown set", edit: set("webhook.resources", []any{"widgets"}), path: sub + "resources[0]", want: "customers, items, shipmentMethods"},
		{name: "set not synced", edit: set("webhook.resources", []any{"salesOrders"}), path: sub + "resources[0]", want: "bcsync does not sync salesOrders"},
		{name: "set twice", edit: set("webhook.resources", []any{"customers", "Customers"}), path: sub + "resources[1]", want: "remove the second"},
		{name: "url missing", edit: set("webhook.enabled", true), path: sub + "notification_url", want: "https://bcsync.example.com/webhook/contoso"},
		{name: "url relative", edit: func(m map[string]any) { webhookOn(m); set("webhook.notification_url", "/webhook/contoso")(m) }, path: sub + "notification_url", want: "absolute"},
		{name: "url scheme", edit: set("webhook.notification_url", "ftp://x.example.com/webhook/contoso"), path: sub + "notification_url", want: "https"},
		{name: "url query", edit: set("webhook.notification_url", "https://x.example.com/webhook/contoso?a=1"), path: sub + "notification_url", want: "validationToken"},
		{name: "url credentials", edit: set("webhook.notification_url", "https://u:p@x.example.com/webhook/contoso"), path: sub + "notification_url", want: "credentials"},
		{name: "enabled not a bool", edit: set("webhook.enabled", "sometimes"), path: sub + "enabled", want: "true or false"},
		{name: "client state unset", edit: webhookOn, env: func(e map[string]string) { delete(e, "BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE") },
			path: sub + "client_state_env", want: "set BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE to a random secret"},
		{name: "client state too long", edit: webhookOn, env: func(e map[string]string) { e["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = long },
			path: sub + "client_state_env", want: "at most 2048"},
		{name: "client state too short", edit: webhookOn, env: func(e map[string]string) { e["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = "short" },
			path: sub + "client_state_env", want: "at least 16"},
		{name: "client state control characters", edit: webhookOn, env: func(e map[string]string) { e["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = testClientState + "\x00" },
			path: sub + "client_state_env", want: "control characters"},
		{name: "client state env and file", edit: func(m map[string]any) {
			webhookOn(m)
			set("webhook.client_state_env", "X")(m)
			set("webhook.client_state_file", "/run/secrets/x")(m)
		}, path: sub + "client_state_file", want: "keep one of them"},
		{name: "renew before too short", edit: set("webhook.renew_before", "1h"), path: sub + "renew_before", want: "24h"},
		{name: "renew before past expiry", edit: set("webhook.renew_before", "72h"), path: sub + "renew_before", want: "3 days"},
		{name: "listen", yaml: "webhook: {listen: 'localhost'}\n" + minimalYAML, path: "webhook.listen", want: ":8080"},
		{name: "listen port", yaml: "webhook: {listen: ':http-alt'}\n" + minimalYAML, path: "webhook.listen", want: "host:port"},
		{name: "max body bytes", yaml: "webhook: {max_body_bytes: 10}\n" + minimalYAML, path: "webhook.max_body_bytes", want: "4194304"},
		// BC's 1,000 items of this clientState need about 545 kB.
		{name: "max body bytes below BC's largest notification", edit: webhookOn,
			env:  func(e map[string]string) { e["BCSYNC_WEBHOOK_MAX_BODY_BYTES"] = "65536" },
			path: "webhook.max_body_bytes", want: `subscription "contoso"`},
		// 2,048 ASCII characters fit the 4 MiB default for one entity set,
		// not for the default two (customers and shipmentMethods).
		{name: "default max body bytes below the largest notification of two entity sets", edit: webhookOn,
			env: func(e map[string]string) {
				e["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = strings.Repeat("a", MaxClientStateLen)
			},
			path: "webhook.max_body_bytes", want: "each of its 2 resources"},
		{name: "default max body bytes below the largest notification of a non-ASCII clientState", edit: webhookOn,
			env: func(e map[string]string) {
				e["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = strings.Repeat("é", MaxClientStateLen)
			},
			path: "webhook.max_body_bytes", want: "shorter clientState"},
		{name: "unknown webhook field", edit: set("webhook.client_state", testClientState), path: sub + "client_state", want: "client_state_env"},
		{name: "same url twice", yaml: minimalYAML + `    webhook: {notification_url: 'https://x.example.com/hook'}
  - name: fabrikam
    company_name: B
    tenant_id: contoso.onmicrosoft.com
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    environment: Production
    ipaas: {system_id: 2}
    webhook: {notification_url: 'https://x.example.com/hook'}
`, env: func(e map[string]string) {
			e["BCSYNC_FABRIKAM_CLIENT_SECRET"] = testClientSecret
			e["BCSYNC_FABRIKAM_IPAAS_API_KEY"] = testAPIKey
		}, path: "subscriptions.fabrikam.webhook.notification_url", want: `the same as subscription "contoso"'s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := tt.yaml
			if data == "" {
				data = edited(t, tt.edit)
			}
			env := webhookEnv()
			if tt.env != nil {
				tt.env(env)
			}
			cfg, err := Parse([]byte(data), MapEnv(env))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			assertNoSecret(t, "error", err.Error())
			if strings.Contains(err.Error(), testClientState) || strings.Contains(err.Error(), long) {
				t.Errorf("the clientState shows in the error:\n%v", err)
			}
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
			if found.Problem == "" || found.Fix == "" || strings.Contains(found.Error(), "\n") {
				t.Errorf("problem %q: empty or on several lines", found.Error())
			}
		})
	}
}

// NotificationBytes bounds BC's largest notification: 1,000 items per
// entity set subscribed, each with the clientState as JSON may escape it.
func TestNotificationBytes(t *testing.T) {
	t.Parallel()
	ascii := NotificationBytes(strings.Repeat("a", MaxClientStateLen), 1)
	if ascii < 1000*(MaxClientStateLen+300) || ascii > 4<<20 {
		t.Errorf("2,048 ASCII characters: %d bytes, want at least 1000 items of the clientState and an item's fields, and under the 4 MiB default", ascii)
	}
	if two := NotificationBytes(strings.Repeat("a", MaxClientStateLen), 2); two < 2*(ascii-1024) {
		t.Errorf("two entity sets: %d bytes, want room for 1,000 items of each (%d for one)", two, ascii)
	}
	if NotificationBytes("x", 0) != NotificationBytes("x", 1) {
		t.Error("no entity set counts as one")
	}
	// The defaults: two entity sets and a clientState of 64 hex characters
	// fit the 4 MiB default, and so do all seven entity sets.
	if n := NotificationBytes(strings.Repeat("f", 64), len(WebhookEntitySets())); n > 4<<20 {
		t.Errorf("seven entity sets and 64 characters: %d bytes, over the 4 MiB default", n)
	}
	for _, tc := range []struct {
		state string
		per   int64 // bytes per character, escaped at worst
	}{{"a", 1}, {`"`, 2}, {`\`, 2}, {"é", 6}, {"😀", 12}} {
		if got, want := NotificationBytes(tc.state, 1)-NotificationBytes("", 1), 1000*tc.per; got != want {
			t.Errorf("%q adds %d bytes, want %d", tc.state, got, want)
		}
	}
}
