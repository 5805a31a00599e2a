// Package throttle owns request budgets: how many requests a client may send
// per window and how many at once. Local limits one process; Fleet shares a
// sliding-window budget, a concurrency limit and the pauses a service asks
// for (429, Retry-After) among every worker of one BC app registration or
// iPaaS.com account, through a NATS KV bucket. Both offer the Acquire/release
// contract that bcclient and ipaasclient consume.
//
// It never lets more requests start in a window than the budget, or run at
// once than the concurrency limit (but for a request outliving its lease's
// TTL, see FleetConfig.LeaseTTL), even when the store answers late; it sends
// no request itself and logs nothing but the fleet's pauses.
package throttle
