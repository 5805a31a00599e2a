package bcclient_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/bcsync/bcsync/bcclient"
)

// fuzzClient is a Client that is never used to send: it checks next links
// against https://api.businesscentral.dynamics.com.
func fuzzClient(f *testing.F) *bcclient.Client {
	c, err := bcclient.New(bcclient.Config{
		TenantID: "t", Environment: "Production", CompanyName: "C",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"}),
	})
	if err != nil {
		f.Fatal(err)
	}
	return c
}

const fuzzCurrent = "https://api.businesscentral.dynamics.com/v2.0/t/Production/api/v2.0/companies(11111111-2222-3333-4444-555555555555)/customers"

// FuzzDecodePage decodes a list response as a page of every row type: it
// must never panic, fail only with a permanent error, and accept only a
// next link to the API host.
func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"value":[` + locationJSON + `],"@odata.nextLink":"` + fuzzCurrent + `?$skiptoken=Mg"}`))
	f.Add([]byte(`{"@odata.context":"x","value":[` + orderJSON + `]}`))
	f.Add([]byte(`{"value":[` + subJSON + `],"@odata.nextLink":"https://evil.example.com/?$skiptoken=1"}`))
	f.Add([]byte(`{"value":[{"Code":"PG001","Description":"Retail","@odata.etag":"W/\"1\""}],"@odata.nextLink":"customers?$skiptoken=2"}`))
	f.Add([]byte(`{"value":[{"id":"x","number":"1896-S","blocked":true,"inventory":1e308,"unitPrice":-0.5}]}`))
	f.Add([]byte(`{"value":null,"@odata.nextLink":"//api.businesscentral.dynamics.com:443/x"}`))
	f.Add([]byte(`{"value":[{"lastModifiedDateTime":"not a time"}]}`))
	f.Add([]byte(`[]`))
	c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(n int, next string, err error) {
			if err != nil {
				if bcclient.Classify(err) != bcclient.ClassPermanent {
					t.Fatalf("error %v is %v, want permanent", err, bcclient.Classify(err))
				}
				return
			}
			if next == "" {
				return
			}
			u, perr := url.Parse(next)
			if perr != nil || !strings.EqualFold(u.Scheme, "https") || u.User != nil ||
				!strings.EqualFold(u.Hostname(), "api.businesscentral.dynamics.com") || (u.Port() != "" && u.Port() != "443") {
				t.Fatalf("next link %q accepted", next)
			}
			if next == fuzzCurrent || strings.ContainsAny(next, "\r\n") {
				t.Fatalf("next link %q accepted", next)
			}
			_ = n
		}
		rows, next, err := bcclient.DecodePage[bcclient.Customer](c, fuzzCurrent, body)
		check(len(rows), next, err)
		items, next, err := bcclient.DecodePage[bcclient.Item](c, fuzzCurrent, body)
		check(len(items), next, err)
		locs, next, err := bcclient.DecodePage[bcclient.Location](c, fuzzCurrent, body)
		check(len(locs), next, err)
		sms, next, err := bcclient.DecodePage[bcclient.ShipmentMethod](c, fuzzCurrent, body)
		check(len(sms), next, err)
		orders, next, err := bcclient.DecodePage[bcclient.SalesOrder](c, fuzzCurrent, body)
		check(len(orders), next, err)
		groups, next, err := bcclient.DecodePage[bcclient.CustomerPriceGroup](c, fuzzCurrent, body)
		check(len(groups), next, err)
		companies, next, err := bcclient.DecodePage[bcclient.Company](c, fuzzCurrent, body)
		check(len(companies), next, err)
		subs, next, err := bcclient.DecodePage[bcclient.Subscription](c, fuzzCurrent, body)
		check(len(subs), next, err)
	})
}

// FuzzDecodeSubscription decodes a subscription as BC answers it: it must
// never panic, fail only with a permanent error, and survive a round trip.
func FuzzDecodeSubscription(f *testing.F) {
	f.Add([]byte(subJSON))
	f.Add([]byte(`{"subscriptionId":"a')/x('","notificationUrl":"javascript:x","expirationDateTime":"2026-01-05T03:04:05.1234567+02:00"}`))
	f.Add([]byte(`{"@odata.etag":"W/\"JzE2\"","expirationDateTime":"0001-01-01T00:00:00Z","clientState":null}`))
	f.Add([]byte(`{"expirationDateTime":"2026-13-05"}`))
	f.Add([]byte(`{"subscriptionId":5}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := bcclient.DecodeSubscription(body)
		if err != nil {
			if bcclient.Classify(err) != bcclient.ClassPermanent {
				t.Fatalf("error %v is %v, want permanent", err, bcclient.Classify(err))
			}
			return
		}
		_ = s.SubscriptionID
		if bcclient.CheckSubscriptionID(s.SubscriptionID) == nil &&
			strings.ContainsAny(s.SubscriptionID, "'()/?#%\\ ") {
			t.Fatalf("unsafe id %q accepted", s.SubscriptionID)
		}
		b, err := json.Marshal(s)
		if err != nil {
			return // a time outside years 0-9999 does not marshal
		}
		again, err := bcclient.DecodeSubscription(b)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		if again.SubscriptionID != s.SubscriptionID || again.ClientState != s.ClientState || again.ETag != s.ETag ||
			again.NotificationURL != s.NotificationURL || again.Resource != s.Resource || again.UserID != s.UserID ||
			!again.ExpirationDateTime.Equal(s.ExpirationDateTime) || !again.LastModifiedDateTime.Equal(s.LastModifiedDateTime) {
			t.Fatalf("round trip changed %+v into %+v", s, again)
		}
	})
}
