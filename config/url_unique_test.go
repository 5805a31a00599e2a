package config

import (
	"strings"
	"testing"
)

// The webhook manager treats two notification URLs as one when they differ
// only in the host's letter case or a default port (SameURL), and the
// check that no two subscriptions share one compared the strings: such a
// pair passed validation; BC posted both to one endpoint, and each manager
// pass deleted the other's BC subscriptions. Both compare alike now.
func TestNotificationURLsUniqueAsTheManagerCompares(t *testing.T) {
	t.Parallel()
	data := minimalYAML + `    webhook: {enabled: true, notification_url: 'https://x.example.com/hook'}
  - name: fabrikam
    company_name: B
    tenant_id: 6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    environment: Production
    ipaas: {system_id: 2}
    webhook: {enabled: true, notification_url: 'https://X.Example.com:443/hook'}
`
	env := baseEnv()
	env["BCSYNC_FABRIKAM_CLIENT_SECRET"] = testClientSecret
	env["BCSYNC_FABRIKAM_IPAAS_API_KEY"] = testAPIKey
	env["BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE"] = testClientState
	env["BCSYNC_FABRIKAM_WEBHOOK_CLIENT_STATE"] = testClientState + "-2"
	_, err := Parse([]byte(data), MapEnv(env))
	if err == nil {
		t.Fatal("two subscriptions whose notification URLs the webhook manager treats as one were accepted")
	}
	for _, p := range problems(t, err) {
		if p.Path == "subscriptions.fabrikam.webhook.notification_url" && strings.Contains(p.Problem, "the same as") {
			return
		}
	}
	t.Fatalf("no 'the same as' problem for fabrikam's notification_url in:\n%v", err)
}
