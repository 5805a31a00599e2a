package deploy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/config"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// repoRoot is the repository's root, seen from this package's directory,
// where go test runs.
const repoRoot = ".."

// defaultGrace is the default of `bcsync worker --grace`.
const defaultGrace = 25 * time.Second

// natsDrain is how long broker.Close may wait for the NATS connection to
// drain after the grace period.
const natsDrain = 10 * time.Second

// shutdownSteps is the rest of a worker's worst shutdown besides --grace
// and the drain: the pull in flight (2s), handing back a job on its last
// delivery as a copy (17s), the record locks' release (5s), the throttle
// leases' (5s) and the admin server's shutdown (2s).
const shutdownSteps = 31 * time.Second

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// manifest is one YAML document of a Kubernetes manifest file.
type manifest struct {
	file string
	body ast.Node
	head objectHead
}

type objectHead struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type objectMeta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

func (m manifest) String() string {
	return fmt.Sprintf("%s %s/%s", m.file, m.head.Kind, m.head.Metadata.Name)
}

// decode decodes the document into v.
func (m manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := yaml.NodeToValue(m.body, v); err != nil {
		t.Fatalf("%s: %v", m, err)
	}
}

// loadManifests reads every document of every .yaml file in dir (relative to
// the repository root), failing on a file that is not YAML or a document
// without apiVersion, kind and metadata.name.
func loadManifests(t *testing.T, dir string) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .yaml file in %s", dir)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel := path.Join(dir, filepath.Base(f))
		file, err := parser.ParseBytes(data, 0)
		if err != nil {
			t.Fatalf("%s: not YAML: %v", rel, err)
		}
		for i, doc := range file.Docs {
			if doc.Body == nil {
				continue
			}
			m := manifest{file: rel, body: doc.Body}
			if err := yaml.NodeToValue(doc.Body, &m.head); err != nil {
				t.Fatalf("%s, document %d: %v", rel, i+1, err)
			}
			if m.head.APIVersion == "" || m.head.Kind == "" || m.head.Metadata.Name == "" {
				t.Errorf("%s, document %d: apiVersion %q, kind %q, metadata.name %q: all three are needed",
					rel, i+1, m.head.APIVersion, m.head.Kind, m.head.Metadata.Name)
			}
			out = append(out, m)
		}
	}
	return out
}

// find returns the one manifest of that kind and name.
func find(t *testing.T, ms []manifest, kind, name string) manifest {
	t.Helper()
	var found []manifest
	for _, m := range ms {
		if m.head.Kind == kind && m.head.Metadata.Name == name {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %q, found %d", kind, name, len(found))
	}
	return found[0]
}

// ofKind returns the manifests of that kind.
func ofKind(ms []manifest, kind string) []manifest {
	var out []manifest
	for _, m := range ms {
		if m.head.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// The parts of Kubernetes objects that the tests read.

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName            string          `yaml:"serviceAccountName"`
	TerminationGracePeriodSeconds int             `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               securityContext `yaml:"securityContext"`
	Containers                    []container     `yaml:"containers"`
	Volumes                       []volume        `yaml:"volumes"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []envVar `yaml:"env"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]any `yaml:"requests"`
		Limits   map[string]any `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext securityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount   `yaml:"volumeMounts"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string      `yaml:"name"`
		Items []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string      `yaml:"secretName"`
		Items      []keyToPath `yaml:"items"`
	} `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			ConfigMap *struct {
				Name  string      `yaml:"name"`
				Items []keyToPath `yaml:"items"`
			} `yaml:"configMap"`
			Secret *struct {
				Name  string      `yaml:"name"`
				Items []keyToPath `yaml:"items"`
			} `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
	EmptyDir map[string]any `yaml:"emptyDir"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deploymentSpec struct {
	Spec struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template podTemplate   `yaml:"template"`
	} `yaml:"spec"`
}

type statefulSetSpec struct {
	Spec struct {
		ServiceName          string        `yaml:"serviceName"`
		Replicas             int           `yaml:"replicas"`
		PodManagementPolicy  string        `yaml:"podManagementPolicy"`
		Selector             labelSelector `yaml:"selector"`
		Template             podTemplate   `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				Resources struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type serviceSpec struct {
	Spec struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type pdbSpec struct {
	Spec struct {
		MinAvailable   any           `yaml:"minAvailable"`
		MaxUnavailable any           `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type secretSpec struct {
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

type configMapSpec struct {
	Data map[string]string `yaml:"data"`
}

type kustomization struct {
	Namespace          string   `yaml:"namespace"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

// env returns the value of the container's environment variable name.
func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// port resolves a probe's or a Service's port (a number or a port name) to
// the container's port number.
func (c container) port(t *testing.T, p any) int {
	t.Helper()
	s := fmt.Sprint(p)
	for _, cp := range c.Ports {
		if cp.Name == s || fmt.Sprint(cp.ContainerPort) == s {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %v", c.Name, p)
	return 0
}

// flag returns the value of --name in args ("--name=value" or "--name value").
func flag(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// mounted says where a file seen by a container comes from.
type mounted struct {
	kind   string // "configMap" or "secret"
	name   string // of the ConfigMap or Secret
	key    string
	mount  volumeMount
	volume volume
}

// fileSource resolves an absolute path inside the container to the key of
// the ConfigMap or Secret mounted there.
func fileSource(t *testing.T, pod podSpec, c container, file string) mounted {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		i := slices.IndexFunc(pod.Volumes, func(v volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Fatalf("container %s mounts volume %q, which the pod does not have", c.Name, m.Name)
		}
		v := pod.Volumes[i]
		if m.SubPath != "" {
			rel = path.Join(m.SubPath, rel)
		}
		pick := func(kind, name string, items []keyToPath) (mounted, bool) {
			if len(items) == 0 {
				return mounted{kind: kind, name: name, key: rel, mount: m, volume: v}, true
			}
			for _, it := range items {
				if it.Path == rel {
					return mounted{kind: kind, name: name, key: it.Key, mount: m, volume: v}, true
				}
			}
			return mounted{}, false
		}
		switch {
		case v.ConfigMap != nil:
			if r, ok := pick("configMap", v.ConfigMap.Name, v.ConfigMap.Items); ok {
				return r
			}
		case v.Secret != nil:
			if r, ok := pick("secret", v.Secret.SecretName, v.Secret.Items); ok {
				return r
			}
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					if r, ok := pick("configMap", s.ConfigMap.Name, s.ConfigMap.Items); ok {
						return r
					}
				}
				if s.Secret != nil {
					if r, ok := pick("secret", s.Secret.Name, s.Secret.Items); ok {
						return r
					}
				}
			}
		}
		t.Fatalf("container %s: %s is under the mount %s, but volume %q has no such file", c.Name, file, m.MountPath, v.Name)
	}
	t.Fatalf("container %s: no volume is mounted where %s is", c.Name, file)
	return mounted{}
}

// subscriptionFiles reads the names and secret file paths of the
// subscriptions of a configuration file, before config.Parse (which needs
// the files to exist).
type subscriptionFiles struct {
	Subscriptions []struct {
		Name             string `yaml:"name"`
		ClientSecretFile string `yaml:"client_secret_file"`
		IPaaS            struct {
			APIKeyFile string `yaml:"api_key_file"`
		} `yaml:"ipaas"`
	} `yaml:"subscriptions"`
	NATS struct {
		CredsFile string `yaml:"creds_file"`
	} `yaml:"nats"`
}

// parseConfig runs config.Parse on data with env, and fails the test with
// every problem it reports.
func parseConfig(t *testing.T, what string, data []byte, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(data, config.MapEnv(env))
	if err != nil {
		t.Fatalf("%s does not load: %v", what, err)
	}
	return cfg
}
