package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that a nil error comes with a
// usable configuration, and that no error shows a secret that the file
// itself does not hold.
func FuzzParse(f *testing.F) {
	f.Add(minimalYAML)
	f.Add(ExampleYAML())
	f.Add("")
	f.Add("subscriptions: []\n")
	f.Add("subscriptions:\n  - name: x\n    client_secret: y\n    ipaas: {api_key: z}\n")
	f.Add("subscriptions:\n  - &a {name: a, worker: *a}\n  - <<: *a\n")
	f.Add("a: 1\n---\nb: 2\n")
	f.Add("subscriptions:\n  - name: contoso\n    page_size: 99999999999999999999\n    worker: {ack_wait: 1y}\n")
	f.Add("nats: {url: 'nats://u:p@h:1,,x'}\nlog: [1]\n")
	f.Add("? [a]\n: b\n")
	if data, err := os.ReadFile("testdata/example.yaml"); err == nil {
		f.Add(string(data))
	}
	env := baseEnv()
	env["BCSYNC_FABRIKAM_EU_IPAAS_API_KEY"] = testAPIKey
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := Parse([]byte(data), MapEnv(env))
		if err == nil {
			if cfg == nil || len(cfg.Subscriptions) == 0 {
				t.Fatalf("nil error without subscriptions: %+v", cfg)
			}
			for i := range cfg.Subscriptions {
				if cfg.Subscriptions[i].ClientSecret.IsZero() || cfg.Subscriptions[i].IPaaS.APIKey.IsZero() {
					t.Fatal("nil error without secrets")
				}
			}
			return
		}
		if cfg != nil {
			t.Fatal("a config with an error")
		}
		if !strings.Contains(data, testClientSecret) && !strings.Contains(data, testAPIKey) {
			assertNoSecret(t, "error", err.Error())
		}
	})
}

func TestAliasLimits(t *testing.T) {
	t.Parallel()
	laughs := "x0: &a0 {name: x, page_size: 1}\n"
	for i := 1; i <= 9; i++ {
		laughs += fmt.Sprintf("x%d: &a%d {<<: [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]}\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	laughs += "subscriptions:\n  - <<: *a9\n"
	for _, data := range []string{
		"subscriptions:\n  - &a\n    <<: *a\n",
		"subscriptions:\n  - &a {name: x, <<: *a}\n",
		laughs,
	} {
		_, err := Parse([]byte(data), MapEnv(nil))
		if err == nil || !strings.Contains(err.Error(), "aliases") {
			t.Errorf("want an alias problem, got %v", err)
		}
	}
}
