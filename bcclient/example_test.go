package bcclient_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/bcclient/bctest"
)

// A client for one company, with a token source for the app registration,
// here against the bctest fake.
func Example() {
	fake := bctest.NewServer(bctest.Options{})
	defer fake.Close()
	ctx := context.Background()

	ts := bcclient.NewTokenSource(ctx, bcclient.Credentials{
		AuthorityURL: fake.URL(), // default https://login.microsoftonline.com
		TenantID:     fake.TenantID(),
		ClientID:     fake.ClientID(),
		ClientSecret: fake.ClientSecret(),
	})
	c, err := bcclient.New(bcclient.Config{
		APIURL:      fake.URL(), // default https://api.businesscentral.dynamics.com
		TenantID:    fake.TenantID(),
		Environment: "Production",
		CompanyName: "CRONUS USA, Inc.",
		TokenSource: ts,
		PageSize:    20,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	n, pages := 0, 0
	err = c.ListLocations(ctx, func(page []bcclient.Location) error {
		n, pages = n+len(page), pages+1
		return nil
	})
	fmt.Println(n, "locations in", pages, "pages", err)

	loc, err := c.GetLocation(ctx, "L0003")
	fmt.Println(loc.Code, err)

	_, err = c.GetLocation(ctx, "NOPE")
	fmt.Println(errors.Is(err, bcclient.ErrNotFound))
	// Output:
	// 50 locations in 3 pages <nil>
	// L0003 <nil>
	// true
}
