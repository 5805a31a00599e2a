// Package throttle owns request budgets: how many requests a client may send
// per window and how many at once. This version provides the per-process
// Local limiter; the fleet-wide budget shared through NATS KV builds on the
// same Acquire/release contract that bcclient and ipaasclient consume.
package throttle
