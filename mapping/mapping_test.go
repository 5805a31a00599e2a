package mapping

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/ipaasclient"
)

func TestLocation(t *testing.T) {
	t.Parallel()
	full := bcclient.Location{
		ID: "0f1e2d3c-4b5a-4968-8776-655443322110", Code: " EAST ", DisplayName: " East Warehouse ",
		Contact: "Ann", AddressLine1: "1 Main St", AddressLine2: "Dock 4", City: "Atlanta", State: "GA",
		Country: "US", PostalCode: "30301", PhoneNumber: "+1 404 555 0100", Email: "east@example.com",
		Website: "https://example.com", LastModifiedDateTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ETag: `W/"1"`,
	}
	tests := []struct {
		name    string
		in      bcclient.Location
		want    ipaasclient.Location
		wantErr string // the *Error's Field
	}{
		{name: "every field", in: full, want: ipaasclient.Location{
			Name: "EAST", Description: "East Warehouse", Address1: "1 Main St", Address2: "Dock 4", City: "Atlanta",
			Region: "GA", Country: "US", PostalCode: "30301", Phone: "+1 404 555 0100", Email: "east@example.com",
		}},
		{name: "code only", in: bcclient.Location{Code: "MAIN"}, want: ipaasclient.Location{Name: "MAIN"}},
		{name: "code of 20", in: bcclient.Location{Code: strings.Repeat("W", 20)}, want: ipaasclient.Location{Name: strings.Repeat("W", 20)}},
		{name: "code missing", in: bcclient.Location{DisplayName: "East"}, wantErr: "code"},
		{name: "code blank", in: bcclient.Location{Code: "  "}, wantErr: "code"},
		{name: "code too long", in: bcclient.Location{Code: strings.Repeat("W", 21)}, wantErr: "code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Location(tt.in)
			checkErr(t, err, tt.wantErr, ipaasclient.KindLocation)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if got := LocationExternalID(full); got != "EAST" {
		t.Errorf("LocationExternalID = %q", got)
	}
}

func TestShippingMethod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      bcclient.ShipmentMethod
		want    ipaasclient.ShippingMethod
		wantErr string
	}{
		{name: "every field", in: bcclient.ShipmentMethod{ID: "x", Code: "CIF", DisplayName: " Cost Insurance Freight "},
			want: ipaasclient.ShippingMethod{Name: "CIF", Description: "Cost Insurance Freight"}},
		{name: "case kept", in: bcclient.ShipmentMethod{Code: "Pickup"}, want: ipaasclient.ShippingMethod{Name: "Pickup"}},
		{name: "code missing", in: bcclient.ShipmentMethod{DisplayName: "Pickup"}, wantErr: "code"},
		{name: "code too long", in: bcclient.ShipmentMethod{Code: strings.Repeat("é", 21)}, wantErr: "code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ShippingMethod(tt.in)
			checkErr(t, err, tt.wantErr, ipaasclient.KindShippingMethod)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if got := ShippingMethodExternalID(bcclient.ShipmentMethod{Code: " CIF"}); got != "CIF" {
		t.Errorf("ShippingMethodExternalID = %q", got)
	}
}

func TestCustomerCategory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      bcclient.CustomerPriceGroup
		want    ipaasclient.CustomerCategory
		wantErr string
	}{
		{name: "every field", in: bcclient.CustomerPriceGroup{Code: "RETAIL", Description: "Retail customers ", ETag: `W/"2"`},
			want: ipaasclient.CustomerCategory{Name: "RETAIL", Description: "Retail customers"}},
		{name: "code missing", in: bcclient.CustomerPriceGroup{Description: "Retail"}, wantErr: "Code"},
		{name: "code too long", in: bcclient.CustomerPriceGroup{Code: strings.Repeat("R", 21)}, wantErr: "Code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := CustomerCategory(tt.in)
			checkErr(t, err, tt.wantErr, ipaasclient.KindCustomerCategory)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if got := CustomerCategoryExternalID(bcclient.CustomerPriceGroup{Code: "RETAIL"}); got != "RETAIL" {
		t.Errorf("CustomerCategoryExternalID = %q", got)
	}
}

func TestCustomer(t *testing.T) {
	t.Parallel()
	company := bcclient.Customer{
		ID: "x", Number: " 10000 ", DisplayName: " Adatum  Corporation ", Type: "Company", AddressLine1: "Station Road 21",
		City: "Cambridge", Country: "GB", PhoneNumber: "0123", Email: " robert.townes@contoso.com ", Website: "w",
		SalespersonCode: "PS", BalanceDue: 1, CreditLimit: 2, TaxLiable: true, CurrencyCode: "GBP", Blocked: " ",
	}
	tests := []struct {
		name    string
		in      bcclient.Customer
		want    ipaasclient.Customer
		wantErr string
	}{
		{name: "company", in: company, want: ipaasclient.Customer{
			CustomerNumber: "10000", LastName: "Adatum  Corporation", Company: "Adatum  Corporation", EmailAddress: "robert.townes@contoso.com",
		}},
		{name: "person of three words", in: bcclient.Customer{Number: "C1", DisplayName: "Mary Ann Smith", Type: "Person", Email: "mary@example.com"},
			want: ipaasclient.Customer{CustomerNumber: "C1", FirstName: "Mary Ann", LastName: "Smith", EmailAddress: "mary@example.com"}},
		{name: "person of two words", in: bcclient.Customer{Number: "C2", DisplayName: "John Doe", Type: "Person"},
			want: ipaasclient.Customer{CustomerNumber: "C2", FirstName: "John", LastName: "Doe"}},
		{name: "person of one word", in: bcclient.Customer{Number: "C3", DisplayName: " Cher ", Type: "Person"},
			want: ipaasclient.Customer{CustomerNumber: "C3", LastName: "Cher"}},
		{name: "person with extra spaces", in: bcclient.Customer{Number: "C4", DisplayName: "  Mary   Ann \t Smith  ", Type: "Person"},
			want: ipaasclient.Customer{CustomerNumber: "C4", FirstName: "Mary Ann", LastName: "Smith"}},
		{name: "person type in other case", in: bcclient.Customer{Number: "C5", DisplayName: "Jo Lee", Type: " person"},
			want: ipaasclient.Customer{CustomerNumber: "C5", FirstName: "Jo", LastName: "Lee"}},
		{name: "empty type is a company", in: bcclient.Customer{Number: "C6", DisplayName: "Fabrikam Inc"},
			want: ipaasclient.Customer{CustomerNumber: "C6", LastName: "Fabrikam Inc", Company: "Fabrikam Inc"}},
		{name: "unknown type is a company", in: bcclient.Customer{Number: "C7", DisplayName: "Fabrikam Inc", Type: "Partner"},
			want: ipaasclient.Customer{CustomerNumber: "C7", LastName: "Fabrikam Inc", Company: "Fabrikam Inc"}},
		{name: "number missing", in: bcclient.Customer{DisplayName: "Fabrikam"}, wantErr: "number"},
		{name: "number too long", in: bcclient.Customer{Number: strings.Repeat("9", 21), DisplayName: "Fabrikam"}, wantErr: "number"},
		{name: "company name missing", in: bcclient.Customer{Number: "C8", Type: "Company"}, wantErr: "displayName"},
		{name: "person name blank", in: bcclient.Customer{Number: "C9", DisplayName: " \t ", Type: "Person"}, wantErr: "displayName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Customer(tt.in)
			checkErr(t, err, tt.wantErr, ipaasclient.KindCustomer)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if err == nil && got.FirstName == "" && got.LastName == "" {
				t.Error("neither first nor last name set")
			}
			if got.Comment != "" {
				t.Errorf("comment %q", got.Comment)
			}
		})
	}
	if got := CustomerExternalID(company); got != "10000" {
		t.Errorf("CustomerExternalID = %q", got)
	}
}

func TestMaryAnnSmith(t *testing.T) {
	t.Parallel()
	got, err := Customer(bcclient.Customer{Number: "10000", DisplayName: "Mary Ann Smith", Type: "Person"})
	if err != nil {
		t.Fatal(err)
	}
	if got.FirstName != "Mary Ann" || got.LastName != "Smith" || got.Company != "" {
		t.Errorf("got first %q last %q company %q", got.FirstName, got.LastName, got.Company)
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	_, err := Location(bcclient.Location{})
	if got, want := err.Error(), "mapping: location: code: missing"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var p interface{ Permanent() bool }
	if !errors.As(err, &p) || !p.Permanent() {
		t.Error("not permanent")
	}
}

// checkErr checks err against the expected *Error field ("" for none).
func checkErr(t *testing.T, err error, field string, kind ipaasclient.Kind) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("want a *Error on %s, got %T %v", field, err, err)
	}
	if me.Field != field || me.Kind != kind || me.Problem == "" {
		t.Errorf("got %+v, want field %q kind %q", me, field, kind)
	}
}

// FuzzCustomer checks that Customer never panics and that a mapped customer
// always has a last name.
func FuzzCustomer(f *testing.F) {
	f.Add("10000", "Mary Ann Smith", "Person")
	f.Add("1", " ", "Company")
	f.Add("\u00a0", "\u2003x\u2003", "Person")
	f.Fuzz(func(t *testing.T, number, name, typ string) {
		got, err := Customer(bcclient.Customer{Number: number, DisplayName: name, Type: typ})
		if err == nil && got.LastName == "" {
			t.Fatalf("no last name: %+v", got)
		}
	})
}

func TestProduct(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      bcclient.Item
		want    ipaasclient.Product
		wantErr string
	}{
		{name: "every field", in: bcclient.Item{ID: "5d115c9c-44e3-ea11-bb43-000d3a2feca1", Number: " 1000 ", DisplayName: " Bicycle ", Type: "Inventory", UnitPrice: 4000.5},
			want: ipaasclient.Product{SKU: "1000", Name: "Bicycle", Type: "Inventory", DefaultPrice: 4000.5, Status: ipaasclient.ProductStatusActive}},
		{name: "blocked", in: bcclient.Item{Number: "1001", Type: "Service", Blocked: true},
			want: ipaasclient.Product{SKU: "1001", Type: "Service", Status: ipaasclient.ProductStatusInactive}},
		{name: "number missing", in: bcclient.Item{DisplayName: "Bicycle"}, wantErr: "number"},
		{name: "number too long", in: bcclient.Item{Number: strings.Repeat("9", 21)}, wantErr: "number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Product(tt.in)
			checkErr(t, err, tt.wantErr, ipaasclient.KindProduct)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if got := ProductExternalID(bcclient.Item{Number: " 1000 "}); got != "1000" {
		t.Errorf("ProductExternalID = %q", got)
	}
}
