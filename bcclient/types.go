package bcclient

import "time"

// Record fields common to every API v2.0 row.

// Location is a row of the API v2.0 entity set "locations". Locations are not
// webhook-enabled in BC: they are polled.
type Location struct {
	ID                   string    `json:"id"`
	Code                 string    `json:"code"`
	DisplayName          string    `json:"displayName"`
	Contact              string    `json:"contact"`
	AddressLine1         string    `json:"addressLine1"`
	AddressLine2         string    `json:"addressLine2"`
	City                 string    `json:"city"`
	State                string    `json:"state"`
	Country              string    `json:"country"`
	PostalCode           string    `json:"postalCode"`
	PhoneNumber          string    `json:"phoneNumber"`
	Email                string    `json:"email"`
	Website              string    `json:"website"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	ETag                 string    `json:"@odata.etag,omitempty"`
}

// ShipmentMethod is a row of the API v2.0 entity set "shipmentMethods".
type ShipmentMethod struct {
	ID                   string    `json:"id"`
	Code                 string    `json:"code"`
	DisplayName          string    `json:"displayName"`
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	ETag                 string    `json:"@odata.etag,omitempty"`
}

// Customer is a row of the API v2.0 entity set "customers".
type Customer struct {
	ID                   string    `json:"id"`
	Number               string    `json:"number"`
	DisplayName          string    `json:"displayName"`
	Type                 string    `json:"type"` // "Company" or "Person"
	AddressLine1         string    `json:"addressLine1"`
	AddressLine2         string    `json:"addressLine2"`
	City                 string    `json:"city"`
	State                string    `json:"state"`
	Country              string    `json:"country"`
	PostalCode           string    `json:"postalCode"`
	PhoneNumber          string    `json:"phoneNumber"`
	Email                string    `json:"email"`
	Website              string    `json:"website"`
	SalespersonCode      string    `json:"salespersonCode"`
	BalanceDue           float64   `json:"balanceDue"`
	CreditLimit          float64   `json:"creditLimit"`
	TaxLiable            bool      `json:"taxLiable"`
	CurrencyCode         string    `json:"currencyCode"`
	PaymentTermsID       string    `json:"paymentTermsId"`
	ShipmentMethodID     string    `json:"shipmentMethodId"`
	Blocked              string    `json:"blocked"` // " ", "Ship", "Invoice" or "All"
	LastModifiedDateTime time.Time `json:"lastModifiedDateTime"`
	ETag                 string    `json:"@odata.etag,omitempty"`
}

// CustomerPriceGroup is a row of the customer's published OData V4 web service
// for Customer Price Groups (commonly "CustomerPriceGroups"). API v2.0 has no
// customer category entity; a price group stands for one.
type CustomerPriceGroup struct {
	Code        string `json:"Code"`
	Description string `json:"Description"`
	ETag        string `json:"@odata.etag,omitempty"`
}

// Company is a row of "companies".
type Company struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}
