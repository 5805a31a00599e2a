package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// The secrets of the tests. Neither may ever show up in printed output or
// in an error.
const (
	testClientSecret = "Zq8Q~s3cr3t.Value_of-the.Client~Secret0123"
	testAPIKey       = "ipaas-SECRET-key-5f0c9e7d1b2a"
)

// minimalYAML holds only the required settings of one subscription.
const minimalYAML = `
subscriptions:
  - name: contoso
    company_name: "CRONUS USA, Inc."
    tenant_id: 6f1c2a3b-4d5e-4f60-8a71-92b3c4d5e6f7
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    environment: Production
    ipaas:
      system_id: 123
`

func baseEnv() map[string]string {
	return map[string]string{
		"BCSYNC_CONTOSO_CLIENT_SECRET": testClientSecret,
		"BCSYNC_CONTOSO_IPAAS_API_KEY": testAPIKey,
	}
}

// edited returns minimalYAML after edit changed its first subscription.
func edited(t *testing.T, edit func(sub map[string]any)) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(minimalYAML), &doc); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(doc["subscriptions"].([]any)[0].(map[string]any))
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// set returns an edit that sets a dotted path below the subscription.
func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) {
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = v
	}
}

// del returns an edit that removes a dotted path below the subscription.
func del(path string) func(map[string]any) {
	return func(m map[string]any) {
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			m = m[k].(map[string]any)
		}
		delete(m, keys[len(keys)-1])
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// problems returns the problems of err, failing the test unless err is a
// *ValidationError.
func problems(t *testing.T, err error) []*FieldError {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %T: %v", err, err)
	}
	return ve.Problems
}

func mustParse(t *testing.T, data string, env map[string]string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(data), MapEnv(env))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// assertNoSecret fails when s holds a test secret.
func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{testClientSecret, testAPIKey} {
		if strings.Contains(s, secret) {
			t.Errorf("%s holds a secret:\n%s", what, s)
		}
	}
}
