package ipaasclient

import "strings"

// This file is the one place that knows iPaaS.com's paths and external id
// tables (see /work/shared/docs/ipaas.md). iPaaS.com publishes no OpenAPI
// document: endpoints marked inferred follow the published read paths by
// analogy, so that a verified correction is a one-line change here.
//
// A URL is {Config.BaseURL}{base}/v2/{endpoint}, with "{id}" in an endpoint
// replaced by the iPaaS.com record id.

// endpoint is one path after "{base}/v2/".
type endpoint struct {
	// template holds "{id}" where the record id goes.
	template string
	// inferred: not published by iPaaS.com, deduced from a published path.
	inferred bool
}

// kindPaths are the paths and the external id table of one Kind.
type kindPaths struct {
	// base is the API's base path: "/customers", "/products" or "/transactions".
	base string
	// table is the external id table_name of LookupSpecial and external_ids.
	table string
	// get reads one record, create posts a new one, update replaces one
	// (PUT). DELETE, which deactivates, uses the update path.
	get, create, update endpoint
}

// Endpoints shared by every Kind, under its base path.
const (
	// lookupEndpoint answers the iPaaS.com id linked to an external id.
	lookupEndpoint = "External/LookupSpecial"
)

const idPlaceholder = "{id}"

func published(t string) endpoint { return endpoint{template: t} }
func inferred(t string) endpoint  { return endpoint{template: t, inferred: true} }

// pathTable holds every path of every Kind.
var pathTable = map[Kind]kindPaths{
	KindCustomerCategory: {
		base: "/customers", table: "customer category",
		get:    published("Customer/Category/{id}"),
		create: inferred("Customer/Category"),
		update: inferred("Customer/Category/{id}"),
	},
	KindLocation: {
		base: "/products", table: "location",
		get:    published("Catalog/Location/{id}"),
		create: inferred("Catalog/Location"),
		update: inferred("Catalog/Location/{id}"),
	},
	KindShippingMethod: {
		base: "/transactions", table: "shipping method",
		// Published is only the list, GET v2/ShippingMethods?...; the
		// single-record read is inferred from the update path.
		get:    inferred("ShippingMethod/{id}"),
		create: inferred("ShippingMethod"),
		update: inferred("ShippingMethod/{id}"),
	},
	KindCustomer: {
		base: "/customers", table: "customer",
		get:    published("Customer/{id}"),
		create: inferred("Customer"),
		update: inferred("Customer/{id}"),
	},
	KindProduct: {
		base: "/products", table: "product",
		get:    published("Catalog/Product/{id}"),
		create: inferred("Catalog/Product"),
		update: inferred("Catalog/Product/{id}"),
	},
}

// delete is the path of DELETE, which deactivates a record: the update path.
func (p kindPaths) delete() endpoint { return p.update }

// path is {base}/v2/{endpoint} with id in place of "{id}". id must already
// be a safe path segment (see validID).
func (p kindPaths) path(e endpoint, id string) string {
	return p.base + "/v2/" + strings.ReplaceAll(e.template, idPlaceholder, id)
}

// TableName is the external id table_name of k at iPaaS.com ("customer
// category", "location", "shipping method", "customer", "product"), or ""
// for a Kind bcsync does not write.
func (k Kind) TableName() string { return pathTable[k].table }
