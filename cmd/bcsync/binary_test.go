package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats-server/v2/server"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the real bcsync binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bcsync-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "bcsync")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testEnv is this process's environment without the variables that would
// point a bcsync process elsewhere (NATS_URL, BCSYNC_*), plus extra.
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "NATS_URL" || name == "NATS_CREDS" || name == "GOGC" || strings.HasPrefix(name, "BCSYNC_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// proc is a bcsync process started by a test. It is killed when the test
// ends, and its output, with secrets replaced, is logged if the test failed.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	exited         chan struct{}
	err            error // of Wait, once exited is closed
}

func startProc(t *testing.T, name string, env, secrets []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(binary(t), args...), exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.done() {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			out := p.output()
			for _, s := range secrets {
				out = strings.ReplaceAll(out, s, "[secret]")
			}
			t.Logf("%s (exit %v) output:\n%s", name, p.err, tailLines(out, 8000))
		}
	})
	return p
}

func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns the error of
// its Wait (nil: exit 0), or an error saying it is still running.
func (p *proc) wait(timeout time.Duration) error {
	if p.done() {
		return p.err
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.name, timeout)
	}
}

func (p *proc) output() string { return p.stdout.String() + p.stderr.String() }

// stop sends sig and fails the test unless the process exits 0 within
// within.
func (p *proc) stop(t *testing.T, sig os.Signal, within time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(within); err != nil {
		t.Fatalf("%s: after %v: %v", p.name, sig, err)
	}
}

// lockedBuffer is an io.Writer safe for a process's output and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The real binary: SIGTERM stops pulling, in-flight jobs finish within the
// grace period, the process exits 0, and no job is lost or left stranded.
func TestWorkerBinarySIGTERMDrainsAndExitsZero(t *testing.T) {
	t.Parallel()
	const n = 80
	bc := bctest.NewServer(bctest.Options{Customers: n})
	defer bc.Close()
	bc.SetLatency(30 * time.Millisecond)
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	b := brokertest.New(t)

	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	sc.NATSURL = b.NC.ConnectedUrl()
	cfgPath := filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderSimConfig(sc)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range bc.CustomerNumbers() {
		if _, _, err := messages.Publish(context.Background(), b.JS, messages.Job{Subscription: "demo", Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: k}); err != nil {
			t.Fatal(err)
		}
	}

	w := startProc(t, "worker", testEnv(sc.SecretEnv+"="+bc.ClientSecret(), sc.KeyEnv+"="+ip.APIKey()), []string{bc.ClientSecret(), ip.APIKey()},
		"worker", "--config", cfgPath, "--grace", "20s", "--log-format", "json", "--log-level", "debug", "--admin-listen", "127.0.0.1:0")
	waitUntil(t, 30*time.Second, "the worker to sync some customers", func() bool { return ip.Count("customer") >= 10 })
	w.stop(t, syscall.SIGTERM, 30*time.Second)
	logs := w.output()
	if !strings.Contains(logs, `"message":"worker stopped"`) {
		t.Errorf("no 'worker stopped' line:\n%s", logs)
	}
	if strings.Contains(logs, bc.ClientSecret()) || strings.Contains(logs, ip.APIKey()) {
		t.Error("a secret appears in the worker's logs")
	}

	// Nothing is stranded: no job waits for an ack that will never come,
	// and every job is either done or still queued.
	ctx := context.Background()
	cons, err := b.JS.Consumer(ctx, messages.StreamJobs, broker.ConsumerName("demo"))
	if err != nil {
		t.Fatal(err)
	}
	// Jobs pulled after SIGTERM were handed back with a Nak, which the server
	// may process a moment after the process exited: wait a little, far less
	// than the AckWait (60 s) a stranded job would need.
	var pending int
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pending = info.NumAckPending; pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pending != 0 {
		t.Errorf("%d jobs left in flight by the stopped worker\n%s", pending, logs)
	}
	s, _ := b.JS.Stream(ctx, messages.StreamJobs)
	sinfo, _ := s.Info(ctx)
	done := ip.Count("customer")
	if done == n {
		t.Fatal("the worker finished everything before SIGTERM; the test proves nothing")
	}
	if int(sinfo.State.Msgs)+done != n {
		t.Errorf("%d done + %d queued != %d jobs", done, sinfo.State.Msgs, n)
	}
}

// The simulators serve what the configuration they print says, and a
// worker configured from it can read BC and write iPaaS.com.
func TestSimPrintsAWorkingConfiguration(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"sim", "--bc-listen", "127.0.0.1:0", "--ipaas-listen", "127.0.0.1:0", "--locations", "7"}, strings.NewReader(""), &out, &errOut)
	}()
	waitUntil(t, 10*time.Second, "the printed configuration", func() bool { return strings.Count(out.String(), "# export") == 2 })
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`# export (\w+)='([^']*)'`).FindAllStringSubmatch(out.String(), -1) {
		env[m[1]] = m[2]
	}
	cfg, err := config.Parse([]byte(out.String()), config.MapEnv(env))
	if err != nil {
		t.Fatalf("the printed configuration does not load: %v\n%s", err, out.String())
	}
	bc, ip, err := worker.Clients(ctx, &cfg.Subscriptions[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	if err := bc.ListLocations(ctx, func(p []bcclient.Location) error {
		for _, l := range p {
			codes = append(codes, l.Code)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(codes) != 7 {
		t.Errorf("listed %d locations, want 7", len(codes))
	}
	if _, err := ip.Upsert(ctx, ipaasclient.Location{Name: codes[0]}, codes[0]); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("sim exited %d: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop when its context ended")
	}
}

// Invariant 6: SIGTERM exits 0. A worker still setting up its streams (NATS
// answers, JetStream does not yet: a cluster without a meta leader, a
// server still recovering) retries for up to a minute; a SIGTERM meanwhile
// (a rolling update) once made it exit 1 with "bcsync: context canceled".
// main cancels run's context on SIGTERM, as this test does.
func TestWorkerSIGTERMDuringStartUpExitsZero(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}) // no JetStream (yet)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer srv.Shutdown()
	bc := bctest.NewServer(bctest.Options{Locations: 1})
	defer bc.Close()
	ip := ipaastest.NewServer(ipaastest.Options{})
	defer ip.Close()
	sc := newSimConfig("demo", bc, bc.URL(), ip, ip.URL())
	sc.NATSURL = srv.ClientURL()
	cfgPath := filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderSimConfig(sc)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(sc.SecretEnv, bc.ClientSecret())
	t.Setenv(sc.KeyEnv, ip.APIKey())

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(2*time.Second, cancel) // SIGTERM
	var stdout, stderr lockedBuffer
	start := time.Now()
	code := run(ctx, []string{"worker", "--config", cfgPath, "--admin-listen", ""}, nil, &stdout, &stderr)
	if code != 0 {
		t.Errorf("worker exited %d after SIGTERM during start-up (after %s), want 0; stderr tail:\n%s",
			code, time.Since(start).Round(time.Millisecond), tailLines(stderr.String(), 300))
	}
}
