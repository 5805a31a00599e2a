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
		// Once silently ignored: the job's own fields won.
		"stdin with --id":  {`{"v":1,"id":"x"}`, []string{"--stdin", "--id", "retry-1"}, "drop --id"},
		"stdin with --op":  {`{"v":1,"id":"x"}`, []string{"--stdin", "--op", "delete", "--source", "me"}, "drop --op, --source"},
		"stdin with --key": {`{"v":1,"id":"x"}`, []string{"--stdin", "--key", "A"}, "drop --key"},
		"bad data":         {"", []string{"--subscription", "contoso", "--type", "location", "--key", "E", "--data", "{x"}, "not valid JSON"},
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

// A mistyped subcommand of a command that only groups subcommands (root,
// dlq, bench) must fail, naming the unknown command and the valid ones: a
// script running `bcsync dlq repaly 42` believed the letter was replayed,
// as the exit status was 0 though nothing was done. Without a subcommand
// the group prints its help.
func TestUnknownSubcommandFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args  []string
		names []string // some of the valid subcommands the error lists
	}{
		{[]string{"dlq", "repaly", "42"}, []string{`"repaly"`, "did you mean replay", "list", "show", "purge"}},
		{[]string{"dlq", "purgee", "42"}, []string{`"purgee"`, "list", "replay"}},
		{[]string{"bench", "thrttle"}, []string{`"thrttle"`, "throttle", "init", "pipeline"}},
		{[]string{"wrker"}, []string{`"wrker"`, "worker", "enqueue", "dlq"}},
	} {
		code, out, errOut := runCmd(t, context.Background(), "", tc.args...)
		if code == 0 {
			t.Errorf("bcsync %s exited 0 (nothing was done)\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), firstLines(out, 3), errOut)
			continue
		}
		for _, want := range append(tc.names, "unknown command") {
			if !strings.Contains(errOut, want) {
				t.Errorf("bcsync %s: the error lacks %q: %s", strings.Join(tc.args, " "), want, errOut)
			}
		}
	}
	for _, args := range [][]string{{"dlq"}, {"bench"}, {}} {
		if code, out, errOut := runCmd(t, context.Background(), "", args...); code != 0 || !strings.Contains(out, "Available Commands:") {
			t.Errorf("bcsync %s exited %d, want its help:\n%s%s", strings.Join(args, " "), code, firstLines(out, 3), errOut)
		}
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// nats.url and --nats-url take comma-separated URLs (README,
// Configuration). A connection error must not print the password of any of
// them: broker.RedactURL redacted the first URL only.
func TestNATSPasswordOfEveryURLNotPrinted(t *testing.T) {
	t.Parallel()
	url := "nats://bcsync:FirstPassw0rd@127.0.0.1:1,nats://bcsync:SecondPassw0rd@127.0.0.1:2"
	for _, args := range [][]string{
		{"dlq", "list", "--nats-url", url},
		{"enqueue", "--nats-url", url, "--subscription", "contoso", "--type", "location", "--key", "EAST"},
		{"init", "location", "--subscription", "contoso", "--nats-url", url, "--no-wait"},
	} {
		code, out, errOut := runCmd(t, context.Background(), "", args...)
		if code == 0 {
			t.Fatalf("%v exited 0", args)
		}
		for _, pw := range []string{"FirstPassw0rd", "SecondPassw0rd"} {
			if strings.Contains(out+errOut, pw) {
				t.Errorf("bcsync %s printed the NATS password %q:\n%s%s", args[0], pw, out, errOut)
			}
		}
	}
}

// --key is documented as "BC id (GUID) or code; repeat for several jobs",
// and a BC code may hold a comma (any printable character, see
// messages.checkKey). pflag's StringSlice split it on the comma, one job
// becoming two for two records that do not exist, and refused a double
// quote with a CSV parse error.
func TestEnqueueKeyWithCommaIsOneJob(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	ctx := context.Background()
	code, out, errOut := runCmd(t, ctx, "", "enqueue", "--nats-url", b.ClientURL(), "--subscription", "contoso", "--type", "location", "--key", "MAIN,ST")
	if code != 0 {
		t.Fatalf("enqueue --key MAIN,ST exited %d\n%s\n%s", code, out, errOut)
	}
	if n := strings.Count(out, "published job"); n != 1 {
		t.Errorf("enqueue --key MAIN,ST published %d jobs, want 1 (for the code MAIN,ST):\n%s", n, out)
	}
	if !strings.Contains(out, messages.JobSubject("contoso", messages.TypeLocation, "MAIN,ST")) {
		t.Errorf("no job for the key MAIN,ST (subject %s):\n%s", messages.JobSubject("contoso", messages.TypeLocation, "MAIN,ST"), out)
	}
	code, out, errOut = runCmd(t, ctx, "", "enqueue", "--nats-url", b.ClientURL(), "--subscription", "contoso", "--type", "location", "--key", `12"PIPE`)
	if code != 0 {
		t.Errorf(`enqueue --key 12"PIPE exited %d: %s%s`, code, out, errOut)
	}
}

// An empty --nats-url (e.g. `--nats-url "$NATS_SERVER"` with the variable
// unset) made broker.Connect start a throwaway embedded server in a temp
// directory: enqueue reported the job as published and exited 0, and the
// job was gone with the server. enqueue, init and dlq must refuse it and
// say what to pass.
func TestEmptyNATSURLIsRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"enqueue", "--nats-url", "", "--subscription", "contoso", "--type", "location", "--key", "EAST"},
		{"init", "location", "--subscription", "contoso", "--nats-url", "", "--no-wait"},
		{"dlq", "list", "--nats-url", ""},
	} {
		code, out, errOut := runCmd(t, ctx, "", args...)
		if code == 0 {
			t.Errorf("bcsync %s --nats-url '' exited 0, the job went to a throwaway embedded server:\n%s%s", args[0], out, errOut)
		}
		if !strings.Contains(errOut, "--nats-url is empty") || !strings.Contains(errOut, "nats://127.0.0.1:4222") {
			t.Errorf("bcsync %s --nats-url '': the error does not say what to pass: %s", args[0], errOut)
		}
	}
}

// enqueue, init and dlq reach a NATS server that requires TLS with a
// client certificate, as the worker does with nats.tls: they once took
// only --nats-url and --creds, so an operator could not use them there.
func TestCommandsConnectOverMutualTLS(t *testing.T) {
	t.Parallel()
	url, f := brokertest.MutualTLSServer(t)
	ctx := context.Background()
	tls := []string{"--nats-url", url, "--tls-ca", f.CA, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey}
	code, out, errOut := runCmd(t, ctx, "", append([]string{"enqueue", "--subscription", "contoso", "--type", "location", "--key", "EAST"}, tls...)...)
	if code != 0 || !strings.Contains(out, "published job") {
		t.Fatalf("enqueue over TLS exited %d:\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = runCmd(t, ctx, "", append([]string{"dlq", "list"}, tls...)...); code != 0 {
		t.Errorf("dlq list over TLS exited %d:\n%s\n%s", code, out, errOut)
	}
	// Without the client certificate the server refuses the command.
	if code, out, errOut = runCmd(t, ctx, "", "dlq", "list", "--nats-url", url, "--tls-ca", f.CA); code == 0 {
		t.Errorf("dlq list without a client certificate exited 0:\n%s\n%s", out, errOut)
	}
}

// NATS_URL may carry a user and password (the nats CLI accepts it, and
// enqueue's connection errors redact it). --help prints the flag's default,
// which is taken from NATS_URL as is.
func TestHelpDoesNotPrintNATSPasswordFromEnv(t *testing.T) {
	t.Setenv("NATS_URL", "nats://bcsync:HelpPassw0rd@127.0.0.1:4222")
	for _, args := range [][]string{{"enqueue", "--help"}, {"init", "--help"}, {"dlq", "list", "--help"}} {
		code, out, errOut := runCmd(t, context.Background(), "", args...)
		if code != 0 {
			t.Fatalf("%v exited %d: %s", args, code, errOut)
		}
		if strings.Contains(out+errOut, "HelpPassw0rd") {
			t.Errorf("bcsync %s printed the NATS password from NATS_URL:\n%s", strings.Join(args, " "), grepLine(out+errOut, "HelpPassw0rd"))
		}
	}
}

// README: op is upsert, delete, initialize or delta; enqueue --help lists
// only the first three.
func TestEnqueueHelpListsEveryOp(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCmd(t, context.Background(), "", "enqueue", "--help")
	if code != 0 {
		t.Fatalf("exited %d: %s", code, errOut)
	}
	if line := grepLine(out, "--op"); !strings.Contains(line, "delta") {
		t.Errorf("enqueue --help does not name the delta op:\n%s", line)
	}
}

func grepLine(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A NATS password may hold '#' or '?' (a generated one often does).
// RedactURL looks for the user information only before the first '?' or
// '#', so such a URL is printed whole: --help shows NATS_URL's password.
func TestHelpDoesNotPrintANATSPasswordWithHashOrQuestionMark(t *testing.T) {
	for _, pw := range []string{"Hunter#2secret", "Hunter?2secret"} {
		t.Setenv("NATS_URL", "nats://bcsync:"+pw+"@127.0.0.1:4222")
		code, out, errOut := runCmd(t, context.Background(), "", "enqueue", "--help")
		if code != 0 {
			t.Fatalf("exited %d: %s", code, errOut)
		}
		if strings.Contains(out+errOut, "2secret") {
			t.Errorf("bcsync enqueue --help printed the NATS password %q:\n%s", pw, grepLine(out+errOut, "2secret"))
		}
	}
}
