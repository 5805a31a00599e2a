package bctest_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

func TestSetForbidden(t *testing.T) {
	t.Parallel()
	s := newServer(t, bctest.Options{Locations: 3, Customers: 3, PriceGroups: 2})
	tok := token(t, s)
	customer := s.Rows(bctest.SetCustomers)[0]["id"].(string)
	odata := "/v2.0/" + s.TenantID() + "/" + s.Environment() + "/ODataV4/Company(" +
		url.PathEscape("'"+s.CompanyName()+"'") + ")/" + s.PriceGroupService()

	s.SetForbidden(bctest.SetCustomers, true)
	s.SetForbidden(s.PriceGroupService(), true)
	for path, table := range map[string]string{
		companyPath(s) + "/customers":                   "Customer",
		companyPath(s) + "/customers(" + customer + ")": "Customer",
		odata: "Customer Price Group",
		odata + "('" + s.PriceGroupCodes()[0] + "')": "Customer Price Group",
	} {
		resp, body := get(t, s, tok, path)
		if resp.StatusCode != http.StatusForbidden || errorCode(body) != "Authorization_InsufficientPermissions" {
			t.Errorf("GET %s while forbidden: %d %v", path, resp.StatusCode, body)
			continue
		}
		if msg := errorMessage(body); !strings.Contains(msg, "TableData "+table+": Read") || !strings.Contains(msg, "CorrelationId") {
			t.Errorf("GET %s: message %q does not name the table %q", path, msg, table)
		}
	}
	// Other sets, and other requests, are not affected.
	if resp, body := get(t, s, tok, companyPath(s)+"/locations"); resp.StatusCode != http.StatusOK {
		t.Errorf("locations while customers are forbidden: %d %v", resp.StatusCode, body)
	}
	// Authentication comes first: no token is still 401, not 403.
	if resp, body := get(t, s, "", companyPath(s)+"/customers"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("customers without a token: %d %v", resp.StatusCode, body)
	}
	st := s.Stats()
	if st.DataRequests[bctest.SetCustomers] != 0 || st.DataRequests[s.PriceGroupService()] != 0 || st.DataRequests[bctest.SetLocations] != 1 {
		t.Errorf("refused reads were counted as data requests: %v", st.DataRequests)
	}

	s.SetForbidden(bctest.SetCustomers, false)
	if resp, body := get(t, s, tok, companyPath(s)+"/customers"); resp.StatusCode != http.StatusOK || len(values(t, body)) != 3 {
		t.Errorf("customers after SetForbidden(false): %d %v", resp.StatusCode, body)
	}
	if resp, _ := get(t, s, tok, odata); resp.StatusCode != http.StatusForbidden {
		t.Errorf("price groups stay forbidden: %d", resp.StatusCode)
	}

	s.SetForbidden(bctest.SetCompanies, true)
	if resp, body := get(t, s, tok, apiRoot(s)+"/companies"); resp.StatusCode != http.StatusForbidden || !strings.Contains(errorMessage(body), "TableData Company") {
		t.Errorf("companies while forbidden: %d %v", resp.StatusCode, body)
	}
}
