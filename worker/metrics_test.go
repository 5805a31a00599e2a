package worker

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bcsync/bcsync/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The clients' transport counts each request by service and status, and a
// request that got no answer as status "error".
func TestMetricsCountRequestsByServiceAndStatus(t *testing.T) {
	t.Parallel()
	bc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/throttled" {
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer bc.Close()
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer entra.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close() // nothing listens there any more: no answer

	m := NewMetrics(prometheus.NewRegistry())
	c := m.httpClient(nil, &config.Subscription{Name: "contoso", APIURL: bc.URL, AuthorityURL: entra.URL})
	for _, u := range []string{bc.URL + "/v2.0/companies", bc.URL + "/v2.0/companies", bc.URL + "/throttled",
		entra.URL + "/tenant/oauth2/v2.0/token", goneURL + "/api/customers"} {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
		} else if !strings.HasPrefix(u, goneURL) {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	for _, tc := range []struct {
		service, status string
		want            float64
	}{
		{"bc", "200", 2}, {"bc", "429", 1}, {"entra", "400", 1}, {"ipaas", "error", 1}, {"ipaas", "200", 0},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("contoso", tc.service, tc.status)); got != tc.want {
			t.Errorf("requests{service=%q,status=%q} = %v, want %v", tc.service, tc.status, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.reqTime); n != 3 {
		t.Errorf("%d request-time series, want one per service (3)", n)
	}
}
