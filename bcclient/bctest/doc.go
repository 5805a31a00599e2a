// Package bctest is a strict fake of Business Central online and of the
// Microsoft Entra token endpoint, for tests, demos, benchmarks and the
// standalone simulator.
//
// One host serves both:
//
//	POST /{tenant}/oauth2/v2.0/token                               Entra, client credentials
//	GET  /v2.0/{tenant}/{env}/api/v2.0/companies[(id)]             BC API v2.0
//	GET  /v2.0/{tenant}/{env}/api/v2.0/companies({id})/{set}[(id)] locations, shipmentMethods, customers
//	GET  /v2.0/{tenant}/{env}/ODataV4/Company('{name}')/{service}[('{code}')]
//
// It is as strict as the real services, and stricter where a client could
// get something wrong unnoticed: tokens must be requested with the form body
// Entra expects and are checked on every API call; $top and $skip are
// refused, so clients must follow @odata.nextLink; a $filter must be exactly
// "<key field> eq '<literal>'" with quotes doubled; record keys must be
// GUIDs. Failures have the real services' JSON shapes, with literal field
// names (this package does not import bcclient, so a wrong JSON tag in the
// client is caught).
//
// The data set is generated from Options.Seed: the same seed gives the same
// records, ids and timestamps. The Server can be told to fail, slow down,
// expire tokens and change records, and it counts what it serves.
//
// bctest must never import bcclient (its JSON is written with the literal
// field names of the real services), never relax a check to make a client
// pass, and never serve production traffic: its credentials are fixed test
// values and its tokens are kept in memory.
package bctest
