package ipaasclient

// Record is a record bcsync writes to iPaaS.com. Its JSON form holds only the
// fields bcsync owns; an update merges them into the current record.
type Record interface {
	// Kind names the data type, which selects the paths and the external
	// id table (see the path table in paths.go).
	Kind() Kind
}

// Kind is an iPaaS.com data type bcsync writes.
type Kind string

// The data types bcsync writes.
const (
	KindCustomerCategory Kind = "customer_category"
	KindLocation         Kind = "location"
	KindShippingMethod   Kind = "shipping_method"
	KindCustomer         Kind = "customer"
	KindProduct          Kind = "product"
)

// CustomerCategory is an iPaaS.com customer category (from a BC customer price group).
type CustomerCategory struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Location is an iPaaS.com catalog location.
type Location struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Address1    string `json:"address1"`
	Address2    string `json:"address2"`
	City        string `json:"city"`
	Region      string `json:"region"`
	Country     string `json:"country"`
	PostalCode  string `json:"postal_code"`
	Phone       string `json:"phone"`
	Email       string `json:"email"`
}

// ShippingMethod is an iPaaS.com shipping method. Names are case-sensitive and unique.
type ShippingMethod struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Customer is an iPaaS.com customer. At least one of FirstName and LastName is required.
type Customer struct {
	CustomerNumber string `json:"customer_number"`
	FirstName      string `json:"first_name"`
	LastName       string `json:"last_name"`
	EmailAddress   string `json:"email_address"`
	Company        string `json:"company"`
	// Comment is left out when empty: BC has no comment for a customer, so
	// an update keeps the one written at iPaaS.com instead of clearing it.
	Comment string `json:"comment,omitempty"`
}

// Product is an iPaaS.com catalog product (from a BC item).
type Product struct {
	SKU  string `json:"sku"`
	Name string `json:"name"`
	// Type is the product type as iPaaS.com names it.
	Type string `json:"type"`
	// DefaultPrice is the unit price.
	DefaultPrice float64 `json:"default_price"`
	// Status is ProductStatusActive or ProductStatusInactive (a blocked BC
	// item).
	Status string `json:"status"`
}

// Values of Product.Status. ipaas.md documents only "blocked -> inactive";
// the literal values are inferred.
const (
	ProductStatusActive   = "active"
	ProductStatusInactive = "inactive"
)

// Kind implements Record.
func (CustomerCategory) Kind() Kind { return KindCustomerCategory }

// Kind implements Record.
func (Location) Kind() Kind { return KindLocation }

// Kind implements Record.
func (ShippingMethod) Kind() Kind { return KindShippingMethod }

// Kind implements Record.
func (Customer) Kind() Kind { return KindCustomer }

// Kind implements Record.
func (Product) Kind() Kind { return KindProduct }

var (
	_ Record = CustomerCategory{}
	_ Record = Location{}
	_ Record = ShippingMethod{}
	_ Record = Customer{}
	_ Record = Product{}
)
