// Package broker owns bcsync's connection to NATS: it connects to a NATS
// server (credentials file and TLS supported) or, when no URL is given,
// starts an embedded nats-server with JetStream and a file store, and it
// creates or updates the streams and the durable pull consumers bcsync uses,
// idempotently, so every worker can run it at start-up.
//
// It must never delete a stream or a consumer, nor purge messages.
package broker
