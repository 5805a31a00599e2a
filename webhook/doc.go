// Package webhook owns Business Central's webhooks on bcsync's side: the
// HTTP Receiver that answers BC's validation handshake and turns
// notifications into sync jobs on JetStream, the parser of BC's
// notification JSON, and the Manager that keeps BC's webhook subscriptions
// of every subscription in place (created, renewed before they expire,
// recreated when BC dropped them).
//
// A notification becomes jobs only when every item carries the
// subscription's clientState (compared in constant time), and it is
// acknowledged (202) only after JetStream stored every job: when JetStream
// cannot take them the Receiver answers 503, which BC retries for up to 36
// hours. Job ids derive from the notification, so a notification BC
// delivers again is deduplicated by JetStream within the stream's duplicate
// window.
//
// It must never:
//   - answer 4xx to a genuine notification it could handle (any 4xx but 408
//     and 429 makes BC delete the subscription);
//   - answer 2xx before JetStream acknowledged the jobs;
//   - log, print or answer a clientState or a validation token;
//   - enqueue anything from a batch in which one item fails the clientState
//     check or cannot be parsed.
//
// FuzzParseNotification fuzzes the parser; plain go test replays its seed
// corpus in testdata/fuzz.
package webhook
