// Package bcclient reads Microsoft Dynamics 365 Business Central online:
// the API v2.0 entity sets (locations, shipmentMethods, customers, companies)
// and the OData V4 web service a customer publishes for Customer Price Groups.
//
// It owns:
//   - the URLs of one BC environment and company, including the escaping of
//     company names, record codes and OData string literals, and the lazy,
//     cached lookup of the company id from the company name;
//   - server-driven paging (Prefer: odata.maxpagesize and @odata.nextLink);
//   - turning every failure into a typed error: *APIError for BC answers
//     (with ErrNotFound, Temporary and RetryAfter), *TokenError for Microsoft
//     Entra answers (with a Fix a user can act on), ErrInvalidKey and
//     ErrForeignNextLink for requests it refuses to send;
//   - NewTokenSource, the client-credentials token source for Entra that
//     refreshes tokens a little before they expire.
//
// It must never:
//   - log: it returns errors and lets the caller decide;
//   - put a client secret or an access token in an error, or print a secret
//     through Credentials' fmt verbs;
//   - send the bearer token to any host but Config.APIURL's (foreign
//     @odata.nextLink values and redirects are refused);
//   - paste caller text into a URL or an OData literal unvalidated or
//     unescaped, or page with $top/$skip;
//   - retry: a failed request returns its error, and the caller (the worker,
//     through its queue) decides when to try again.
//
// It knows nothing of NATS: the fleet-wide request budget and the shared token
// cache come in through the Limiter and oauth2.TokenSource interfaces.
//
// bcclient/bctest is a strict fake of BC and the Entra token endpoint for
// tests, demos and benchmarks.
package bcclient
