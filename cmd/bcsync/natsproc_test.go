package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	natsBinOnce sync.Once
	natsBinPath string
	natsBinErr  error
)

// natsServerBinary builds the nats-server of go.mod once per test run, so
// that crash tests can kill a worker without killing its NATS server.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bcsync-nats-server-")
		if err != nil {
			natsBinErr = err
			return
		}
		natsBinPath = filepath.Join(dir, "nats-server")
		// Run in the package directory, inside the module: go.mod picks the
		// server's version and go.sum checks it.
		out, err := exec.Command("go", "build", "-o", natsBinPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBinErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsBinErr != nil {
		t.Fatal(natsBinErr)
	}
	return natsBinPath
}

// natsProc is a nats-server process with JetStream, and a connection to it.
type natsProc struct {
	cmd    *exec.Cmd
	url    string
	log    *lockedBuffer
	exited chan struct{}

	// NC and JS are the test's connection; both close when the test ends.
	NC *nats.Conn
	JS jetstream.JetStream
}

// URL is the server's client URL.
func (p *natsProc) URL() string { return p.url }

// startNATS starts a nats-server process with JetStream on a free port of
// 127.0.0.1, storing in t.TempDir(), waits until it accepts connections and
// connects to it. The server is killed, and the connection closed, when the
// test ends.
func startNATS(t *testing.T) *natsProc {
	t.Helper()
	bin := natsServerBinary(t)
	dir := t.TempDir()
	portsDir := filepath.Join(dir, "ports")
	if err := os.Mkdir(portsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// -p -1 lets the server pick a free port and write it to the ports
	// file: no window in which another process could take the port.
	cmd := exec.Command(bin, "-n", "bcsync-test", "-a", "127.0.0.1", "-p", "-1",
		"-js", "-sd", filepath.Join(dir, "store"), "--ports_file_dir", portsDir)
	p := &natsProc{cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)

	portsFile := filepath.Join(portsDir, fmt.Sprintf("%s_%d.ports", filepath.Base(bin), cmd.Process.Pid))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := p.alive(deadline); err != nil {
			t.Fatalf("nats-server never wrote its ports file: %v\n%s", err, p.log.String())
		}
		// The server writes the file non-atomically: an empty or partial
		// file is read again.
		var ports struct {
			Nats []string `json:"nats"`
		}
		if b, err := os.ReadFile(portsFile); err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
			p.url = ports.Nats[0]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		nc, err := nats.Connect(p.url, nats.Name("bcsync-test"), nats.MaxReconnects(-1))
		if err == nil {
			p.NC = nc
			break
		}
		if err := p.alive(deadline); err != nil {
			t.Fatalf("cannot connect to nats-server at %s: %v\n%s", p.url, err, p.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	js, err := jetstream.New(p.NC)
	if err != nil {
		t.Fatal(err)
	}
	p.JS = js
	return p
}

// alive returns an error when the server has exited or deadline has passed.
func (p *natsProc) alive(deadline time.Time) error {
	select {
	case <-p.exited:
		return fmt.Errorf("nats-server exited: %v", p.cmd.ProcessState)
	default:
	}
	if time.Now().After(deadline) {
		return errors.New("timed out")
	}
	return nil
}

func (p *natsProc) stop() {
	if p.NC != nil {
		p.NC.Close()
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}
