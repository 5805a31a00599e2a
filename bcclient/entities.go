package bcclient

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// entity describes an API v2.0 entity set.
type entity struct {
	set      string // entity set in the URL, e.g. "locations"
	keyField string // the field a non-GUID key is matched against
	noun     string // for error messages
	expand   string // navigation property read with every row ($expand)
}

// The entity sets the client reads.
var (
	customers       = entity{set: "customers", keyField: "number", noun: "customer"}
	items           = entity{set: "items", keyField: "number", noun: "item"}
	locations       = entity{set: "locations", keyField: "code", noun: "location"}
	shipmentMethods = entity{set: "shipmentMethods", keyField: "code", noun: "shipment method"}
	salesOrders     = entity{set: "salesOrders", keyField: "number", noun: "sales order", expand: "salesOrderLines"}
)

// Each entity set has GetX, ListX and DeltaX: thin typed wrappers of get
// and listEntity, documented in full on the Location ones.

// GetCustomer returns the customer whose id (a GUID) or number is key.
// Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetCustomer(ctx context.Context, key string) (Customer, error) {
	return get[Customer](ctx, c, customers, key)
}

// ListCustomers calls fn once per page of customers, like ListLocations.
func (c *Client) ListCustomers(ctx context.Context, fn func([]Customer) error, opts ...ListOption) error {
	return listEntity(ctx, c, customers, time.Time{}, fn, opts...)
}

// DeltaCustomers calls fn once per page of the customers modified after
// since, like DeltaLocations.
func (c *Client) DeltaCustomers(ctx context.Context, since time.Time, fn func([]Customer) error, opts ...ListOption) error {
	return listEntity(ctx, c, customers, since, fn, opts...)
}

// GetCustomers returns the customers whose number is one of numbers, by
// number, read in one request like GetLocations.
func (c *Client) GetCustomers(ctx context.Context, numbers []string) (map[string]Customer, error) {
	return getByKeys(ctx, c, customers, numbers, func(r *Customer) string { return r.Number })
}

// GetItem returns the item whose id (a GUID) or number is key.
// Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetItem(ctx context.Context, key string) (Item, error) {
	return get[Item](ctx, c, items, key)
}

// GetItems returns the items whose number is one of numbers, by number,
// read in one request like GetLocations.
func (c *Client) GetItems(ctx context.Context, numbers []string) (map[string]Item, error) {
	return getByKeys(ctx, c, items, numbers, func(r *Item) string { return r.Number })
}

// ListItems calls fn once per page of items, like ListLocations.
func (c *Client) ListItems(ctx context.Context, fn func([]Item) error, opts ...ListOption) error {
	return listEntity(ctx, c, items, time.Time{}, fn, opts...)
}

// DeltaItems calls fn once per page of the items modified after since, like
// DeltaLocations.
func (c *Client) DeltaItems(ctx context.Context, since time.Time, fn func([]Item) error, opts ...ListOption) error {
	return listEntity(ctx, c, items, since, fn, opts...)
}

// GetLocation returns the location whose id (a GUID) or code is key.
// Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetLocation(ctx context.Context, key string) (Location, error) {
	return get[Location](ctx, c, locations, key)
}

// GetLocations returns the locations whose code is one of codes, by code,
// in one request: "$filter=code eq 'A' or code eq 'B' ...", paged as
// ListLocations (a second request only if Config.PageSize is below the
// number of codes, or if the codes make a filter longer than web front
// ends take: about 1.8 KB escaped, some 50 codes of 7 characters). Codes
// are deduplicated; each must be one GetLocation accepts and not a GUID
// (read those with GetLocation), and at most
// MaxBatchKeys distinct codes are taken. A code that matches no row is
// absent from the map: Lookup turns that absence into the ErrNotFound that
// GetLocation returns. The map is keyed by the codes asked for; codes
// compare as BC compares them (a row BC returns is filed under the code
// asked that equals its code, else under those equal to it ignoring case).
//
// Errors: ErrInvalidKey (nothing sent), ErrInvalidRequest (more than
// MaxBatchKeys codes, nothing sent), *APIError, *TokenError, as GetLocation.
func (c *Client) GetLocations(ctx context.Context, codes []string) (map[string]Location, error) {
	return getByKeys(ctx, c, locations, codes, func(r *Location) string { return r.Code })
}

// ListLocations calls fn once per page of locations, in BC's order, until
// the last page or until fn returns an error, which ListLocations returns.
// A page may be empty.
func (c *Client) ListLocations(ctx context.Context, fn func([]Location) error, opts ...ListOption) error {
	return listEntity(ctx, c, locations, time.Time{}, fn, opts...)
}

// DeltaLocations is ListLocations for the locations whose
// lastModifiedDateTime is after since: it sends
// "$filter=lastModifiedDateTime gt 2026-01-02T03:04:05.678Z" (UTC, truncated
// to the millisecond so that no row is missed; a row modified in the same
// millisecond as since may come again). Deletions are invisible to it. A
// zero since lists every row. Locations are not webhook-enabled: poll them
// with it.
func (c *Client) DeltaLocations(ctx context.Context, since time.Time, fn func([]Location) error, opts ...ListOption) error {
	return listEntity(ctx, c, locations, since, fn, opts...)
}

// GetShipmentMethod returns the shipment method whose id (a GUID) or code is
// key. Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetShipmentMethod(ctx context.Context, key string) (ShipmentMethod, error) {
	return get[ShipmentMethod](ctx, c, shipmentMethods, key)
}

// GetShipmentMethods returns the shipment methods whose code is one of
// codes, by code, read in one request like GetLocations.
func (c *Client) GetShipmentMethods(ctx context.Context, codes []string) (map[string]ShipmentMethod, error) {
	return getByKeys(ctx, c, shipmentMethods, codes, func(r *ShipmentMethod) string { return r.Code })
}

// ListShipmentMethods calls fn once per page of shipment methods, like
// ListLocations.
func (c *Client) ListShipmentMethods(ctx context.Context, fn func([]ShipmentMethod) error, opts ...ListOption) error {
	return listEntity(ctx, c, shipmentMethods, time.Time{}, fn, opts...)
}

// DeltaShipmentMethods calls fn once per page of the shipment methods
// modified after since, like DeltaLocations.
func (c *Client) DeltaShipmentMethods(ctx context.Context, since time.Time, fn func([]ShipmentMethod) error, opts ...ListOption) error {
	return listEntity(ctx, c, shipmentMethods, since, fn, opts...)
}

// GetSalesOrder returns the sales order, with its lines, whose id (a GUID)
// or number is key. Errors: ErrInvalidKey, ErrNotFound, *APIError,
// *TokenError.
func (c *Client) GetSalesOrder(ctx context.Context, key string) (SalesOrder, error) {
	return get[SalesOrder](ctx, c, salesOrders, key)
}

// ListSalesOrders calls fn once per page of sales orders, each with its
// lines, like ListLocations.
func (c *Client) ListSalesOrders(ctx context.Context, fn func([]SalesOrder) error, opts ...ListOption) error {
	return listEntity(ctx, c, salesOrders, time.Time{}, fn, opts...)
}

// DeltaSalesOrders calls fn once per page of the sales orders modified
// after since, each with its lines, like DeltaLocations.
func (c *Client) DeltaSalesOrders(ctx context.Context, since time.Time, fn func([]SalesOrder) error, opts ...ListOption) error {
	return listEntity(ctx, c, salesOrders, since, fn, opts...)
}

// ListCompanies calls fn once per page of the environment's companies, like
// ListLocations.
func (c *Client) ListCompanies(ctx context.Context, fn func([]Company) error, opts ...ListOption) error {
	if err := list(ctx, c, c.root+"/api/v2.0/companies", fn, opts...); err != nil {
		return fmt.Errorf("bcclient: list companies: %w", err)
	}
	return nil
}

// GetCustomerPriceGroup returns the customer price group whose code is code,
// read through the OData V4 web service Config.PriceGroupService.
// Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetCustomerPriceGroup(ctx context.Context, code string) (CustomerPriceGroup, error) {
	if err := checkKey(code); err != nil {
		return CustomerPriceGroup{}, fmt.Errorf("bcclient: get customer price group %q: %w", code, err)
	}
	u := c.odataV4URL() + "(" + pathLiteral(code) + ")"
	g, err := getOne[CustomerPriceGroup](ctx, c, u)
	if err != nil {
		return g, fmt.Errorf("bcclient: get customer price group %q: %w", code, err)
	}
	return g, nil
}

// ListCustomerPriceGroups calls fn once per page of customer price groups
// read through the OData V4 web service Config.PriceGroupService, like
// ListLocations.
//
// There is no delta for price groups: the page BC publishes has only Code
// and Description (no lastModifiedDateTime), and price groups are not
// webhook-enabled, so a poller must list them all and compare.
func (c *Client) ListCustomerPriceGroups(ctx context.Context, fn func([]CustomerPriceGroup) error, opts ...ListOption) error {
	if err := list(ctx, c, c.odataV4URL(), fn, opts...); err != nil {
		return fmt.Errorf("bcclient: list customer price groups: %w", err)
	}
	return nil
}

// get reads one row of e by id or by its key field.
func get[T any](ctx context.Context, c *Client, e entity, key string) (T, error) {
	var zero T
	wrap := func(err error) error { return fmt.Errorf("bcclient: get %s %q: %w", e.noun, key, err) }
	if err := checkKey(key); err != nil {
		return zero, wrap(err)
	}
	base, err := c.entitySetURL(ctx, e)
	if err != nil {
		return zero, wrap(err)
	}
	var v T
	if IsGUID(key) {
		v, err = getOne[T](ctx, c, base+"("+key+")"+e.query(""))
	} else {
		v, err = getFiltered[T](ctx, c, base, eqFilter(e.keyField, key), e.expandQuery("&"))
	}
	if err != nil {
		return zero, wrap(err)
	}
	return v, nil
}

// MaxBatchKeys is the most distinct keys GetCustomers, GetLocations and
// GetShipmentMethods take in one call. Their comparisons, joined by "or",
// make a filter of about 35 bytes per 7-character key once escaped: 1.7 KB
// for 50 customer numbers such as C000001, one request.
const MaxBatchKeys = 50

// maxBatchFilter bounds the escaped $filter of one batched request. Web
// front ends refuse long query strings (IIS by default above 2,048 bytes,
// with a 404), so a call whose keys make a longer filter (long or escaped
// keys: 50 keys of 20 characters make 2.5 KB) is sent as several requests.
const maxBatchFilter = 1800

// Lookup returns the row of m, a map from GetCustomers, GetLocations or
// GetShipmentMethods, whose key is key; a key absent from m (no such row in
// BC) is an error matching ErrNotFound (Classify: ClassNotFound), as the
// single get returns for it.
func Lookup[T any](m map[string]T, key string) (T, error) {
	if v, ok := m[key]; ok {
		return v, nil
	}
	var zero T
	return zero, fmt.Errorf("bcclient: no row with key %q: %w", key, ErrNotFound)
}

// getByKeys reads the rows of e whose key field is one of keys with one
// filter, "<keyField> eq 'a' or <keyField> eq 'b' ...", following next
// links, and returns them by the key asked for. keyOf reads a row's key.
func getByKeys[T any](ctx context.Context, c *Client, e entity, keys []string, keyOf func(*T) string) (map[string]T, error) {
	wrap := func(err error) error { return fmt.Errorf("bcclient: get %s by %s: %w", e.set, e.keyField, err) }
	keys, err := batchKeys(keys)
	if err != nil {
		return nil, wrap(err)
	}
	rows := make(map[string]T, len(keys))
	if len(keys) == 0 {
		return rows, nil
	}
	base, err := c.entitySetURL(ctx, e)
	for _, filter := range batchFilters(e.keyField, keys) {
		if err != nil {
			break
		}
		err = list(ctx, c, base+e.query(filter), func(page []T) error {
			for i := range page {
				got := keyOf(&page[i])
				asked := askedFor(keys, got)
				if len(asked) == 0 {
					return badResponse("BC returned %s %s %q, which was not asked for", e.noun, e.keyField, got)
				}
				for _, k := range asked {
					if _, dup := rows[k]; dup {
						return badResponse("more than one %s with %s %q", e.noun, e.keyField, k)
					}
					rows[k] = page[i]
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, wrap(err)
	}
	return rows, nil
}

// batchFilters joins the comparisons "<field> eq '<key>'" of keys with "or"
// into as few filters as keep each within maxBatchFilter bytes once
// escaped (a single key's comparison always makes one).
func batchFilters(field string, keys []string) []string {
	sep := len(queryEscape(" or "))
	var out []string
	var terms []string
	size := 0
	for _, k := range keys {
		term := eqFilter(field, k)
		n := len(queryEscape(term))
		if len(terms) > 0 && size+sep+n > maxBatchFilter {
			out = append(out, strings.Join(terms, " or "))
			terms, size = terms[:0], 0
		}
		if len(terms) > 0 {
			size += sep
		}
		terms, size = append(terms, term), size+n
	}
	if len(terms) > 0 {
		out = append(out, strings.Join(terms, " or "))
	}
	return out
}

// batchKeys checks the keys of a batch read and returns them without
// duplicates, in order.
func batchKeys(keys []string) ([]string, error) {
	out := make([]string, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		if IsGUID(k) {
			return nil, fmt.Errorf("key %q: %w: a GUID; read a record by id with the single get", k, ErrInvalidKey)
		}
		out = append(out, k)
	}
	if len(out) > MaxBatchKeys {
		return nil, fmt.Errorf("%w: %d distinct keys, at most %d per call", ErrInvalidRequest, len(out), MaxBatchKeys)
	}
	return out, nil
}

// askedFor returns the keys asked for that a row whose key is got answers:
// got itself if asked, else the keys equal to got ignoring case (BC
// matched the row, so it compares them equal).
func askedFor(keys []string, got string) []string {
	if slices.Contains(keys, got) {
		return []string{got}
	}
	var asked []string
	for _, k := range keys {
		if strings.EqualFold(k, got) {
			asked = append(asked, k)
		}
	}
	return asked
}

// listEntity reads every row of e modified after since (every row when
// since is zero), one page at a time.
func listEntity[T any](ctx context.Context, c *Client, e entity, since time.Time, fn func([]T) error, opts ...ListOption) error {
	verb, filter := "list", ""
	if !since.IsZero() {
		verb, filter = "delta", modifiedSinceFilter(since)
	}
	base, err := c.entitySetURL(ctx, e)
	if err == nil {
		err = list(ctx, c, base+e.query(filter), fn, opts...)
	}
	if err != nil {
		return fmt.Errorf("bcclient: %s %s: %w", verb, e.set, err)
	}
	return nil
}

// query returns the query string, with its "?", of a request for e's rows
// with the OData filter expression filter (unescaped; "" for none).
func (e entity) query(filter string) string {
	if filter == "" {
		return e.expandQuery("?")
	}
	return "?$filter=" + queryEscape(filter) + e.expandQuery("&")
}

// expandQuery is sep + "$expand=..." when e reads a navigation property.
func (e entity) expandQuery(sep string) string {
	if e.expand == "" {
		return ""
	}
	return sep + "$expand=" + e.expand
}

// entitySetURL is {root}/api/v2.0/companies({id})/{set}.
func (c *Client) entitySetURL(ctx context.Context, e entity) (string, error) {
	id, err := c.companyID(ctx)
	if err != nil {
		return "", err
	}
	return c.root + "/api/v2.0/companies(" + id + ")/" + e.set, nil
}

// odataV4URL is {root}/ODataV4/Company('{name}')/{service}.
func (c *Client) odataV4URL() string {
	return c.root + "/ODataV4/Company(" + pathLiteral(c.cfg.CompanyName) + ")/" +
		pathSegment(c.cfg.PriceGroupService)
}
