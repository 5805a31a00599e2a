// Package mapping turns Business Central records into iPaaS.com records:
// one pure function per data type, taking a bcclient record and returning
// an ipaasclient record.
//
//	BC (bcclient)                  iPaaS.com (ipaasclient)   external id
//	Location                       Location                  location code
//	ShipmentMethod                 ShippingMethod            shipment method code
//	CustomerPriceGroup (OData V4)  CustomerCategory          price group code
//	Customer                       Customer                  customer number
//
// The external id is the BC key that links the two records at iPaaS.com
// (external_ids[].external_id); the *ExternalID functions return it, trimmed
// like the mapped fields.
//
// Every string is trimmed of surrounding white space. A record that cannot
// be mapped (a missing key or name, a key longer than BC allows) yields an
// *Error, which is permanent: retrying the same record cannot succeed, so
// the job belongs in the dead-letter queue.
//
// The package does no I/O and never logs.
package mapping
