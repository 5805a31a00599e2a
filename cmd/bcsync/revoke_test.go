package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
)

// The real binary with the client secret in a file, as a Kubernetes Secret
// mounts it: the secret is revoked in Entra, the subscription pauses with
// the fix in its log and dead-letters nothing; once the file holds the new
// secret, the worker resumes by itself.
func TestWorkerBinaryResumesOnceTheSecretFileIsFixed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the credential probes")
	}
	t.Parallel()
	bc := bctest.NewServer(bctest.Options{Locations: 20})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	b := brokertest.New(t)

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(bc.ClientSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	sc.NATSURL = b.NC.ConnectedUrl()
	yaml := strings.Replace(renderSimConfig(sc), "client_secret_env: "+sc.SecretEnv, "client_secret_file: "+secretFile, 1)
	cfgPath := filepath.Join(dir, "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startProc(t, "worker", testEnv(sc.KeyEnv+"="+ip.APIKey()), []string{bc.ClientSecret(), ip.APIKey()},
		"worker", "--config", cfgPath, "--log-format", "json", "--admin-listen", "127.0.0.1:0")
	publish := func(codes []string) {
		for _, k := range codes {
			if _, _, err := messages.Publish(context.Background(), b.JS, messages.Job{Subscription: "demo", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: k}); err != nil {
				t.Fatal(err)
			}
		}
	}
	codes := bc.LocationCodes()
	publish(codes[:10])
	waitUntil(t, 30*time.Second, "the first 10 locations synced", func() bool { return ip.Count("location") == 10 })

	const newSecret = "Rotated~Secret.Value_fedcba9876543210"
	old := bc.ClientSecret()
	bc.SetClientSecret(newSecret)
	bc.ExpireTokens()
	publish(codes[10:])
	waitUntil(t, 30*time.Second, "the subscription paused", func() bool {
		return strings.Contains(w.output(), "subscription paused")
	})
	var pauseLine string
	for l := range strings.Lines(w.output()) {
		if strings.Contains(l, "subscription paused") {
			pauseLine = l
		}
	}
	if !strings.Contains(pauseLine, "7000215") || !strings.Contains(pauseLine, "fix:") {
		t.Errorf("the pause does not name the fix: %s", pauseLine)
	}
	if n := ip.Count("location"); n != 10 {
		t.Errorf("%d locations synced with a revoked secret", n-10)
	}

	if err := os.WriteFile(secretFile, []byte(newSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "every location synced with the new secret", func() bool { return ip.Count("location") == 20 })
	s, err := b.JS.Stream(context.Background(), messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 0 {
		t.Errorf("dead letters after a revoked secret: %v %v", info.State.Msgs, err)
	}
	w.stop(t, syscall.SIGTERM, 30*time.Second)
	logs := w.output()
	if !strings.Contains(logs, "credentials accepted again") {
		t.Error("no line says the subscription resumed")
	}
	for _, secret := range []string{old, newSecret, ip.APIKey()} {
		if strings.Contains(logs, secret) {
			t.Errorf("secret %.6s… in the worker's logs", secret)
		}
	}
}
