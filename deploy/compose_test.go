package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/goccy/go-yaml"
)

// The parts of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	NetworkMode string `yaml:"network_mode"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var f composeFile
	if err := yaml.Unmarshal(readFile(t, "docker-compose.yml"), &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// servicesRunning returns the names of the services whose command starts
// with first, sorted.
func (f composeFile) servicesRunning(first string) []string {
	var names []string
	for name, s := range f.Services {
		if len(s.Command) > 0 && s.Command[0] == first {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// publishes reports whether the service publishes container port p on the
// same host port.
func (s composeService) publishes(p string) bool {
	return slices.Contains(s.Ports, p+":"+p)
}

// hostPort splits a listen address and fails the test on a bad one.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return h, p
}

func TestComposeNATSCluster(t *testing.T) {
	t.Parallel()
	f := loadCompose(t)
	nats := f.servicesRunning("nats-server")
	if len(nats) != 3 {
		t.Fatalf("want 3 NATS services (command nats-server ...), found %v", nats)
	}
	clusterName := ""
	for _, name := range nats {
		s := f.Services[name]
		args := s.Command[1:]
		if !strings.HasPrefix(s.Image, "nats:2.") {
			t.Errorf("%s: image %q, want nats:2.x", name, s.Image)
		}
		if !slices.Contains(args, "--jetstream") && !slices.Contains(args, "-js") {
			t.Errorf("%s: JetStream is off: want --jetstream", name)
		}
		if n, _ := flag(args, "--name"); n != name {
			t.Errorf("%s: --name %q, want the service name (unique server names)", name, n)
		}
		store, ok := flag(args, "--store_dir")
		if !ok || !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+store) }) {
			t.Errorf("%s: --store_dir %q is not on a volume", name, store)
		}
		cn, _ := flag(args, "--cluster_name")
		if cn == "" || (clusterName != "" && cn != clusterName) {
			t.Errorf("%s: --cluster_name %q: want one name for the 3 servers", name, cn)
		}
		clusterName = cn
		cl, _ := flag(args, "--cluster")
		u, err := url.Parse(cl)
		if err != nil || u.Port() == "" {
			t.Fatalf("%s: --cluster %q: want nats://0.0.0.0:<port>", name, cl)
		}
		routes, _ := flag(args, "--routes")
		var got, want []string
		for _, r := range strings.Split(routes, ",") {
			ru, err := url.Parse(strings.TrimSpace(r))
			if err != nil {
				t.Fatalf("%s: route %q: %v", name, r, err)
			}
			got = append(got, ru.Host)
		}
		for _, other := range nats {
			if other != name {
				want = append(want, other+":"+u.Port())
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: --routes %v, want the other servers %v", name, got, want)
		}
		if s.Healthcheck == nil || !slices.ContainsFunc(s.Healthcheck.Test, func(a string) bool { return strings.Contains(a, "/healthz") }) {
			t.Errorf("%s: want a healthcheck on /healthz (the workers wait for it)", name)
		}
	}
}

func TestComposeWorkers(t *testing.T) {
	t.Parallel()
	f := loadCompose(t)
	nats := f.servicesRunning("nats-server")
	sims := f.servicesRunning("sim")
	if len(sims) != 1 {
		t.Fatalf("want one service running `bcsync sim`, found %v", sims)
	}
	simName := sims[0]
	sim := f.Services[simName]
	bcListen, _ := flag(sim.Command, "--bc-listen")
	ipaasListen, _ := flag(sim.Command, "--ipaas-listen")
	_, bcPort := hostPort(t, bcListen)
	_, ipaasPort := hostPort(t, ipaasListen)
	for _, addr := range []string{bcListen, ipaasListen} {
		if h, p := hostPort(t, addr); h != "0.0.0.0" || !sim.publishes(p) {
			t.Errorf("%s: %s: want 0.0.0.0 and the port published as %s:%s", simName, addr, p, p)
		}
	}

	workers := f.servicesRunning("worker")
	if len(workers) < 2 {
		t.Fatalf("want two worker services, found %v", workers)
	}
	ids, admins := map[string]bool{}, map[string]bool{}
	for _, name := range workers {
		s := f.Services[name]
		args := s.Command[1:]
		if s.Build == nil || s.Build.Context != "." {
			t.Errorf("%s: want build context . (the repository's Dockerfile)", name)
		}
		for _, dep := range append([]string{simName}, nats...) {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("%s: does not depend on %s", name, dep)
			}
		}
		for _, dep := range nats {
			if c := s.DependsOn[dep].Condition; c != "service_healthy" {
				t.Errorf("%s: depends on %s with condition %q, want service_healthy", name, dep, c)
			}
		}
		// The simulators are reached on 127.0.0.1: bcsync takes plain http
		// only for loopback addresses.
		if s.NetworkMode != "service:"+simName {
			t.Errorf("%s: network_mode %q, want service:%s", name, s.NetworkMode, simName)
		}
		id, _ := flag(args, "--id")
		if id == "" || ids[id] {
			t.Errorf("%s: --id %q: workers sharing one network namespace need distinct ids (hostname-pid would be equal)", name, id)
		}
		ids[id] = true
		admin, ok := flag(args, "--admin-listen")
		if !ok {
			admin = ":9090"
		}
		_, ap := hostPort(t, admin)
		if admins[ap] || !sim.publishes(ap) {
			t.Errorf("%s: --admin-listen %s: want a port of its own, published by %s", name, admin, simName)
		}
		admins[ap] = true
		if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d <= defaultGrace+natsDrain+shutdownSteps {
			t.Errorf("%s: stop_grace_period %q: want more than a worker's worst shutdown, %s (--grace %s, the NATS drain %s, the other steps %s)",
				name, s.StopGracePeriod, defaultGrace+natsDrain+shutdownSteps, defaultGrace, natsDrain, shutdownSteps)
		}

		// The configuration: a file of the repository, mounted read-only.
		cfgPath, ok := flag(args, "--config")
		if !ok {
			t.Fatalf("%s: no --config", name)
		}
		var hostFile string
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == cfgPath {
				hostFile = parts[0]
			}
		}
		if !strings.HasPrefix(hostFile, "./deploy/compose/") {
			t.Fatalf("%s: %s is not mounted from ./deploy/compose/", name, cfgPath)
		}
		cfg := parseConfig(t, name+"'s "+hostFile, readFile(t, path.Clean(hostFile)), s.Environment)

		var hosts, want []string
		for _, u := range strings.Split(cfg.NATS.URL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil {
				t.Fatal(err)
			}
			hosts = append(hosts, pu.Host)
		}
		for _, n := range nats {
			want = append(want, n+":4222")
		}
		slices.Sort(hosts)
		if !slices.Equal(hosts, want) {
			t.Errorf("%s: nats.url %s, want the 3 servers %v", hostFile, cfg.NATS.URL, want)
		}
		if cfg.NATS.Replicas != len(nats) {
			t.Errorf("%s: nats.replicas %d, want %d (R3 streams)", hostFile, cfg.NATS.Replicas, len(nats))
		}
		for _, s := range cfg.Subscriptions {
			checks := []struct{ what, got, want string }{
				{"api_url", s.APIURL, "http://127.0.0.1:" + bcPort},
				{"authority_url", s.AuthorityURL, "http://127.0.0.1:" + bcPort},
				{"ipaas.base_url", s.IPaaS.BaseURL, "http://127.0.0.1:" + ipaasPort},
				{"tenant_id", s.TenantID, bctest.DefaultTenantID},
				{"client_id", s.ClientID, bctest.DefaultClientID},
				{"company_name", s.CompanyName, bctest.DefaultCompanyName},
				{"environment", s.Environment, bctest.DefaultEnvironment},
				{"ipaas.system_id", fmt.Sprint(s.IPaaS.SystemID), fmt.Sprint(ipaastest.DefaultSystemID)},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: subscription %s: %s %q, want %q (the simulator's)", hostFile, s.Name, c.what, c.got, c.want)
				}
			}
			if s.ClientSecret.Reveal() != bctest.DefaultClientSecret {
				t.Errorf("%s: the client secret %s sets is not the BC simulator's", name, s.ClientSecretEnv)
			}
			if s.IPaaS.APIKey.Reveal() != ipaastest.DefaultAPIKey {
				t.Errorf("%s: the API key %s sets is not the iPaaS.com simulator's", name, s.IPaaS.APIKeyEnv)
			}
		}
	}
}

// TestDockerfile checks the build: a Go build stage without cgo, a non-root
// runtime, bcsync as the entrypoint, and a .dockerignore that keeps what the
// build needs.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	var froms, users []string
	var entrypoint string
	cgoOff, builds := false, false
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "Dockerfile")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, rest)
		case "USER":
			users = append(users, rest)
		case "ENTRYPOINT":
			entrypoint = rest
		case "RUN":
			if strings.Contains(rest, "go build") {
				builds = strings.Contains(rest, "./cmd/bcsync")
				cgoOff = strings.Contains(rest, "CGO_ENABLED=0")
			}
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("FROM %v: want a golang:1.26 build stage, then the runtime", froms)
	}
	if len(froms) > 0 {
		if rt := froms[len(froms)-1]; !strings.Contains(rt, "distroless") && !strings.Contains(rt, "alpine") {
			t.Errorf("runtime image %q: want distroless or alpine", rt)
		}
	}
	if !builds || !cgoOff {
		t.Error("want RUN CGO_ENABLED=0 go build ... ./cmd/bcsync")
	}
	if len(users) == 0 {
		t.Error("no USER: the runtime would run as root")
	} else if u := strings.Split(users[len(users)-1], ":")[0]; u == "root" || u == "0" {
		t.Errorf("USER %s: want a non-root user", users[len(users)-1])
	}
	if !strings.Contains(entrypoint, "bcsync") {
		t.Errorf("ENTRYPOINT %s: want bcsync", entrypoint)
	}

	// .dockerignore must not drop what go build reads, including the
	// files embedded with go:embed.
	var patterns []string
	sc = bufio.NewScanner(bytes.NewReader(readFile(t, ".dockerignore")))
	for sc.Scan() {
		if p := strings.TrimSpace(sc.Text()); p != "" && !strings.HasPrefix(p, "#") {
			patterns = append(patterns, strings.TrimPrefix(p, "/"))
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd/bcsync/main.go", "config/testdata/example.yaml"} {
		for _, p := range patterns {
			if ignored(p, need) {
				t.Errorf(".dockerignore: %q leaves %s out of the build", p, need)
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern matches file or one of its
// parent directories ("**/" matches any number of directories).
func ignored(pattern, file string) bool {
	pattern = strings.TrimSuffix(pattern, "/")
	for f := file; f != "." && f != "/"; f = path.Dir(f) {
		if ok, _ := filepath.Match(pattern, f); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			parts := strings.Split(f, "/")
			for i := range parts {
				if ok, _ := filepath.Match(rest, strings.Join(parts[i:], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
