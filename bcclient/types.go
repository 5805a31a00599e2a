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

// Item is a row of the API v2.0 entity set "items".
type Item struct {
	ID                    string    `json:"id"`
	Number                string    `json:"number"`
	DisplayName           string    `json:"displayName"`
	Type                  string    `json:"type"` // "Inventory", "Service" or "Non-Inventory"
	ItemCategoryCode      string    `json:"itemCategoryCode"`
	Blocked               bool      `json:"blocked"`
	GTIN                  string    `json:"gtin"`
	Inventory             float64   `json:"inventory"`
	UnitPrice             float64   `json:"unitPrice"`
	UnitCost              float64   `json:"unitCost"`
	BaseUnitOfMeasureCode string    `json:"baseUnitOfMeasureCode"`
	LastModifiedDateTime  time.Time `json:"lastModifiedDateTime"`
	ETag                  string    `json:"@odata.etag,omitempty"`
}

// SalesOrder is a row of the API v2.0 entity set "salesOrders", read with
// its lines ($expand=salesOrderLines).
type SalesOrder struct {
	ID                      string    `json:"id"`
	Number                  string    `json:"number"`
	ExternalDocumentNumber  string    `json:"externalDocumentNumber"`
	OrderDate               string    `json:"orderDate"` // a date, "2006-01-02"
	CustomerID              string    `json:"customerId"`
	CustomerNumber          string    `json:"customerNumber"`
	CustomerName            string    `json:"customerName"`
	ShipToName              string    `json:"shipToName"`
	ShipToAddressLine1      string    `json:"shipToAddressLine1"`
	ShipToCity              string    `json:"shipToCity"`
	ShipToState             string    `json:"shipToState"`
	ShipToCountry           string    `json:"shipToCountry"`
	ShipToPostCode          string    `json:"shipToPostCode"`
	BillToName              string    `json:"billToName"`
	CurrencyCode            string    `json:"currencyCode"`
	Status                  string    `json:"status"` // e.g. "Draft", "Open", "Released"
	TotalAmountIncludingTax float64   `json:"totalAmountIncludingTax"`
	LastModifiedDateTime    time.Time `json:"lastModifiedDateTime"`
	ETag                    string    `json:"@odata.etag,omitempty"`
	// SalesOrderLines are the order's lines, in BC's order.
	SalesOrderLines []SalesOrderLine `json:"salesOrderLines,omitempty"`
}

// SalesOrderLine is a row of "salesOrderLines", read as part of its
// SalesOrder.
type SalesOrderLine struct {
	ID                 string  `json:"id"`
	DocumentID         string  `json:"documentId"` // the SalesOrder's id
	Sequence           int     `json:"sequence"`
	ItemID             string  `json:"itemId"`
	LineObjectNumber   string  `json:"lineObjectNumber"` // the item (or account) number
	Description        string  `json:"description"`
	Quantity           float64 `json:"quantity"`
	UnitPrice          float64 `json:"unitPrice"`
	AmountIncludingTax float64 `json:"amountIncludingTax"`
}
