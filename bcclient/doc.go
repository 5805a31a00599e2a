// Package bcclient reads Microsoft Dynamics 365 Business Central online and
// manages its webhook subscriptions: the API v2.0 entity sets (companies,
// customers, items, locations, shipmentMethods, salesOrders with their
// lines), the OData V4 web service a customer publishes for Customer Price
// Groups, and api/v2.0/subscriptions.
//
// It owns:
//   - the URLs of one BC environment and company, including the escaping of
//     company names, record codes and OData string literals, and the lazy,
//     cached lookup of the company id from the company name;
//   - server-driven paging (Prefer: odata.maxpagesize and @odata.nextLink)
//     and delta reads ($filter=lastModifiedDateTime gt ...);
//   - batched reads by code or number (GetCustomers, GetLocations,
//     GetShipmentMethods): up to MaxBatchKeys keys in one request (two or
//     more when long keys would make a query string web front ends refuse),
//     as key comparisons joined by "or", with Lookup for the keys BC did
//     not find;
//   - retrying throttled and transient failures with exponential backoff,
//     jitter and Retry-After (RetryPolicy), and a 401 once with a new token
//     (TokenInvalidator);
//   - turning every failure into a typed error: *APIError for BC answers
//     (with ErrNotFound, ErrChanged, Temporary and RetryAfter), *TokenError
//     for Microsoft Entra answers (with a Fix a user can act on),
//     ErrInvalidKey, ErrInvalidRequest and ErrForeignNextLink for requests
//     it refuses to send; and Classify, the one mapping of every error to a
//     Class (transient, throttled, auth, permission, not found, permanent);
//   - NewTokenSource, the client-credentials token source for Entra that
//     refreshes tokens a little before they expire.
//
// It must never:
//   - log: it returns errors and lets the caller decide;
//   - put a client secret, a clientState or an access token in an error, or
//     print a secret through Credentials', Subscription's or
//     SubscriptionRequest's fmt verbs;
//   - send the bearer token to any host but Config.APIURL's (foreign
//     @odata.nextLink values and redirects are refused);
//   - paste caller text into a URL or an OData literal unvalidated or
//     unescaped, or page with $top/$skip;
//   - send a write twice unless BC certainly did not process the first
//     (see RetryPolicy), or retry beyond RetryPolicy.MaxElapsed: longer
//     waits are the caller's (the worker's queue) to schedule.
//
// It knows nothing of NATS: the fleet-wide request budget and the shared token
// cache come in through the Limiter (and ThrottleObserver) and
// oauth2.TokenSource (and TokenInvalidator) interfaces.
//
// bcclient/bctest is a strict fake of BC and the Entra token endpoint for
// tests, demos and benchmarks.
//
// The decoders are fuzzed; run each target for 30 s with e.g.
//
//	go test ./bcclient/ -run '^$' -fuzz '^FuzzDecodePage$' -fuzztime 30s
//
// (and FuzzDecodeAPIError, FuzzDecodeSubscription); plain go test runs their
// seed corpora in testdata/fuzz.
package bcclient
