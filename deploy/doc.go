// Package deploy holds no code: its directory holds how bcsync is deployed,
// and its tests keep those files in step with the code.
//
//   - kubernetes/: the workers (Deployment, ConfigMap, Secret examples,
//     ServiceAccount, metrics Service, PodDisruptionBudget, KEDA ScaledObject)
//   - nats/: a 3-node NATS JetStream cluster (nats-server.conf, StatefulSet)
//   - streams/: the JetStream streams and a consumer as `nats` CLI JSON
//   - compose/: the workers' configuration of ../docker-compose.yml
//
// The tests parse every file (no container engine or Kubernetes cluster is
// needed) and compare it with what the code expects: the stream JSON with
// package broker, the configuration files with package config, the ports and
// paths of one file with those of the others. A file that drifts fails them.
package deploy
