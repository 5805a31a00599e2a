package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
)

func runCmd(t *testing.T, ctx context.Context, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDemoSyncsEverything(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := runCmd(t, ctx, "", "demo", "--locations", "30", "--shipment-methods", "10", "--price-groups", "5", "--customers", "60", "--progress=false")
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"enqueued 105 jobs", "jobs done (acked)    105", "dead letters         0", "OK: iPaaS.com holds exactly"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestDemoRejectsBadFlags(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCmd(t, context.Background(), "", "demo", "--workers", "0")
	if code == 0 || !strings.Contains(errOut, "--workers") {
		t.Errorf("demo --workers 0 exited %d: %s", code, errOut)
	}
}

func TestEnqueueFromFlagsAndStdin(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	url := b.NC.ConnectedUrl()
	ctx := context.Background()
	code, out, errOut := runCmd(t, ctx, "", "enqueue", "--nats-url", url, "--subscription", "contoso", "--type", "location", "--key", "EAST", "--key", "MAIN ST.1")
	if code != 0 || strings.Count(out, "published job") != 2 || !strings.Contains(out, "bcsync.jobs.contoso.location.~TUFJTiBTVC4x") {
		t.Fatalf("enqueue exited %d\n%s\n%s", code, out, errOut)
	}
	stdin := `{"v":1,"id":"j1","subscription":"contoso","type":"customer","op":"upsert","key":"C000001"}
{"v":1,"id":"j1","subscription":"contoso","type":"customer","op":"upsert","key":"C000001"}`
	code, out, errOut = runCmd(t, ctx, stdin, "enqueue", "--nats-url", url, "--stdin")
	if code != 0 || !strings.Contains(out, "published job j1") || !strings.Contains(out, "duplicate") {
		t.Fatalf("enqueue --stdin exited %d\n%s\n%s", code, out, errOut)
	}
	s, err := b.JS.Stream(ctx, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("stream holds %d jobs, want 3", info.State.Msgs)
	}
}

func TestEnqueueRejectsBadJobsBeforeConnecting(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		stdin string
		args  []string
		want  string
	}{
		"bad type":       {"", []string{"--subscription", "contoso", "--type", "vendor", "--key", "V1"}, "unknown type"},
		"lower-case key": {"", []string{"--subscription", "contoso", "--type", "location", "--key", "east"}, "upper-case"},
		"stdin not json": {"{nope", []string{"--stdin"}, "not JSON"},
		"stdin invalid":  {`{"v":1,"id":"x"}`, []string{"--stdin"}, "stdin job #1"},
		"stdin empty":    {"", []string{"--stdin"}, "no job"},
		"bad data":       {"", []string{"--subscription", "contoso", "--type", "location", "--key", "E", "--data", "{x"}, "not valid JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			// Port 1 is closed: these must fail on the job, not on the connection.
			args := append([]string{"enqueue", "--nats-url", "nats://127.0.0.1:1"}, tc.args...)
			code, _, errOut := runCmd(t, context.Background(), tc.stdin, args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q, want it to contain %q", code, errOut, tc.want)
			}
		})
	}
}

func TestWorkerReportsConfigProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/bad.yaml"
	if err := writeFile(path, "subscriptions:\n  - name: Bad Name\n"); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, context.Background(), "", "worker", "--config", path)
	if code == 0 || !strings.Contains(errOut, "company_name") || !strings.Contains(errOut, "name") {
		t.Errorf("worker with a bad config exited %d: %s", code, errOut)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func TestBenchThrottlePrintsThreeModes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := runCmd(t, ctx, "", "bench", "throttle", "--workers", "2", "--budget", "20", "--window", "1s", "--duration", "2s", "--token-lifetime", "1s")
	if code != 0 {
		t.Fatalf("bench throttle exited %d: %s", code, errOut)
	}
	var fleet string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "fleet (one budget") {
			fleet = line
		}
	}
	fields := strings.Fields(fleet)
	// mode words..., requests, used%, 429s, peak, tokens
	if len(fields) < 5 || fields[len(fields)-3] != "0" {
		t.Errorf("the fleet mode got 429s or is missing:\n%s", out)
	}
	if !strings.Contains(out, "budget/2 each") || !strings.Contains(out, "whole budget each") {
		t.Errorf("modes missing:\n%s", out)
	}
}
