// Package ipaasclient writes bcsync's records to iPaaS.com: customer
// categories, locations, shipping methods, customers and products, each
// linked to its BC key through an iPaaS.com external id.
//
// It owns:
//   - the one table of iPaaS.com paths and external id table names per data
//     type (paths.go), with the paths iPaaS.com does not publish marked as
//     inferred;
//   - the idempotent upsert of ipaas.md (Client.Upsert): look up the external
//     id; update a linked record by GET, merge, PUT of the whole record;
//     create with external_ids otherwise; resolve a BIZL-1003/1005 answer to
//     a create by looking up once more and updating. It never creates a
//     second record for one external id;
//   - deactivation by external id (Client.Deactivate);
//   - the headers of every call: "Authorization: Bearer <API key>",
//     X-Client-Id when configured, x-correlation-id from the context
//     (WithCorrelationID);
//   - turning every failure into a typed error: *APIError with its code
//     family, Temporary and RetryAfter, and the sentinels ErrUnauthorized,
//     ErrForbidden, ErrValidation, ErrNotFound and ErrLinkConflict.
//
// It must never:
//   - put the API key in an error, even when iPaaS.com echoes the request's
//     headers back, or print it through Config's fmt verbs;
//   - send the key to another host than Config.BaseURL's (redirects are not
//     followed);
//   - log: it returns errors and lets the caller decide;
//   - retry, except the one bounded look-up that resolves a link conflict:
//     the caller (the worker, through its queue) decides when to try again,
//     honouring APIError.RetryAfter;
//   - create a record without its external id link, or PUT a partial
//     record (a PUT replaces the whole record at iPaaS.com).
//
// It knows nothing of NATS: the request budget comes in through the Limiter
// interface.
//
// ipaasclient/ipaastest is a strict fake of iPaaS.com for tests, demos,
// benchmarks and the standalone simulator.
package ipaasclient
