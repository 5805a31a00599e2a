package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
)

const (
	webhookTestState = "cs~binary.test_state-0123456789abcdef"
	webhookTestToken = "token-4c1d9e2f"
)

// webhookConfig writes the simulators' configuration for subscription
// "demo" with its webhook enabled, notifying url, and returns its path and
// the environment the secrets come from.
func webhookConfig(t *testing.T, bc *bctest.Server, ip *ipaastest.Server, natsURL, url string) (string, []string) {
	t.Helper()
	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	sc.NATSURL = natsURL
	cfg := renderSimConfig(sc) + `    webhook:
      enabled: true
      resources: [customers]
      notification_url: ` + url + `
`
	path := filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, []string{sc.SecretEnv + "=" + bc.ClientSecret(), sc.KeyEnv + "=" + ip.APIKey(), "BCSYNC_DEMO_WEBHOOK_CLIENT_STATE=" + webhookTestState}
}

// freeAddr returns a local address free a moment ago (shared by the
// tests of this package).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func webhookHandshake(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"?validationToken="+webhookTestToken, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The real binary: it subscribes at BC (BC's handshake reaches it),
// answers a handshake, turns BC's notification into a job, and exits 0 on
// SIGTERM.
func TestWebhookBinary(t *testing.T) {
	t.Parallel()
	bc := bctest.NewServer(bctest.Options{Customers: 5, Locations: 1, ShipmentMethods: 1, PriceGroups: 1, Items: 1, SalesOrders: -1})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	b := brokertest.New(t)
	addr := freeAddr(t)
	url := "http://" + addr + "/webhook/demo"
	cfgPath, env := webhookConfig(t, bc, ip, b.NC.ConnectedUrl(), url)

	w := startProc(t, "webhook", testEnv(env...), []string{bc.ClientSecret(), ip.APIKey(), webhookTestState},
		"webhook", "--config", cfgPath, "--listen", addr, "--log-level", "debug", "--log-format", "json")
	waitUntil(t, 20*time.Second, "the manager to subscribe to BC's customers", func() bool { return len(bc.Subscriptions()) == 1 })
	if s := bc.Subscriptions()[0]; s.NotificationURL != url || s.EntitySet != "customers" || s.ClientState != webhookTestState {
		t.Errorf("BC's subscription %+v", s)
	}
	if status, answer := webhookHandshake(t, url); status != 200 || answer != webhookTestToken {
		t.Errorf("handshake: %d %q", status, answer)
	}

	ds, err := bc.Notify(context.Background(), bctest.Change{Set: bctest.SetCustomers, Type: bctest.ChangeUpdated, Key: bc.CustomerNumbers()[0]})
	if err != nil || len(ds) != 1 || ds[0].Status != http.StatusAccepted {
		t.Fatalf("notify: %+v %v\n%s", ds, err, w.output())
	}
	s, err := b.JS.Stream(context.Background(), messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(context.Background(), "bcsync.jobs.demo.customer.*")
	if err != nil {
		t.Fatalf("no customer job: %v", err)
	}
	if j, err := messages.Decode(msg.Data); err != nil || j.Source != "webhook" || j.Op != messages.OpUpsert {
		t.Errorf("job %+v, %v", j, err)
	}

	w.stop(t, syscall.SIGTERM, 15*time.Second)
	logs := w.output()
	for _, want := range []string{`"message":"webhook receiver listening"`, `"message":"webhook subscription created"`,
		`"message":"webhook notification enqueued"`, `"message":"webhook receiver stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %s line:\n%s", want, logs)
		}
	}
	for _, secret := range []string{webhookTestState, webhookTestToken, bc.ClientSecret(), ip.APIKey()} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret appears in the logs:\n%s", logs)
		}
	}
}

// Receiving only: it serves on the port it logs, manages nothing, and
// exits 0 on Ctrl-C.
func TestWebhookBinaryNoManage(t *testing.T) {
	t.Parallel()
	bc := bctest.NewServer(bctest.Options{Customers: 1, Locations: 1, ShipmentMethods: 1, PriceGroups: 1, Items: 1, SalesOrders: -1})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	b := brokertest.New(t)
	cfgPath, env := webhookConfig(t, bc, ip, b.NC.ConnectedUrl(), "https://bcsync.example.com/webhook/demo")
	w := startProc(t, "webhook", testEnv(env...), []string{bc.ClientSecret(), ip.APIKey(), webhookTestState},
		"webhook", "--config", cfgPath, "--listen", "127.0.0.1:0", "--no-manage", "--log-format", "json")
	addrRE := regexp.MustCompile(`"addr":"([^"]+)"[^\n]*"message":"webhook receiver listening"`)
	waitUntil(t, 20*time.Second, "the receiver to listen", func() bool { return addrRE.MatchString(w.output()) })
	url := "http://" + addrRE.FindStringSubmatch(w.output())[1] + "/webhook/demo"
	if status, answer := webhookHandshake(t, url); status != 200 || answer != webhookTestToken {
		t.Errorf("handshake: %d %q", status, answer)
	}
	w.stop(t, os.Interrupt, 15*time.Second)
	if n := len(bc.Subscriptions()); n != 0 {
		t.Errorf("--no-manage created %d subscriptions", n)
	}
}

func TestWebhookRefusesAConfigWithoutWebhooks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bcsync.yaml")
	cfg := `subscriptions:
  - name: nohook
    company_name: C
    tenant_id: contoso.onmicrosoft.com
    client_id: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
    client_secret_env: PATH
    environment: Production
    ipaas: {system_id: 1, api_key_env: PATH}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, context.Background(), "", "webhook", "--config", path, "--listen", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errOut, "webhook.enabled: true") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}
