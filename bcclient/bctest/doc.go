// Package bctest is a strict fake of Business Central online and of the
// Microsoft Entra token endpoint, for tests, demos, benchmarks and the
// standalone simulator.
//
// One host serves both:
//
//	POST /{tenant}/oauth2/v2.0/token                               Entra, client credentials
//	GET  /v2.0/{tenant}/{env}/api/v2.0/companies[(id)]             BC API v2.0
//	GET  /v2.0/{tenant}/{env}/api/v2.0/companies({id})/{set}[(id)] locations, shipmentMethods, customers, items, salesOrders
//	GET  .../companies({id})/salesOrders({id})/salesOrderLines[(id)]
//	GET, POST           .../api/v2.0/subscriptions                webhook subscriptions
//	GET, PATCH, DELETE  .../api/v2.0/subscriptions('{id}')
//	GET  /v2.0/{tenant}/{env}/ODataV4/Company('{name}')/{service}[('{code}')]
//
// It is as strict as the real services, and stricter where a client could
// get something wrong unnoticed: tokens must be requested with the form body
// Entra expects and are checked on every API call; $top and $skip are
// refused, so clients must follow @odata.nextLink; record keys must be
// GUIDs. Failures have the real services' JSON shapes, with literal field
// names (this package does not import bcclient, so a wrong JSON tag in the
// client is caught).
//
// # Queries
//
// A collection takes $filter, $skiptoken (from @odata.nextLink) and, on
// salesOrders, $expand=salesOrderLines (also on a single sales order). A
// $filter is one or more comparisons joined by "and":
//
//	<key> eq '<literal>'                       companies: name; locations, shipmentMethods: code;
//	                                           customers, items, salesOrders: number; price groups: Code
//	lastModifiedDateTime gt 2026-01-02T03:04:05.678Z   every API v2.0 set but companies
//
// or up to MaxOrTerms (100) key comparisons of the same field joined by
// "or" (a read of many records by key):
//
//	<key> eq '<literal>' or <key> eq '<literal>' ...
//
// The datetime is not quoted, is UTC ("Z"), with or without fractional
// seconds; quotes inside a string literal are doubled and the comparison is
// exact (case-sensitive). "or" across two fields is refused as BC refuses
// it; bctest also refuses "or" mixed with "and", "or" between other
// comparisons, more than MaxOrTerms of them, and every other operator,
// function, parenthesis and field: 400 BadRequest_InvalidFilter. Rows come
// in the collection's order whatever the order of the comparisons; a key
// comparison is answered from an index, not a scan. Pages hold at most
// "Prefer: odata.maxpagesize" rows and at most Options.MaxPageSize.
//
// # Limits
//
// BC's per-app limits are emulated for every request with a valid token
// (Options.MaxConcurrent, MaxQueued, MaxQueueWait, Budget, BudgetWindow):
// a sliding-window budget answered with 429 Application_TooManyRequests
// and Retry-After; a cap on requests served at once with a FIFO queue behind
// it, a full queue answered with 429 Application_TooManyRequests (no
// Retry-After) and a wait too long with 503 Internal_ServiceUnavailable.
// Stats counts PeakConcurrent, Queued, Throttled and QueueTimeouts.
//
// # Webhooks
//
// POST .../api/v2.0/subscriptions with {"notificationUrl", "resource",
// "clientState"} (application/json, property names exactly so) validates
// the body and then calls notificationUrl?validationToken=<token> with a
// POST; the endpoint must answer 200 with exactly the token as its body
// within Options.HandshakeTimeout. Answers:
//
//	201  the subscription (subscriptionId: 32 hex digits, expirationDateTime: now + 3 days)
//	400 BadRequest                          malformed body, unknown property, notificationUrl
//	                                        not absolute http(s), resource malformed or of an unknown company
//	400 Application_StringExceededLength    clientState over 2048 characters
//	400 BadRequest_NotSupported             resource not webhook-enabled (locations, companies...)
//	400 BadRequest_HandshakeFailed          the handshake failed: nothing is created
//	400 BadRequest_SubscriptionLimitReached Options.MaxSubscriptions live subscriptions (a
//	                                        permanent refusal until one is deleted, not a throttle)
//	415 BadRequest_UnsupportedMediaType     a body that is not application/json
//
// PATCH subscriptions('<id>') renews (handshake again, expiry now + 3
// days, new @odata.etag) and may change notificationUrl and clientState;
// DELETE answers 204. Both need If-Match: missing or malformed, 400
// BadRequest_InvalidToken; "*" is accepted; stale, 409 Request_EntityChanged.
// An unknown or expired subscription is 404 Internal_RecordNotFound; expired
// ones are gone from the list. The detail codes of these 400s are bctest's:
// BC's documentation does not give them, clients must go by the family.
//
// Server.Notify posts BC's notification JSON to the live subscriptions of a
// change's company and entity set, and deletes those whose endpoint
// answers an error other than 408, 429 and 5xx, as BC does.
//
// # Data and clock
//
// The data set is generated from Options.Seed: the same seed gives the same
// records, ids and timestamps. The Server can be told to fail, slow down,
// deny an entity set (403, SetForbidden), expire tokens and change records,
// and it counts what it serves.
// Options.Now is its clock for token expiry, lastModifiedDateTime of
// changes, subscription expiry and the budget window, so tests can use a
// fake clock.
//
// bctest must never import bcclient (its JSON is written with the literal
// field names of the real services), never relax a check to make a client
// pass, and never serve production traffic: its credentials are fixed test
// values and its tokens are kept in memory.
package bctest
