package bcclient

import (
	"context"
	"fmt"
)

// entity describes an API v2.0 entity set.
type entity struct {
	set      string // entity set in the URL, e.g. "locations"
	keyField string // the field a non-GUID key is matched against
	noun     string // for error messages
}

var (
	locations       = entity{set: "locations", keyField: "code", noun: "location"}
	shipmentMethods = entity{set: "shipmentMethods", keyField: "code", noun: "shipment method"}
	customers       = entity{set: "customers", keyField: "number", noun: "customer"}
)

// GetLocation returns the location whose id (a GUID) or code is key.
// Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetLocation(ctx context.Context, key string) (Location, error) {
	return get[Location](ctx, c, locations, key)
}

// GetShipmentMethod returns the shipment method whose id (a GUID) or code is
// key. Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetShipmentMethod(ctx context.Context, key string) (ShipmentMethod, error) {
	return get[ShipmentMethod](ctx, c, shipmentMethods, key)
}

// GetCustomer returns the customer whose id (a GUID) or number is key.
// Errors: ErrInvalidKey, ErrNotFound, *APIError, *TokenError.
func (c *Client) GetCustomer(ctx context.Context, key string) (Customer, error) {
	return get[Customer](ctx, c, customers, key)
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

// ListLocations calls fn once per page of locations, in BC's order, until
// the last page or until fn returns an error, which ListLocations returns.
// A page may be empty.
func (c *Client) ListLocations(ctx context.Context, fn func([]Location) error) error {
	return listEntity(ctx, c, locations, fn)
}

// ListShipmentMethods calls fn once per page of shipment methods, like
// ListLocations.
func (c *Client) ListShipmentMethods(ctx context.Context, fn func([]ShipmentMethod) error) error {
	return listEntity(ctx, c, shipmentMethods, fn)
}

// ListCustomers calls fn once per page of customers, like ListLocations.
func (c *Client) ListCustomers(ctx context.Context, fn func([]Customer) error) error {
	return listEntity(ctx, c, customers, fn)
}

// ListCustomerPriceGroups calls fn once per page of customer price groups
// read through the OData V4 web service Config.PriceGroupService, like
// ListLocations.
func (c *Client) ListCustomerPriceGroups(ctx context.Context, fn func([]CustomerPriceGroup) error) error {
	if err := list(ctx, c, c.odataV4URL(), fn); err != nil {
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
		v, err = getOne[T](ctx, c, base+"("+key+")")
	} else {
		v, err = getFiltered[T](ctx, c, base, e.keyField, key)
	}
	if err != nil {
		return zero, wrap(err)
	}
	return v, nil
}

// listEntity reads every row of e, one page at a time.
func listEntity[T any](ctx context.Context, c *Client, e entity, fn func([]T) error) error {
	base, err := c.entitySetURL(ctx, e)
	if err == nil {
		err = list(ctx, c, base, fn)
	}
	if err != nil {
		return fmt.Errorf("bcclient: list %s: %w", e.set, err)
	}
	return nil
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
