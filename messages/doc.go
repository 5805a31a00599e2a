// Package messages owns the sync job: the versioned JSON envelope that
// upstream systems publish to NATS JetStream, its validation, the subjects it
// travels on, the deterministic Nats-Msg-Id that deduplicates a retried
// publish, and the dead-letter record that keeps a job that could not be
// synced.
//
// It is the only package an upstream publisher needs, so it imports nothing
// else of bcsync's. It never logs: every problem is returned as an error that
// names the field and what is wrong with it.
package messages
