package mapping

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/ipaasclient"
)

// MaxKeyLen is the longest key accepted: BC's longest Code field (customer
// numbers are Code[20]; location, shipment method and price group codes are
// Code[10] in BC, so 20 leaves room and rejects only what BC cannot hold).
const MaxKeyLen = 20

// Customer types of BC's customers entity.
const (
	CustomerTypeCompany = "Company"
	CustomerTypePerson  = "Person"
)

// Error is a record that cannot be mapped. It is permanent: the same record
// will never map.
type Error struct {
	// Kind is the iPaaS.com data type being produced.
	Kind ipaasclient.Kind
	// Field is the BC field at fault, by its JSON name (e.g. "code").
	Field string
	// Problem says what is wrong with it.
	Problem string
}

// Error implements error: "mapping: location: code: missing".
func (e *Error) Error() string {
	return fmt.Sprintf("mapping: %s: %s: %s", e.Kind, e.Field, e.Problem)
}

// Permanent reports true: retrying cannot map the record.
func (e *Error) Permanent() bool { return true }

// key trims a BC key and checks it is present and not longer than BC
// allows.
func key(kind ipaasclient.Kind, field, v string) (string, error) {
	v = strings.TrimSpace(v)
	switch n := utf8.RuneCountInString(v); {
	case n == 0:
		return "", &Error{Kind: kind, Field: field, Problem: "missing"}
	case n > MaxKeyLen:
		return "", &Error{Kind: kind, Field: field, Problem: fmt.Sprintf("%d characters, longer than BC's %d", n, MaxKeyLen)}
	}
	return v, nil
}

// LocationExternalID returns the BC key of a location: its code.
func LocationExternalID(l bcclient.Location) string { return strings.TrimSpace(l.Code) }

// ShippingMethodExternalID returns the BC key of a shipment method: its
// code.
func ShippingMethodExternalID(m bcclient.ShipmentMethod) string { return strings.TrimSpace(m.Code) }

// CustomerCategoryExternalID returns the BC key of a customer price group:
// its code.
func CustomerCategoryExternalID(g bcclient.CustomerPriceGroup) string {
	return strings.TrimSpace(g.Code)
}

// CustomerExternalID returns the BC key of a customer: its number.
func CustomerExternalID(c bcclient.Customer) string { return strings.TrimSpace(c.Number) }

// ProductExternalID returns the BC key of an item: its number.
func ProductExternalID(i bcclient.Item) string { return strings.TrimSpace(i.Number) }

// Product maps a BC item to an iPaaS.com product: sku <- number, name <-
// displayName, type <- type (BC's "Inventory", "Service" or
// "Non-Inventory", as BC names it), default_price <- unitPrice, and status
// inactive for a blocked item, else active. It returns an *Error when the
// number is missing or too long.
func Product(i bcclient.Item) (ipaasclient.Product, error) {
	number, err := key(ipaasclient.KindProduct, "number", i.Number)
	if err != nil {
		return ipaasclient.Product{}, err
	}
	status := ipaasclient.ProductStatusActive
	if i.Blocked {
		status = ipaasclient.ProductStatusInactive
	}
	return ipaasclient.Product{
		SKU: number, Name: strings.TrimSpace(i.DisplayName), Type: strings.TrimSpace(i.Type),
		DefaultPrice: i.UnitPrice, Status: status,
	}, nil
}

// Location maps a BC location to an iPaaS.com location: name <- code,
// description <- displayName, address1/address2 <- addressLine1/2, city,
// region <- state, country, postal_code <- postalCode, phone <- phoneNumber,
// email. It returns an *Error when the code is missing or too long.
func Location(l bcclient.Location) (ipaasclient.Location, error) {
	code, err := key(ipaasclient.KindLocation, "code", l.Code)
	if err != nil {
		return ipaasclient.Location{}, err
	}
	return ipaasclient.Location{
		Name:        code,
		Description: strings.TrimSpace(l.DisplayName),
		Address1:    strings.TrimSpace(l.AddressLine1),
		Address2:    strings.TrimSpace(l.AddressLine2),
		City:        strings.TrimSpace(l.City),
		Region:      strings.TrimSpace(l.State),
		Country:     strings.TrimSpace(l.Country),
		PostalCode:  strings.TrimSpace(l.PostalCode),
		Phone:       strings.TrimSpace(l.PhoneNumber),
		Email:       strings.TrimSpace(l.Email),
	}, nil
}

// ShippingMethod maps a BC shipment method to an iPaaS.com shipping
// method: name <- code (iPaaS.com names are case-sensitive, so the case is
// kept), description <- displayName. It returns an *Error when the code is
// missing or too long.
func ShippingMethod(m bcclient.ShipmentMethod) (ipaasclient.ShippingMethod, error) {
	code, err := key(ipaasclient.KindShippingMethod, "code", m.Code)
	if err != nil {
		return ipaasclient.ShippingMethod{}, err
	}
	return ipaasclient.ShippingMethod{Name: code, Description: strings.TrimSpace(m.DisplayName)}, nil
}

// CustomerCategory maps a BC customer price group to an iPaaS.com customer
// category: name <- Code, description <- Description. It returns an *Error
// when the code is missing or too long.
func CustomerCategory(g bcclient.CustomerPriceGroup) (ipaasclient.CustomerCategory, error) {
	code, err := key(ipaasclient.KindCustomerCategory, "Code", g.Code)
	if err != nil {
		return ipaasclient.CustomerCategory{}, err
	}
	return ipaasclient.CustomerCategory{Name: code, Description: strings.TrimSpace(g.Description)}, nil
}

// Customer maps a BC customer to an iPaaS.com customer: customer_number <-
// number, email_address <- email, comment left empty (not sent, so the one
// written at iPaaS.com stays), and the name by type:
//
//   - Person: displayName is split at its last space: the last word is
//     last_name, the words before it first_name ("Mary Ann Smith" gives
//     "Mary Ann" and "Smith"); a single word is last_name only. Runs of
//     spaces collapse to one.
//   - Company: company and last_name both <- displayName (iPaaS.com needs a
//     first or last name).
//   - any other or empty type is treated as Company: BC's default type, and
//     the mapping that keeps the name whole.
//
// It returns an *Error when the number is missing or too long, or when
// displayName is empty, since iPaaS.com requires a first or last name.
func Customer(c bcclient.Customer) (ipaasclient.Customer, error) {
	number, err := key(ipaasclient.KindCustomer, "number", c.Number)
	if err != nil {
		return ipaasclient.Customer{}, err
	}
	name := strings.TrimSpace(c.DisplayName)
	if name == "" {
		return ipaasclient.Customer{}, &Error{Kind: ipaasclient.KindCustomer, Field: "displayName",
			Problem: "missing, so neither first nor last name can be set"}
	}
	out := ipaasclient.Customer{
		CustomerNumber: number,
		EmailAddress:   strings.TrimSpace(c.Email),
	}
	if strings.EqualFold(strings.TrimSpace(c.Type), CustomerTypePerson) {
		out.FirstName, out.LastName = splitPersonName(name)
	} else {
		out.Company = name
		out.LastName = name
	}
	return out, nil
}

// splitPersonName splits a person's name at its last space.
func splitPersonName(name string) (first, last string) {
	words := strings.Fields(name)
	last = words[len(words)-1]
	first = strings.Join(words[:len(words)-1], " ")
	return first, last
}
