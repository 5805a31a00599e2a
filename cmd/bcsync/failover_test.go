package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Three nats-server processes form a JetStream cluster, and every stream and
// bucket bcsync makes is at R3. Two worker processes sync 3,000 customers;
// a third of the way through, the node that leads BCSYNC_JOBS and its
// consumer, and serves a worker's connection, is killed with SIGKILL. The
// survivors elect new leaders, the worker reconnects to another node by
// itself, and every customer ends in iPaaS.com exactly once: nothing lost,
// nothing dead-lettered, nothing left queued. Both workers still stop
// cleanly on SIGTERM, and the killed node, restarted, catches up.
func TestClusterNodeKilledLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node nats-server cluster and two worker processes")
	}
	t.Parallel()
	binary(t) // build both before the clock starts
	natsServerBinary(t)
	testStart := time.Now()
	cluster := startNATSCluster(t, 3)
	nc, js := cluster.connect(t)

	const n = 3000
	bcURL, bc := startBCSim(t, n)
	ip := ipaastest.NewServer(ipaastest.Options{})
	t.Cleanup(ip.Close)
	secrets := []string{bc.ClientSecret(), ip.APIKey()}

	sc := newSimConfig("demo", bc, bcURL, ip, ip.URL())
	sc.NATSURL = cluster.URLs()
	cfgPath := filepath.Join(t.TempDir(), "bcsync.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderSimConfig(sc)), 0o600); err != nil {
		t.Fatal(err)
	}
	overrides := map[string]string{
		sc.SecretEnv: bc.ClientSecret(), sc.KeyEnv: ip.APIKey(),
		"BCSYNC_NATS_REPLICAS": "3",
		// The shortest AckWait the configuration allows: a job whose ack
		// died with the node comes back 5 s after it was taken.
		config.EnvPrefix("demo") + "WORKER_ACK_WAIT": "5s",
	}
	var extra []string
	for k, v := range overrides {
		extra = append(extra, k+"="+v)
	}
	env := testEnv(extra...)
	cfg, err := config.Load(cfgPath, config.MapEnv(overrides))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.Replicas != 3 {
		t.Fatalf("nats.replicas is %d with BCSYNC_NATS_REPLICAS=3, want 3", cfg.NATS.Replicas)
	}

	// The streams are made as a worker makes them. The consumer starts
	// paused, so that every job is queued and the leaders are placed
	// before the workers take any; they leave the pause alone.
	cluster.waitMetaLeader(t, js)
	waitUntil(t, 30*time.Second, "the cluster to create the R3 streams", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return broker.EnsureStreams(ctx, js, broker.StreamOptions{Replicas: cfg.NATS.Replicas}) == nil
	})
	ctx := context.Background()
	sub := cfg.Subscriptions[0]
	consName := broker.ConsumerName(sub.Name)
	cc := broker.ConsumerConfig(broker.ConsumerOptions{Subscription: sub.Name, MaxDeliver: sub.Worker.MaxDeliver,
		AckWait: sub.Worker.AckWait, MaxAckPending: sub.Worker.MaxAckPending})
	// Under the breaker's MaxPause: longer would look like a pause for
	// refused credentials.
	pausedUntil := time.Now().Add(90 * time.Second)
	cc.PauseUntil = &pausedUntil
	cons, err := js.CreateOrUpdateConsumer(ctx, messages.StreamJobs, cc)
	if err != nil {
		t.Fatal(err)
	}
	keys := bc.CustomerNumbers()
	if len(keys) != n {
		t.Fatalf("BC fake has %d customers, want %d", len(keys), n)
	}
	pubStart := time.Now()
	publishCustomerJobs(t, js, sub.Name, keys)
	t.Logf("cluster up and %d jobs published in %v (publishing took %v)", n, time.Since(testStart).Round(time.Millisecond), time.Since(pubStart).Round(time.Millisecond))

	startWorker := func(id string) *proc {
		return startProc(t, "worker "+id, env, secrets, "worker", "--config", cfgPath, "--id", id,
			"--grace", "20s", "--log-format", "json", "--log-level", "info", "--admin-listen", "127.0.0.1:0")
	}
	// One after the other: the first creates the KV buckets and the
	// safety net's consumer, which this test is not about.
	var workers []*proc
	for _, id := range []string{"w1", "w2"} {
		w := startWorker(id)
		workers = append(workers, w)
		waitUntil(t, 30*time.Second, "worker "+id+" to start", func() bool {
			if w.done() {
				t.Fatalf("%s exited (%v) before the test stopped it", w.name, w.err)
			}
			return strings.Contains(w.stderr.String(), `"message":"worker started"`)
		})
	}
	// The workers left every stream, the KV buckets' included, and the
	// consumer at R3.
	streams := []string{messages.StreamJobs, messages.StreamDLQ, broker.StreamAdvisories}
	for _, kv := range broker.KVConfigs(broker.KVOptions{}) {
		streams = append(streams, "KV_"+kv.Bucket)
	}
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s has %d replicas (cluster %+v), want 3", name, info.Config.Replicas, info.Cluster)
		}
	}
	if ci, err := cons.Info(ctx); err != nil {
		t.Fatal(err)
	} else if ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
		t.Errorf("consumer %s has cluster %+v, want 3 replicas", consName, ci.Cluster)
	}

	// The node to kill serves a worker's connection, so that the worker
	// must reconnect, and leads BCSYNC_JOBS and the consumer, so that the
	// cluster must elect new leaders while the jobs flow.
	var target *clusterNode
	workersOnTarget := 0
	waitUntil(t, 10*time.Second, "the workers' connections to show in the nodes' connz", func() bool {
		streamLeader, _ := cluster.leader(js, messages.StreamJobs, "")
		target, workersOnTarget = nil, 0
		total := 0
		for _, nd := range cluster.nodes {
			conns, err := nd.clientsNamed("bcsync-worker")
			if err != nil {
				return false
			}
			total += conns
			if conns > 0 && (target == nil || nd.name == streamLeader) {
				target, workersOnTarget = nd, conns
			}
		}
		return total == len(workers)
	})
	cluster.moveLeader(t, nc, js, messages.StreamJobs, "", target.name)
	cluster.moveLeader(t, nc, js, messages.StreamJobs, consName, target.name)
	t.Logf("%v: node %s serves %d worker connection(s) and leads %s and %s", time.Since(testStart).Round(time.Millisecond), target.name, workersOnTarget, messages.StreamJobs, consName)

	start := time.Now()
	if _, err := js.ResumeConsumer(ctx, messages.StreamJobs, consName); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "a third of the customers synced", func() bool { return ip.Count(ipaastest.TableCustomer) >= n/3 })
	if err := target.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	atKill := ip.Count(ipaastest.TableCustomer)
	select {
	case <-target.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("nats-server %s still runs 10 s after SIGKILL", target.name)
	}
	ackedAtKill := make([]int, len(workers))
	for i, w := range workers {
		if ackedAtKill[i], err = ackedJobs(w); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("killed %s after %v with %d of %d customers synced (acked by the workers: %v)", target.name, killedAt.Sub(start).Round(time.Millisecond), atKill, n, ackedAtKill)
	if atKill > n-n/10 {
		t.Fatalf("%d of %d customers were synced when the node was killed: the test proves little", atKill, n)
	}

	for _, consumer := range []string{"", consName} {
		what := "a new leader of " + messages.StreamJobs + " " + consumer
		waitUntil(t, 30*time.Second, what, func() bool {
			l, err := cluster.leader(js, messages.StreamJobs, consumer)
			return err == nil && l != "" && l != target.name
		})
	}
	t.Logf("new leaders elected %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	waitUntil(t, 60*time.Second, "the workers to sync on after the kill", func() bool {
		return ip.Count(ipaastest.TableCustomer) >= atKill+100
	})
	t.Logf("100 more customers synced %v after the kill", time.Since(killedAt).Round(time.Millisecond))

	waitUntil(t, 120*time.Second, "every job synced and acknowledged", func() bool {
		if ip.Count(ipaastest.TableCustomer) != n {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := streamState(ctx, js, messages.StreamJobs)
		if err != nil || st.Msgs != 0 {
			return false
		}
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	elapsed := time.Since(start)
	t.Logf("%d jobs in %v (%.0f jobs/s); %v after the kill", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), time.Since(killedAt).Round(time.Millisecond))

	checkSyncedOnce(t, ctx, js, ip, keys)
	if ci, err := cons.Info(ctx); err == nil {
		t.Logf("redeliveries: %d", int64(ci.Delivered.Consumer)-n)
	}

	// The worker whose server died found another by itself (the lines are
	// bcsync's own, from broker.Connect's handlers), and both went on
	// working.
	reconnected := 0
	for i, w := range workers {
		if w.done() {
			t.Errorf("%s exited (%v) before SIGTERM", w.name, w.err)
			continue
		}
		if strings.Contains(w.stderr.String(), `"message":"reconnected to NATS"`) {
			reconnected++
		}
		acked, err := ackedJobs(w)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s acked %d jobs, %d of them after the kill", w.name, acked, acked-ackedAtKill[i])
		if acked <= ackedAtKill[i] {
			t.Errorf("%s acked no job after the kill", w.name)
		}
	}
	if reconnected < workersOnTarget {
		t.Errorf("%d worker(s) logged a reconnect to NATS, want %d (connected to the killed node)", reconnected, workersOnTarget)
	}
	for _, w := range workers {
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range workers {
		if err := w.wait(30 * time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want 0", w.name, err)
		}
		for _, s := range secrets {
			if strings.Contains(w.output(), s) {
				t.Errorf("a secret appears in the output of %s", w.name)
			}
		}
	}

	// The killed node, restarted on its store, rejoins and catches up.
	restartedAt := time.Now()
	if err := target.restart(t); err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			// Another process took its cluster port meanwhile: not what
			// this test is about.
			t.Logf("not checking that %s rejoins: %v", target.name, err)
			return
		}
		t.Fatalf("restart: %v", err)
	}
	waitUntil(t, 30*time.Second, "the restarted node to be a current replica of "+messages.StreamJobs, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, messages.StreamJobs)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		for _, p := range s.CachedInfo().Cluster.Replicas {
			if p.Name == target.name && p.Current && !p.Offline {
				return true
			}
		}
		return false
	})
	t.Logf("%s current again %v after its restart; test took %v", target.name, time.Since(restartedAt).Round(time.Millisecond), time.Since(testStart).Round(time.Millisecond))
}

var adminAddrRE = regexp.MustCompile(`"addr":"([^"]+)"[^\n]*"message":"admin endpoints`)

// ackedJobs is the number of jobs a worker process acknowledged, from the
// bcsync_jobs_total counter of its /metrics.
func ackedJobs(w *proc) (int, error) {
	m := adminAddrRE.FindStringSubmatch(w.stderr.String())
	if m == nil {
		return 0, fmt.Errorf("%s did not log its admin address", w.name)
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + m[1] + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", w.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s metrics: %w", w.name, err)
	}
	acked := 0
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, "bcsync_jobs_total{") || !strings.Contains(line, `outcome="acked"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s metrics: %q: %w", w.name, line, err)
		}
		acked += int(v)
	}
	return acked, nil
}

// natsCluster is a JetStream cluster of nats-server processes on 127.0.0.1.
type natsCluster struct {
	nodes []*clusterNode
}

// clusterNode is one server of a natsCluster.
type clusterNode struct {
	*natsProc
	name       string // server_name: n1, n2, ...
	conf       string // its configuration file, to restart it
	portsDir   string
	monitorURL string
}

// startNATSCluster starts size nats-server processes clustered with each
// other, each with JetStream and its own store in t.TempDir(). The client
// and monitoring ports are picked by the servers; the cluster ports must be
// known in advance for the routes, so the test picks free ones and, should
// another process take one first, starts the cluster again on others. The
// servers are killed when the test ends, and their output logged if it
// failed. A JetStream meta leader may not be elected yet.
func startNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryNATSCluster(t, size)
		if err == nil {
			return c
		}
		if attempt == 3 {
			t.Fatalf("cannot start a %d-node nats-server cluster: %v", size, err)
		}
		t.Logf("starting the nats-server cluster failed, trying other ports: %v", err)
	}
}

func tryNATSCluster(t *testing.T, size int) (*natsCluster, error) {
	ports, err := freePorts(size)
	if err != nil {
		return nil, err
	}
	routes := make([]string, size)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &natsCluster{}
	for i, p := range ports {
		dir := t.TempDir()
		nd := &clusterNode{name: fmt.Sprintf("n%d", i+1), conf: filepath.Join(dir, "nats-server.conf"), portsDir: filepath.Join(dir, "ports")}
		conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:-1"
http: "127.0.0.1:-1"
jetstream {
  store_dir: %q
}
cluster {
  name: bcsync
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, nd.name, filepath.Join(dir, "store"), p, strings.Join(routes, ", "))
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(nd.portsDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := nd.start(t); err != nil {
			for _, started := range c.nodes {
				started.stop()
			}
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

// freePorts returns n distinct ports of 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start runs the node's server and waits until it listens. It returns an
// error, the server stopped, if the server exits first (a port taken) or
// does not listen within 15 s.
func (nd *clusterNode) start(t *testing.T) error {
	bin := natsServerBinary(t)
	cmd := exec.Command(bin, "-c", nd.conf, "--ports_file_dir", nd.portsDir)
	p := &natsProc{cmd: cmd, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server %s: %w", nd.name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	nd.natsProc = p
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("nats-server %s (exit %v) output:\n%s", nd.name, cmd.ProcessState, tailLines(p.log.String(), 4000))
		}
	})

	portsFile := filepath.Join(nd.portsDir, fmt.Sprintf("%s_%d.ports", filepath.Base(bin), cmd.Process.Pid))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := p.alive(deadline); err != nil {
			p.stop()
			return fmt.Errorf("nats-server %s never wrote its ports file: %v\n%s", nd.name, err, tailLines(p.log.String(), 2000))
		}
		// Written non-atomically: an empty or partial file is read again.
		var ports struct {
			Nats       []string `json:"nats"`
			Monitoring []string `json:"monitoring"`
		}
		if b, err := os.ReadFile(portsFile); err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 && len(ports.Monitoring) > 0 {
			p.url, nd.monitorURL = ports.Nats[0], ports.Monitoring[0]
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restart starts the node again, on its configuration and store, once it
// has exited.
func (nd *clusterNode) restart(t *testing.T) error {
	select {
	case <-nd.exited:
	default:
		return fmt.Errorf("nats-server %s still runs", nd.name)
	}
	return nd.start(t)
}

// clientsNamed counts the node's client connections of that name.
func (nd *clusterNode) clientsNamed(name string) (int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(nd.monitorURL + "/connz?limit=1024")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var connz struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return 0, fmt.Errorf("connz of %s: %w", nd.name, err)
	}
	n := 0
	for _, c := range connz.Conns {
		if c.Name == name {
			n++
		}
	}
	return n, nil
}

// URLs lists the client URLs of every node, comma-separated, as NATS_URL.
func (c *natsCluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = nd.url
	}
	return strings.Join(urls, ",")
}

// connect connects to the cluster (any node; it reconnects forever). The
// connection is closed when the test ends.
func (c *natsCluster) connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.Name("bcsync-test"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// waitMetaLeader waits until the cluster has a JetStream meta leader: only
// the meta leader answers an account info request.
func (c *natsCluster) waitMetaLeader(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	waitUntil(t, 30*time.Second, "a JetStream meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

// leader is the server name of the leader of stream, or of its consumer
// when consumer is not empty; "" while there is none.
func (c *natsCluster) leader(js jetstream.JetStream, stream, consumer string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ci *jetstream.ClusterInfo
	if consumer == "" {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return "", err
		}
		ci = s.CachedInfo().Cluster
	} else {
		cons, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			return "", err
		}
		ci = cons.CachedInfo().Cluster
	}
	if ci == nil {
		return "", errors.New("not clustered")
	}
	return ci.Leader, nil
}

// moveLeader makes server the leader of stream, or of its consumer when
// consumer is not empty, with a leader step-down that prefers it.
func (c *natsCluster) moveLeader(t *testing.T, nc *nats.Conn, js jetstream.JetStream, stream, consumer, server string) {
	t.Helper()
	subject := "$JS.API.STREAM.LEADER.STEPDOWN." + stream
	if consumer != "" {
		subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + stream + "." + consumer
	}
	req, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": server}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	lastErr := "none"
	for {
		if l, err := c.leader(js, stream, consumer); err == nil && l == server {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not lead %s %s after 20 s of step-downs (last error: %s)", server, stream, consumer, lastErr)
		}
		msg, err := nc.Request(subject, req, 2*time.Second)
		if err != nil {
			lastErr = err.Error()
			continue
		}
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if json.Unmarshal(msg.Data, &resp) == nil && resp.Error != nil {
			lastErr = resp.Error.Description
		}
		// The new leader needs a moment to show.
		time.Sleep(500 * time.Millisecond)
	}
}
