package config

import (
	"strings"
	"testing"
)

// TestScopeMustBeBusinessCentral: business-central.md says the scope
// of the token request is https://api.businesscentral.dynamics.com/.default
// (AADSTS70011: "scope must be ..."), and BC refuses a token of another
// audience (401 Authentication_InvalidCredentials). Only the "/.default"
// suffix was checked, so a scope naming no resource at all, or another
// resource, loaded without a problem.
func TestScopeMustBeBusinessCentral(t *testing.T) {
	t.Parallel()
	for _, scope := range []string{
		"/.default",                            // no resource at all: Entra refuses it
		"https://graph.microsoft.com/.default", // a Graph token: BC answers 401
	} {
		t.Run(scope, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte(edited(t, set("scope", scope))), MapEnv(baseEnv()))
			if err == nil {
				t.Fatalf("scope %q accepted (Scope=%q); want a problem with subscriptions.contoso.scope", scope, cfg.Subscriptions[0].Scope)
			}
			found := false
			for _, p := range problems(t, err) {
				found = found || p.Path == "subscriptions.contoso.scope"
			}
			if !found {
				t.Errorf("no problem with subscriptions.contoso.scope in:\n%v", err)
			}
		})
	}
}

// TestPastedSecretIsNotEchoed: the README recommends
// `openssl rand -hex 32` for the clientState. Pasted into
// client_state_env by mistake (a common slip: the *_env field wants a
// name), a hex value that starts with a letter passes envNameRE, and
// resolveSecret then prints it verbatim: "environment variable <secret> is
// not set". The package promises that no error holds a secret, and it
// already guards this mistake for values that are not name-shaped ("not to
// the client secret itself").
func TestPastedSecretIsNotEchoed(t *testing.T) {
	t.Parallel()
	const state = "c0ffee4a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f" // openssl rand -hex 32
	data := edited(t, func(m map[string]any) {
		webhookOn(m)
		set("webhook.client_state_env", state)(m)
	})
	_, err := Parse([]byte(data), MapEnv(baseEnv()))
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), state) || strings.Contains(err.Error(), state[:16]) {
		t.Errorf("the error shows the clientState pasted into client_state_env:\n%v", err)
	}
	if !strings.Contains(err.Error(), "client_state_env") || !strings.Contains(err.Error(), "BCSYNC_CONTOSO_WEBHOOK_CLIENT_STATE") {
		t.Errorf("the error names neither the field nor the variable to use:\n%v", err)
	}
	// An API key in upper case and digits, pasted the same way.
	const key = "AB12CD34EF56GH78IJ90KL12MN34OP56"
	_, err = Parse([]byte(edited(t, set("ipaas.api_key_env", key))), MapEnv(baseEnv()))
	if err == nil || strings.Contains(err.Error(), key) {
		t.Errorf("an API key pasted into ipaas.api_key_env: %v", err)
	}
}

// What BC accepts still loads: its API URL (in any cloud, any case) or its
// application id, followed by /.default.
func TestScopesOfBusinessCentral(t *testing.T) {
	t.Parallel()
	for _, scope := range []string{
		DefaultScope,
		"https://API.BusinessCentral.Dynamics.com/.default",
		"https://api.businesscentral.dynamics.us/.default",
		"996def3d-b36c-4153-8607-a6fd5c01b89b/.default",
	} {
		if problem := checkScope(scope); problem != "" {
			t.Errorf("%s: %s", scope, problem)
		}
	}
}

// A secret in an environment variable loses its final newline, as one read
// from a file does: a Kubernetes Secret made with --from-file keeps it, and
// Entra would refuse the secret with it.
func TestSecretFromTheEnvironmentLosesItsNewline(t *testing.T) {
	t.Parallel()
	env := baseEnv()
	env["BCSYNC_CONTOSO_CLIENT_SECRET"] = testClientSecret + "\n"
	cfg, err := Parse([]byte(minimalYAML), MapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Subscriptions[0].ClientSecret.Reveal(); got != testClientSecret {
		t.Errorf("client secret %q, want it without the newline", got)
	}
}

// Variable names in lower or mixed case, which an earlier fix refused to
// keep a pasted secret out of errors, still work when the variable is set:
// only an unset one's name is judged, to decide whether to show it.
func TestEnvNamesInAnyCaseStillWork(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"bc_client_secret", "ContosoBcSecret"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv()
			env[name] = testClientSecret
			_, err := Parse([]byte(edited(t, set("client_secret_env", name))), MapEnv(env))
			if err != nil {
				t.Errorf("client_secret_env %q (set in the environment) refused:\n%v", name, err)
			}
		})
	}
}
