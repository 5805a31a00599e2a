package deploy

import (
	"fmt"
	"math"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/config"
	"github.com/goccy/go-yaml"
	"github.com/nats-io/nats-server/v2/server"
)

const (
	kubeDir          = "deploy/kubernetes"
	natsDir          = "deploy/nats"
	namespace        = "bcsync"
	workerDeployment = "bcsync-worker"
	natsStatefulSet  = "nats"
	natsClientSvc    = "nats"
)

// assumedJobTime is what one job takes in a worker, BC read plus iPaaS.com
// write plus ack, in the derivation of the ScaledObject's maxReplicaCount
// (see the comment in scaledobject.yaml).
const assumedJobTime = time.Second

// worker is the worker Deployment of deploy/kubernetes and what it refers to.
type worker struct {
	manifests []manifest
	dep       deploymentSpec
	pod       podSpec
	c         container
	// cfg is the ConfigMap's configuration file, loaded as the worker would
	// with the Deployment's environment and the example Secrets' files.
	cfg *config.Config
}

func loadWorker(t *testing.T) worker {
	t.Helper()
	w := worker{manifests: loadManifests(t, kubeDir)}
	find(t, w.manifests, "Deployment", workerDeployment).decode(t, &w.dep)
	w.pod = w.dep.Spec.Template.Spec
	if len(w.pod.Containers) != 1 {
		t.Fatalf("Deployment %s: want one container, found %d", workerDeployment, len(w.pod.Containers))
	}
	w.c = w.pod.Containers[0]

	cfgPath, ok := flag(w.c.Args, "--config")
	if !ok {
		t.Fatalf("Deployment %s: the worker's args name no --config", workerDeployment)
	}
	src := fileSource(t, w.pod, w.c, cfgPath)
	if src.kind != "configMap" {
		t.Fatalf("%s comes from a %s, want a ConfigMap", cfgPath, src.kind)
	}
	var cm configMapSpec
	find(t, w.manifests, "ConfigMap", src.name).decode(t, &cm)
	data, ok := cm.Data[src.key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s (mounted as %s)", src.name, src.key, cfgPath)
	}

	// The secret files do not exist here: write the example Secrets' values
	// to temporary files and point the worker's settings at them with the
	// environment overrides the worker also honours.
	var files subscriptionFiles
	if err := yaml.Unmarshal([]byte(data), &files); err != nil {
		t.Fatalf("ConfigMap %s, %s: %v", src.name, src.key, err)
	}
	env := map[string]string{}
	for _, e := range w.c.Env {
		env[e.Name] = e.Value
	}
	secrets := exampleSecrets(t, kubeDir)
	dir := t.TempDir()
	redirect := func(envName, file string) {
		t.Helper()
		m := w.secretFile(t, file)
		v, ok := secrets[m.name][m.key]
		if !ok {
			t.Fatalf("%s is key %q of Secret %s, which secret.example.yaml does not show", file, m.key, m.name)
		}
		tmp := filepath.Join(dir, m.name+"-"+m.key)
		if err := os.WriteFile(tmp, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		env[envName] = tmp
	}
	for _, s := range files.Subscriptions {
		if s.ClientSecretFile != "" {
			redirect(config.EnvPrefix(s.Name)+"CLIENT_SECRET_FILE", s.ClientSecretFile)
		}
		if s.IPaaS.APIKeyFile != "" {
			redirect(config.EnvPrefix(s.Name)+"IPAAS_API_KEY_FILE", s.IPaaS.APIKeyFile)
		}
	}
	if creds := firstSet(env["NATS_CREDS"], files.NATS.CredsFile); creds != "" {
		redirect("NATS_CREDS", creds)
	}
	w.cfg = parseConfig(t, "ConfigMap "+src.name+" ("+cfgPath+")", []byte(data), env)
	return w
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// secretFile resolves a file the worker reads to its Secret, and fails on a
// file that is not one or that would not follow a rotation.
func (w worker) secretFile(t *testing.T, file string) mounted {
	t.Helper()
	m := fileSource(t, w.pod, w.c, file)
	if m.kind != "secret" {
		t.Fatalf("%s comes from a %s %s, want a Secret", file, m.kind, m.name)
	}
	if m.mount.SubPath != "" {
		t.Errorf("%s is a subPath mount of Secret %s: the kubelet never updates those, so a rotated secret would not reach the worker", file, m.name)
	}
	return m
}

// kubeConfig is the worker configuration of deploy/kubernetes/configmap.yaml.
func kubeConfig(t *testing.T) *config.Config {
	t.Helper()
	return loadWorker(t).cfg
}

// exampleSecrets returns the values of the Secrets of dir's *.example.yaml
// files, by Secret name and key.
func exampleSecrets(t *testing.T, dir string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, m := range ofKind(loadManifests(t, dir), "Secret") {
		var s secretSpec
		m.decode(t, &s)
		vals := map[string]string{}
		for k, v := range s.StringData {
			vals[k] = v
		}
		for k := range s.Data {
			t.Errorf("%s: key %s is in data; write placeholders in stringData", m, k)
		}
		out[m.head.Metadata.Name] = vals
	}
	return out
}

// TestManifestsParse checks every Kubernetes manifest: YAML with apiVersion,
// kind and metadata.name (loadManifests), in the bcsync namespace, Secrets
// only as examples, and a kustomization that lists every other file.
func TestManifestsParse(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{kubeDir, natsDir} {
		ms := loadManifests(t, dir)
		var kust *manifest
		for i, m := range ms {
			switch {
			case m.head.Kind == "Kustomization":
				kust = &ms[i]
			case m.head.Kind == "Namespace":
				if m.head.Metadata.Name != namespace {
					t.Errorf("%s: want namespace %s", m, namespace)
				}
			case m.head.Metadata.Namespace != namespace:
				t.Errorf("%s: metadata.namespace %q, want %s", m, m.head.Metadata.Namespace, namespace)
			}
			if m.head.Kind == "Secret" && !strings.HasSuffix(m.file, ".example.yaml") {
				t.Errorf("%s: a Secret belongs in a *.example.yaml file, with placeholders", m)
			}
		}
		if kust == nil {
			t.Fatalf("%s has no kustomization.yaml", dir)
		}
		var k kustomization
		kust.decode(t, &k)
		if k.Namespace != namespace {
			t.Errorf("%s: namespace %q, want %s", kust.file, k.Namespace, namespace)
		}
		listed := map[string]bool{}
		for _, r := range k.Resources {
			listed[path.Join(dir, r)] = true
			if _, err := os.Stat(filepath.Join(repoRoot, dir, r)); err != nil {
				t.Errorf("%s lists %s: %v", kust.file, r, err)
			}
		}
		for _, m := range ms {
			if m.file != kust.file && !strings.HasSuffix(m.file, ".example.yaml") && !listed[m.file] {
				t.Errorf("%s is not in %s's resources", m.file, kust.file)
			}
		}
	}
}

// TestSecretExamplesHoldNoSecrets: every value of an example Secret is a
// placeholder.
func TestSecretExamplesHoldNoSecrets(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{kubeDir, natsDir} {
		for name, vals := range exampleSecrets(t, dir) {
			if len(vals) == 0 {
				t.Errorf("%s: example Secret %s shows no key", dir, name)
			}
			for k, v := range vals {
				if !strings.Contains(v, "REPLACE") {
					t.Errorf("%s: Secret %s, key %s: not a placeholder (REPLACE_...): never commit a secret", dir, name, k)
				}
			}
		}
	}
}

func TestWorkerDeployment(t *testing.T) {
	t.Parallel()
	w := loadWorker(t)
	if len(w.c.Args) == 0 || w.c.Args[0] != "worker" {
		t.Errorf("the container runs %q, want `bcsync worker` (the image's entrypoint is bcsync)", w.c.Args)
	}

	grace := defaultGrace
	if v, ok := flag(w.c.Args, "--grace"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("--grace %q: %v", v, err)
		}
		grace = d
	}
	if tg := time.Duration(w.pod.TerminationGracePeriodSeconds) * time.Second; tg <= grace+natsDrain+shutdownSteps {
		t.Errorf("terminationGracePeriodSeconds %s: the kubelet would kill a draining worker; want more than --grace (%s) plus the NATS drain (%s) plus the other steps (%s)",
			tg, grace, natsDrain, shutdownSteps)
	}

	admin := ":9090" // the default of --admin-listen
	if v, ok := flag(w.c.Args, "--admin-listen"); ok {
		admin = v
	}
	_, p, err := net.SplitHostPort(admin)
	if err != nil {
		t.Fatalf("--admin-listen %q: %v", admin, err)
	}
	adminPort, _ := strconv.Atoi(p)
	for _, pr := range []struct {
		name  string
		probe *probe
		path  string
	}{{"livenessProbe", w.c.LivenessProbe, "/healthz"}, {"readinessProbe", w.c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe of %s", pr.name, pr.path)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path {
			t.Errorf("%s: path %q, want %s", pr.name, pr.probe.HTTPGet.Path, pr.path)
		}
		if got := w.c.port(t, pr.probe.HTTPGet.Port); got != adminPort {
			t.Errorf("%s: port %d, want the admin port %d (--admin-listen %s)", pr.name, got, adminPort, admin)
		}
	}

	nonRoot := w.c.SecurityContext.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = w.pod.SecurityContext.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Error("securityContext: want runAsNonRoot: true")
	}
	if sc := w.c.SecurityContext; sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("securityContext: want readOnlyRootFilesystem: true")
	}
	if sc := w.c.SecurityContext; sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("securityContext: want allowPrivilegeEscalation: false")
	}
	if !slices.Contains(w.c.SecurityContext.Capabilities.Drop, "ALL") {
		t.Error("securityContext: want capabilities.drop: [ALL]")
	}
	for _, r := range []string{"cpu", "memory"} {
		if w.c.Resources.Requests[r] == nil {
			t.Errorf("resources.requests.%s: missing", r)
		}
	}
	if w.c.Resources.Limits["memory"] == nil {
		t.Error("resources.limits.memory: missing")
	}

	find(t, w.manifests, "ServiceAccount", w.pod.ServiceAccountName)
	podLabels := w.dep.Spec.Template.Metadata.Labels
	checkSelects(t, "Deployment "+workerDeployment, w.dep.Spec.Selector.MatchLabels, podLabels)

	var svc serviceSpec
	find(t, w.manifests, "Service", "bcsync-worker-metrics").decode(t, &svc)
	checkSelects(t, "Service bcsync-worker-metrics", svc.Spec.Selector, podLabels)
	if len(svc.Spec.Ports) != 1 || w.c.port(t, svc.Spec.Ports[0].TargetPort) != adminPort {
		t.Errorf("Service bcsync-worker-metrics: want one port to the admin port %d (/metrics)", adminPort)
	}
	var pdb pdbSpec
	find(t, w.manifests, "PodDisruptionBudget", workerDeployment).decode(t, &pdb)
	checkSelects(t, "PodDisruptionBudget "+workerDeployment, pdb.Spec.Selector.MatchLabels, podLabels)
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PodDisruptionBudget: want maxUnavailable or minAvailable")
	}
}

// checkSelects fails unless selector is not empty and matches labels.
func checkSelects(t *testing.T, what string, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s: empty selector", what)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s: selects %s=%s, which the pods do not have", what, k, v)
		}
	}
}

// TestWorkerConfig checks that the ConfigMap loads as the worker loads it,
// that every secret is a file mounted from a Secret (so that a rotated
// Secret is picked up without a restart), and that the NATS settings fit the
// cluster of deploy/nats.
func TestWorkerConfig(t *testing.T) {
	t.Parallel()
	w := loadWorker(t)
	if len(w.cfg.Subscriptions) == 0 {
		t.Fatal("the ConfigMap has no subscription")
	}
	for _, s := range w.cfg.Subscriptions {
		if s.ClientSecretFile == "" || s.IPaaS.APIKeyFile == "" {
			t.Errorf("subscription %s: set client_secret_file and ipaas.api_key_file (files of a mounted Secret, re-read while the subscription is paused for refused credentials): an environment variable changes only with a restart", s.Name)
		}
	}
	url, ok := w.c.env("NATS_URL")
	if !ok || url == "" || w.cfg.NATS.URL != url {
		t.Errorf("NATS_URL %q, loaded nats.url %q: the Deployment must set NATS_URL (an empty URL starts an embedded server)", url, w.cfg.NATS.URL)
	}
	creds, ok := w.c.env("NATS_CREDS")
	if !ok || creds == "" {
		t.Error("NATS_CREDS: want the path of the NATS credentials file")
	} else {
		w.secretFile(t, creds)
	}

	var sts statefulSetSpec
	find(t, loadManifests(t, natsDir), "StatefulSet", natsStatefulSet).decode(t, &sts)
	if w.cfg.NATS.Replicas != 3 || w.cfg.NATS.Replicas > sts.Spec.Replicas {
		t.Errorf("nats.replicas %d: want 3, for R3 streams and buckets on the %d servers of StatefulSet %s", w.cfg.NATS.Replicas, sts.Spec.Replicas, natsStatefulSet)
	}
	want := fmt.Sprintf("nats://%s.%s.svc.cluster.local:%d", natsClientSvc, namespace, natsOptions(t).Port)
	for _, u := range strings.Split(url, ",") {
		if strings.TrimSpace(u) != want {
			t.Errorf("NATS_URL %s: want %s, the client Service of %s", u, want, natsDir)
		}
	}
}

type scaledObject struct {
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount int `yaml:"minReplicaCount"`
		MaxReplicaCount int `yaml:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `yaml:"type"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

// maxWorkers derives the largest useful fleet from the BC budgets of cfg
// (see scaledobject.yaml): per app registration, the jobs in flight that
// keep its budget busy, in workers, plus one spare.
func maxWorkers(cfg *config.Config) int {
	type registration struct {
		rate  float64 // BC requests per second
		slots int     // jobs one worker runs at once for it
	}
	regs := map[string]*registration{}
	for _, s := range cfg.Subscriptions {
		r := regs[s.ClientID]
		if r == nil {
			r = &registration{rate: float64(s.Throttling.RequestsPerWindow) / s.Throttling.Window.Seconds()}
			regs[s.ClientID] = r
		}
		r.slots += s.Worker.Concurrency
	}
	n := 1
	for _, r := range regs {
		n += int(math.Ceil(r.rate * assumedJobTime.Seconds() / float64(r.slots)))
	}
	return n
}

func TestScaledObject(t *testing.T) {
	t.Parallel()
	w := loadWorker(t)
	var so scaledObject
	find(t, w.manifests, "ScaledObject", workerDeployment).decode(t, &so)
	if ref := so.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != workerDeployment {
		t.Errorf("scaleTargetRef %+v: want Deployment %s", ref, workerDeployment)
	}
	if w.dep.Spec.Replicas != nil {
		t.Errorf("Deployment %s sets replicas: %d; KEDA owns the count, and every apply would reset it", workerDeployment, *w.dep.Spec.Replicas)
	}
	if want := maxWorkers(w.cfg); so.Spec.MaxReplicaCount != want {
		t.Errorf("maxReplicaCount %d, want %d: derived from the BC budget and worker.concurrency of configmap.yaml (see the comment in scaledobject.yaml)",
			so.Spec.MaxReplicaCount, want)
	}
	if so.Spec.MinReplicaCount < 1 || so.Spec.MinReplicaCount > so.Spec.MaxReplicaCount {
		t.Errorf("minReplicaCount %d: want 1..maxReplicaCount (a worker also runs the poller and the safety net)", so.Spec.MinReplicaCount)
	}

	// KEDA asks the workers' metrics Service for /lag (see serveLag in
	// cmd/bcsync): one trigger per subscription, on its lag.
	var svc serviceSpec
	find(t, w.manifests, "Service", "bcsync-worker-metrics").decode(t, &svc)
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service bcsync-worker-metrics: %d ports, want 1", len(svc.Spec.Ports))
	}
	wantURL := fmt.Sprintf("http://bcsync-worker-metrics.%s.svc.cluster.local:%d/lag", namespace, svc.Spec.Ports[0].Port)
	lagged := map[string]bool{}
	for i, tr := range so.Spec.Triggers {
		if tr.Type != "metrics-api" {
			t.Errorf("trigger %d: type %q, want metrics-api (the workers' /lag)", i, tr.Type)
			continue
		}
		md := tr.Metadata
		if md["url"] != wantURL {
			t.Errorf("trigger %d: url %q, want %s", i, md["url"], wantURL)
		}
		if f := md["format"]; f != "" && f != "json" {
			t.Errorf("trigger %d: format %q, want json", i, f)
		}
		sub, ok := strings.CutPrefix(md["valueLocation"], "subscriptions.")
		sub, ok2 := strings.CutSuffix(sub, ".lag")
		if !ok || !ok2 {
			t.Errorf("trigger %d: valueLocation %q, want subscriptions.<name>.lag", i, md["valueLocation"])
		}
		lagged[sub] = true
		if n, err := strconv.Atoi(md["targetValue"]); err != nil || n <= 0 {
			t.Errorf("trigger %d: targetValue %q: want a positive number", i, md["targetValue"])
		}
	}
	for _, s := range w.cfg.Subscriptions {
		if !lagged[s.Name] {
			t.Errorf("no trigger on the lag of subscription %s", s.Name)
		}
	}
}

// natsOptions loads deploy/nats/nats-server.conf with nats-server's own
// parser, as the StatefulSet's first pod would, with the example auth.conf.
func natsOptions(t *testing.T) *server.Options {
	t.Helper()
	dir := t.TempDir()
	conf := strings.ReplaceAll(string(readFile(t, natsDir+"/nats-server.conf")), "$POD_NAME", natsStatefulSet+"-0")
	if err := os.WriteFile(filepath.Join(dir, "nats-server.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, ok := exampleSecrets(t, natsDir)["nats-auth"]["auth.conf"]
	if !ok {
		t.Fatal("nats-auth.example.yaml: want Secret nats-auth with key auth.conf")
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats-server.conf"))
	if err != nil {
		t.Fatalf("%s/nats-server.conf: %v", natsDir, err)
	}
	return opts
}

func TestNATSCluster(t *testing.T) {
	t.Parallel()
	ms := loadManifests(t, natsDir)
	var sts statefulSetSpec
	find(t, ms, "StatefulSet", natsStatefulSet).decode(t, &sts)
	pod := sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("StatefulSet %s: want one container", natsStatefulSet)
	}
	c := pod.Containers[0]
	if sts.Spec.Replicas != 3 {
		t.Errorf("StatefulSet %s: %d replicas, want 3", natsStatefulSet, sts.Spec.Replicas)
	}
	if sts.Spec.PodManagementPolicy != "Parallel" {
		t.Errorf("podManagementPolicy %q: want Parallel (a server is ready only once the cluster has formed)", sts.Spec.PodManagementPolicy)
	}
	podLabels := sts.Spec.Template.Metadata.Labels
	checkSelects(t, "StatefulSet "+natsStatefulSet, sts.Spec.Selector.MatchLabels, podLabels)

	// The configuration file: the ConfigMap kustomize makes of nats-server.conf.
	confPath, ok := flag(c.Args, "--config")
	if !ok {
		t.Fatal("the nats container's args name no --config")
	}
	src := fileSource(t, pod, c, confPath)
	var k kustomization
	find(t, ms, "Kustomization", "bcsync-nats").decode(t, &k)
	generated := false
	for _, g := range k.ConfigMapGenerator {
		if src.kind == "configMap" && g.Name == src.name && slices.Contains(g.Files, src.key) {
			generated = true
		}
	}
	if !generated {
		t.Errorf("%s is key %s of %s %s, which kustomization.yaml does not generate from %s", confPath, src.key, src.kind, src.name, src.key)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, natsDir, src.key)); err != nil {
		t.Error(err)
	}
	conf := string(readFile(t, natsDir+"/nats-server.conf"))
	if !strings.Contains(conf, "include ./auth.conf") {
		t.Error("nats-server.conf: want `include ./auth.conf`")
	}
	auth := fileSource(t, pod, c, path.Join(path.Dir(confPath), "auth.conf"))
	if auth.kind != "secret" || auth.name != "nats-auth" || auth.key != "auth.conf" {
		t.Errorf("auth.conf comes from %s %s key %s, want Secret nats-auth key auth.conf", auth.kind, auth.name, auth.key)
	}
	podName := slices.ContainsFunc(c.Env, func(e envVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	})
	if !podName || !strings.Contains(conf, "server_name: $POD_NAME") {
		t.Error("want server_name: $POD_NAME, with POD_NAME from metadata.name: routes and KEDA find the servers by pod name")
	}

	opts := natsOptions(t)
	if opts.ServerName != natsStatefulSet+"-0" {
		t.Errorf("server_name %q, want the pod name", opts.ServerName)
	}
	if !opts.JetStream {
		t.Error("nats-server.conf: JetStream is off")
	}
	if opts.JetStreamMaxMemory <= 0 {
		t.Error("jetstream.max_memory_store: want some memory: bcsync_throttle is a memory bucket")
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatal("want one volumeClaimTemplate, the JetStream store")
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	storeMount := slices.IndexFunc(c.VolumeMounts, func(m volumeMount) bool {
		return m.Name == claim.Metadata.Name && strings.HasPrefix(opts.StoreDir+"/", strings.TrimSuffix(m.MountPath, "/")+"/")
	})
	if storeMount < 0 {
		t.Errorf("jetstream.store_dir %s is not on the volume %s", opts.StoreDir, claim.Metadata.Name)
	}
	if size := quantity(t, claim.Spec.Resources.Requests["storage"]); opts.JetStreamMaxStore <= 0 || opts.JetStreamMaxStore >= size {
		t.Errorf("jetstream.max_file_store %d: want less than the volume's %d bytes (room for RAFT logs)", opts.JetStreamMaxStore, size)
	}

	var headless, client serviceSpec
	find(t, ms, "Service", sts.Spec.ServiceName).decode(t, &headless)
	find(t, ms, "Service", natsClientSvc).decode(t, &client)
	if headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: want clusterIP: None and publishNotReadyAddresses: true (the routes must resolve while the cluster forms)", sts.Spec.ServiceName)
	}
	checkSelects(t, "Service "+sts.Spec.ServiceName, headless.Spec.Selector, podLabels)
	checkSelects(t, "Service "+natsClientSvc, client.Spec.Selector, podLabels)
	svcPort := func(s serviceSpec, name string) int {
		for _, p := range s.Spec.Ports {
			if p.Name == name {
				if got := c.port(t, p.TargetPort); got != p.Port {
					t.Errorf("Service port %s: %d to container port %d; keep them equal", name, p.Port, got)
				}
				return p.Port
			}
		}
		t.Errorf("no Service port %s", name)
		return 0
	}
	for _, p := range []struct {
		name string
		conf int
	}{{"client", opts.Port}, {"cluster", opts.Cluster.Port}, {"monitor", opts.HTTPPort}} {
		if got := c.port(t, p.name); got != p.conf {
			t.Errorf("container port %s %d, nats-server.conf says %d", p.name, got, p.conf)
		}
		if got := svcPort(headless, p.name); got != p.conf {
			t.Errorf("Service %s port %s %d, nats-server.conf says %d", sts.Spec.ServiceName, p.name, got, p.conf)
		}
	}
	if got := svcPort(client, "client"); got != opts.Port {
		t.Errorf("Service %s port %d, nats-server.conf says %d", natsClientSvc, got, opts.Port)
	}

	if opts.Cluster.Name == "" {
		t.Error("cluster.name: missing")
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var want []string
	for i := range sts.Spec.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", natsStatefulSet, i, sts.Spec.ServiceName, opts.Cluster.Port))
	}
	slices.Sort(routes)
	if !slices.Equal(routes, want) {
		t.Errorf("cluster.routes %v, want every pod of the StatefulSet %v", routes, want)
	}

	for _, pr := range []*probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil || !strings.HasPrefix(pr.HTTPGet.Path, "/healthz") || c.port(t, pr.HTTPGet.Port) != opts.HTTPPort {
			t.Errorf("want startup, liveness and readiness probes on /healthz of the monitoring port %d", opts.HTTPPort)
			break
		}
	}
	if ps := c.Lifecycle.PreStop; ps == nil || ps.Exec == nil || !slices.Contains(ps.Exec.Command, "ldm="+opts.PidFile) {
		t.Errorf("preStop: want the lame-duck signal to pid_file %s", opts.PidFile)
	}
	pidMount := slices.IndexFunc(c.VolumeMounts, func(m volumeMount) bool { return m.MountPath == path.Dir(opts.PidFile) })
	if pidMount < 0 {
		t.Errorf("pid_file %s: its directory must be a volume (the root filesystem is read-only)", opts.PidFile)
	}
	if tg := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; tg <= opts.LameDuckDuration+opts.LameDuckGracePeriod {
		t.Errorf("terminationGracePeriodSeconds %s: want more than lame_duck_duration + lame_duck_grace_period (%s)", tg, opts.LameDuckDuration+opts.LameDuckGracePeriod)
	}
	if sc := c.SecurityContext; sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("securityContext: want runAsNonRoot and readOnlyRootFilesystem")
	}

	var pdb pdbSpec
	find(t, ms, "PodDisruptionBudget", natsStatefulSet).decode(t, &pdb)
	checkSelects(t, "PodDisruptionBudget "+natsStatefulSet, pdb.Spec.Selector.MatchLabels, podLabels)
	if fmt.Sprint(pdb.Spec.MaxUnavailable) != "1" {
		t.Errorf("PodDisruptionBudget %s: maxUnavailable %v, want 1 (2 of 3 servers keep the quorum)", natsStatefulSet, pdb.Spec.MaxUnavailable)
	}
}

// quantity parses a Kubernetes storage quantity such as 10Gi.
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}} {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * u.mult
		}
	}
	v, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", q, err)
	}
	return v
}
