package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Two worker processes share one subscription on a nats-server process;
// one is killed with SIGKILL a third of the way through. Its in-flight jobs
// come back after the AckWait and the survivor syncs them: every customer
// ends in iPaaS.com exactly once, nothing is dead-lettered, nothing stays
// queued, and the survivor still stops cleanly on SIGTERM.
func TestKill9OneOfTwoWorkersLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a nats-server and two worker processes")
	}
	t.Parallel()
	binary(t) // build it before the clock starts
	ns := startNATS(t)
	ctx := context.Background()

	const n = 5000
	// BC is served by a bcsync sim process (the same bctest fake, with no
	// request budget): served from this -race test binary, its linear
	// $filter scan of 5,000 customers per request would be the bottleneck.
	bcURL, bc := startBCSim(t, n)
	ip := ipaastest.NewServer(ipaastest.Options{})
	t.Cleanup(ip.Close)
	secrets := []string{bc.ClientSecret(), ip.APIKey()}

	sc := newSimConfig("demo", bc, bcURL, ip, ip.URL())
	sc.NATSURL = ns.URL()
	cfgPath := filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderSimConfig(sc)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := testEnv(
		sc.SecretEnv+"="+bc.ClientSecret(), sc.KeyEnv+"="+ip.APIKey(),
		// The shortest AckWait the configuration allows: the killed
		// worker's jobs are redelivered 5 s after it took them.
		config.EnvPrefix("demo")+"WORKER_ACK_WAIT=5s",
	)

	if err := broker.EnsureStreams(ctx, ns.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	keys := bc.CustomerNumbers()
	if len(keys) != n {
		t.Fatalf("BC fake has %d customers, want %d", len(keys), n)
	}
	pubStart := time.Now()
	publishCustomerJobs(t, ns.JS, "demo", keys)
	t.Logf("published %d jobs in %v", n, time.Since(pubStart).Round(time.Millisecond))

	start := time.Now()
	startWorker := func(id string) *proc {
		return startProc(t, "worker "+id, env, secrets, "worker", "--config", cfgPath, "--id", id,
			"--grace", "20s", "--log-format", "json", "--log-level", "info", "--admin-listen", "127.0.0.1:0")
	}
	w1, w2 := startWorker("w1"), startWorker("w2")

	waitUntil(t, 60*time.Second, "a third of the customers synced", func() bool { return ip.Count("customer") >= n/3 })
	if err := w1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	atKill := ip.Count("customer")
	if err := w1.wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("worker w1 exited with %v, want killed", err)
	}
	t.Logf("killed w1 after %v with %d of %d customers synced", killedAt.Sub(start).Round(time.Millisecond), atKill, n)

	cons, err := ns.JS.Consumer(ctx, messages.StreamJobs, broker.ConsumerName("demo"))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 120*time.Second, "every job synced and acknowledged", func() bool {
		if ip.Count("customer") != n {
			return false
		}
		st, err := streamState(ctx, ns.JS, messages.StreamJobs)
		if err != nil || st.Msgs != 0 {
			return false
		}
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	elapsed := time.Since(start)
	t.Logf("%d jobs in %v (%.0f jobs/s); %v after the kill", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), time.Since(killedAt).Round(time.Millisecond))

	checkSyncedOnce(t, ctx, ns.JS, ip, keys)
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Deliveries beyond one per job are redeliveries: at least the killed
	// worker's in-flight jobs must have been delivered again.
	redelivered := int64(ci.Delivered.Consumer) - n
	t.Logf("redeliveries: %d", redelivered)
	if redelivered < 1 {
		t.Error("no job was redelivered: the killed worker had nothing in flight and the test proves nothing")
	}

	if err := w2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w2.wait(30 * time.Second); err != nil {
		t.Errorf("worker w2 exited with %v after SIGTERM, want 0", err)
	}
	for _, s := range secrets {
		if strings.Contains(w1.output(), s) || strings.Contains(w2.output(), s) {
			t.Error("a secret appears in a worker's output")
		}
	}
}

// bcsync dlq replay is killed with SIGKILL halfway through 1,000 dead
// letters. Every letter is then either still in the DLQ or replayed to
// BCSYNC_JOBS (both for at most the one letter in flight: the tool replays
// one letter at a time), and a second replay finishes the job without
// storing any job twice.
func TestReplayKilledHalfwayLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a nats-server and bcsync dlq replay processes")
	}
	t.Parallel()
	binary(t) // build it before the clock starts
	ns := startNATS(t)
	ctx := context.Background()
	if err := broker.EnsureStreams(ctx, ns.JS, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	// dlq replay handles one letter at a time (cmd/bcsync/dlq.go): at most
	// one replay can be stored while its letter is not yet deleted.
	const inFlight = 1
	letters := fillDLQWithCustomerJobs(t, ns.JS, "demo", n)

	args := []string{"dlq", "replay", "--nats-url", ns.URL(), "--progress=false"}
	replay := startProc(t, "dlq replay", testEnv(), nil, args...)
	dlqStream, err := ns.JS.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	// Poll without pause: one letter takes the tool a few round trips.
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := dlqStream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs <= n/2 {
			break
		}
		if replay.done() {
			t.Fatalf("dlq replay exited (%v) before it was killed", replay.wait(0))
		}
		if time.Now().After(deadline) {
			t.Fatalf("dlq replay did not get halfway in 30s; the DLQ holds %d letters", info.State.Msgs)
		}
	}
	if err := replay.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := replay.wait(10 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("dlq replay exited with %v, want killed", err)
	}
	// The server may still handle what the dead process sent last.
	waitSettled(t, ctx, ns.JS)

	inDLQ, replays := scanReplay(t, ctx, ns.JS, letters)
	var neither, both, replayed int
	for seq := range letters {
		switch {
		case inDLQ[seq] && replays[seq] > 0:
			both++
		case !inDLQ[seq] && replays[seq] == 0:
			neither++
			t.Errorf("letter %d is lost: gone from the DLQ and not replayed", seq)
		}
		if replays[seq] > 1 {
			t.Errorf("letter %d replayed %d times", seq, replays[seq])
		}
		if replays[seq] > 0 {
			replayed++
		}
	}
	t.Logf("after the kill: %d letters in the DLQ, %d replayed, %d both, %d neither", len(inDLQ), replayed, both, neither)
	if both > inFlight {
		t.Errorf("%d letters are both in the DLQ and replayed, want at most %d", both, inFlight)
	}
	if replayed == 0 || len(inDLQ) == 0 {
		t.Fatalf("the kill missed the middle of the replay (%d replayed, %d left): the test proves nothing", replayed, len(inDLQ))
	}

	again := startProc(t, "dlq replay (again)", testEnv(), nil, args...)
	if err := again.wait(60 * time.Second); err != nil {
		t.Fatalf("the second dlq replay exited with %v", err)
	}
	if want := fmt.Sprintf("replayed %d, failed 0", len(inDLQ)); !strings.Contains(again.stdout.String(), want) {
		t.Errorf("the second dlq replay printed %q, want %q", again.stdout.String(), want)
	}
	inDLQ, replays = scanReplay(t, ctx, ns.JS, letters)
	if len(inDLQ) != 0 {
		t.Errorf("%d letters left in the DLQ after the second replay", len(inDLQ))
	}
	for seq := range letters {
		if replays[seq] != 1 {
			t.Errorf("letter %d replayed %d times, want once", seq, replays[seq])
		}
	}
	st, err := streamState(ctx, ns.JS, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if st.Msgs != n {
		t.Errorf("%s holds %d jobs, want %d", messages.StreamJobs, st.Msgs, n)
	}
}

// startBCSim serves a BC company of that many customers from a bcsync sim process
// and returns its URL and a twin of the fake: the same data set and app
// registration (the fake's data is generated from a fixed seed), not served.
func startBCSim(t *testing.T, customers int) (string, *bctest.Server) {
	t.Helper()
	sizes := simSizes{customers: customers}
	twin := bctest.New(bcOptions(sizes))
	sim := startProc(t, "bcsync sim", testEnv(), []string{twin.ClientSecret(), ipaastest.DefaultAPIKey},
		"sim", "--name", "demo", "--bc-listen", "127.0.0.1:0", "--ipaas-listen", "127.0.0.1:0",
		"--locations", "0", "--shipment-methods", "0", "--price-groups", "0", "--customers", strconv.Itoa(customers))
	waitUntil(t, 30*time.Second, "bcsync sim to print its configuration", func() bool {
		return strings.Count(sim.stdout.String(), "# export") == 2 || sim.done()
	})
	printed := sim.stdout.String()
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`# export (\w+)='([^']*)'`).FindAllStringSubmatch(printed, -1) {
		env[m[1]] = m[2]
	}
	cfg, err := config.Parse([]byte(printed), config.MapEnv(env))
	if err != nil {
		t.Fatalf("bcsync sim printed a configuration that does not load: %v", err)
	}
	s := cfg.Subscriptions[0]
	if s.CompanyName != twin.CompanyName() || s.ClientID != twin.ClientID() || s.ClientSecret.Reveal() != twin.ClientSecret() {
		t.Fatal("bcsync sim serves another company or app registration than its twin")
	}
	return s.APIURL, twin
}

// tailLines returns about the last n bytes of s, from a line start.
func tailLines(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// publishCustomerJobs publishes one customer upsert job per key, eight at
// a time, each acknowledged by JetStream.
func publishCustomerJobs(t *testing.T, js jetstream.JetStream, sub string, keys []string) {
	t.Helper()
	const publishers = 8
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	for i := range publishers {
		wg.Go(func() {
			for j := i; j < len(keys); j += publishers {
				job := messages.Job{Subscription: sub, Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: keys[j]}
				if _, _, err := messages.Publish(context.Background(), js, job); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// fillDLQWithCustomerJobs dead-letters n valid customer upsert jobs of sub
// as a worker does (worker/loop.go newDeadLetter and storeDeadLetter), each
// as if taken from its own BCSYNC_JOBS sequence, and returns them by DLQ
// sequence.
func fillDLQWithCustomerJobs(t *testing.T, js jetstream.JetStream, sub string, n int) map[uint64]*messages.DeadLetter {
	t.Helper()
	ctx := context.Background()
	letters := make(map[uint64]*messages.DeadLetter, n)
	now := time.Now().UTC()
	for i := range n {
		job := messages.Job{Subscription: sub, Type: messages.TypeCustomer, Op: messages.OpUpsert, Key: fmt.Sprintf("C%05d", i+1)}
		msg, job, err := messages.NewMsg(job)
		if err != nil {
			t.Fatal(err)
		}
		d := &messages.DeadLetter{
			Subject: msg.Subject, Headers: msg.Header, Body: msg.Data,
			Stream: messages.StreamJobs, StreamSeq: uint64(i + 1),
			Subscription: job.Subscription, Type: job.Type, Key: job.Key, JobID: job.ID,
			ErrorClass: "transient", Reason: "BC answered 503 ten times", Attempts: 10,
			FirstFailure: now, LastFailure: now, WorkerID: "w-crashed",
		}
		body, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out := nats.NewMsg(messages.DLQSubject(d.Subscription, d.Type))
		out.Data = body
		out.Header.Set(messages.HeaderMsgID, d.MsgID())
		out.Header.Set(messages.HeaderDLQClass, d.ErrorClass)
		out.Header.Set(messages.HeaderDLQSubject, d.Subject)
		ack, err := js.PublishMsg(ctx, out, jetstream.WithExpectStream(messages.StreamDLQ))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate {
			t.Fatalf("dead letter %d stored as a duplicate", i)
		}
		letters[ack.Sequence] = d
	}
	return letters
}

// scanReplay reads both streams: which letters are still in the DLQ, and
// how many replays of each letter BCSYNC_JOBS holds. A replay must carry
// its letter's original subject and body and the replay Nats-Msg-Id.
func scanReplay(t *testing.T, ctx context.Context, js jetstream.JetStream, letters map[uint64]*messages.DeadLetter) (inDLQ map[uint64]bool, replays map[uint64]int) {
	t.Helper()
	left, err := storedMsgs(ctx, js, messages.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	inDLQ = make(map[uint64]bool, len(left))
	for _, m := range left {
		if letters[m.Sequence] == nil {
			t.Errorf("the DLQ holds an unknown letter at %d", m.Sequence)
		}
		inDLQ[m.Sequence] = true
	}
	jobs, err := storedMsgs(ctx, js, messages.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	replays = make(map[uint64]int, len(jobs))
	for _, m := range jobs {
		seq, err := strconv.ParseUint(m.Header.Get(dlq.HeaderReplayOf), 10, 64)
		d := letters[seq]
		if err != nil || d == nil {
			t.Errorf("job %d on %s is not the replay of a letter (%s: %q)", m.Sequence, m.Subject, dlq.HeaderReplayOf, m.Header.Get(dlq.HeaderReplayOf))
			continue
		}
		replays[seq]++
		if m.Subject != d.Subject || !bytes.Equal(m.Data, d.Body) || m.Header.Get(messages.HeaderMsgID) != dlq.ReplayMsgID(dlq.Letter{Seq: seq, DL: d}) {
			t.Errorf("the replay of letter %d differs from its original job: subject %q, Nats-Msg-Id %q, body %s", seq, m.Subject, m.Header.Get(messages.HeaderMsgID), m.Data)
		}
	}
	return inDLQ, replays
}

// storedMsgs returns every message of the stream, in order, skipping
// deleted sequences.
func storedMsgs(ctx context.Context, js jetstream.JetStream, stream string) ([]*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq != 0 && seq <= info.State.LastSeq; {
		// With a subject, GetMsg answers the first message at or after seq.
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s seq %d: %w", stream, seq, err)
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
	return out, nil
}

func streamState(ctx context.Context, js jetstream.JetStream, name string) (jetstream.StreamState, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// waitSettled waits until the message counts of both streams have not
// changed for 300 ms: a killed client's last requests may reach the
// server, or be handled by it, just after the process is gone.
func waitSettled(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	counts := func() [2]uint64 {
		var c [2]uint64
		for i, name := range []string{messages.StreamJobs, messages.StreamDLQ} {
			st, err := streamState(ctx, js, name)
			if err != nil {
				t.Fatal(err)
			}
			c[i] = st.Msgs
		}
		return c
	}
	last, since := counts(), time.Now()
	waitUntil(t, 10*time.Second, "the streams to settle", func() bool {
		if c := counts(); c != last {
			last, since = c, time.Now()
		}
		return time.Since(since) >= 300*time.Millisecond
	})
}

// checkSyncedOnce asserts that every customer of keys is at iPaaS.com, each
// as its own record, and that no job is left queued or dead-lettered.
func checkSyncedOnce(t *testing.T, ctx context.Context, js jetstream.JetStream, ip *ipaastest.Server, keys []string) {
	t.Helper()
	if got := ip.Count(ipaastest.TableCustomer); got != len(keys) {
		t.Errorf("iPaaS.com holds %d customers, want %d", got, len(keys))
	}
	ids := make(map[any]string, len(keys))
	for _, k := range keys {
		rec, ok := ip.Lookup(ipaastest.TableCustomer, k)
		if !ok {
			t.Errorf("customer %s is not in iPaaS.com", k)
			continue
		}
		if other, dup := ids[rec["id"]]; dup {
			t.Errorf("customers %s and %s share iPaaS.com record %v", other, k, rec["id"])
		}
		ids[rec["id"]] = k
	}
	for _, stream := range []string{messages.StreamJobs, messages.StreamDLQ} {
		st, err := streamState(ctx, js, stream)
		if err != nil {
			t.Fatal(err)
		}
		if st.Msgs != 0 {
			t.Errorf("%s holds %d messages, want 0", stream, st.Msgs)
		}
	}
}
