package bctest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

// BenchmarkListCustomers lists 100,000 customers in pages of 1,000 through
// the fake, to show what the fake itself costs a client benchmark.
func BenchmarkListCustomers(b *testing.B) {
	s := bctest.NewServer(bctest.Options{Customers: 100_000, Budget: -1})
	defer s.Close()
	resp, err := http.PostForm(s.TokenURL(), map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {s.ClientID()},
		"client_secret": {s.ClientSecret()}, "scope": {bctest.Scope},
	})
	if err != nil {
		b.Fatal(err)
	}
	var tb struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tb)
	resp.Body.Close()
	first := s.URL() + "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/api/v2.0/companies(" + s.CompanyID() + ")/customers"
	b.ResetTimer()
	for b.Loop() {
		rows := 0
		for next := first; next != ""; {
			req, _ := http.NewRequest(http.MethodGet, next, nil)
			req.Header.Set("Authorization", "Bearer "+tb.AccessToken)
			req.Header.Set("Prefer", "odata.maxpagesize=1000")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var page struct {
				Value    []json.RawMessage `json:"value"`
				NextLink string            `json:"@odata.nextLink"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				b.Fatal(err)
			}
			rows += len(page.Value)
			next = page.NextLink
		}
		if rows != 100_000 {
			b.Fatalf("%d rows", rows)
		}
	}
	b.ReportMetric(float64(b.N*100_000)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkFilterByKey reads one customer of 100,000 by
// "$filter=number eq '...'", the request a get by number sends, to show
// what a keyed read costs the fake.
func BenchmarkFilterByKey(b *testing.B) {
	s := bctest.NewServer(bctest.Options{Customers: 100_000, SalesOrders: -1, Budget: -1})
	defer s.Close()
	tok := benchToken(b, s)
	base := s.URL() + "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/api/v2.0/companies(" + s.CompanyID() + ")/customers?$filter="
	numbers := s.CustomerNumbers()
	i := 0
	for b.Loop() {
		number := numbers[(i*7919)%len(numbers)]
		i++
		req, _ := http.NewRequest(http.MethodGet, base+"number%20eq%20%27"+number+"%27", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var page struct {
			Value []struct {
				Number string `json:"number"`
			} `json:"value"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || len(page.Value) != 1 || page.Value[0].Number != number {
			b.Fatalf("%s: %+v %v", number, page, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// benchToken returns an access token from s.
func benchToken(b *testing.B, s *bctest.Server) string {
	b.Helper()
	resp, err := http.PostForm(s.TokenURL(), map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {s.ClientID()},
		"client_secret": {s.ClientSecret()}, "scope": {bctest.Scope},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var tb struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tb); err != nil || tb.AccessToken == "" {
		b.Fatalf("token: %v", err)
	}
	return tb.AccessToken
}
