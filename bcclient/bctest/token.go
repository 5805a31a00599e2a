package bctest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// serveToken is Entra's POST /{tenant}/oauth2/v2.0/token for the client
// credentials grant, with Entra's failure bodies and statuses.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	s.tokenReqs.Add(1)
	if r.Method != http.MethodPost {
		entraError(w, http.StatusBadRequest, "invalid_request", 900561,
			"The endpoint only accepts POST requests. Received a "+r.Method+" request.")
		return
	}
	if !strings.EqualFold(tenant, s.opts.TenantID) {
		entraError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf(
			"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
			tenant))
		return
	}
	form := url.Values{}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			entraError(w, http.StatusBadRequest, "invalid_request", 900144,
				"The request body must contain the following parameter: 'grant_type'.")
			return
		}
		form = r.PostForm
	}
	missing := func(param string) {
		entraError(w, http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: '"+param+"'.")
	}
	s.mu.RLock()
	disabled, secretExpired, want := s.disabled, s.secretExp, s.secret
	s.mu.RUnlock()
	switch clientID, secret := form.Get("client_id"), form.Get("client_secret"); {
	case form.Get("grant_type") == "":
		missing("grant_type")
	case form.Get("grant_type") != "client_credentials":
		entraError(w, http.StatusBadRequest, "unsupported_grant_type", 70003,
			"The app requested an unsupported grant type '"+form.Get("grant_type")+"'.")
	case clientID == "":
		missing("client_id")
	case !strings.EqualFold(clientID, s.opts.ClientID):
		entraError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
			clientID, s.opts.TenantID))
	case disabled:
		entraError(w, http.StatusBadRequest, "unauthorized_client", 7000112, fmt.Sprintf(
			"Application '%s' is disabled.", s.opts.ClientID))
	case secret == "":
		entraError(w, http.StatusBadRequest, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	case secret != want:
		entraError(w, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
			"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.",
			s.opts.ClientID))
	case secretExpired:
		entraError(w, http.StatusUnauthorized, "invalid_client", 7000222, fmt.Sprintf(
			"The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app.",
			s.opts.ClientID))
	case form.Get("scope") == "":
		missing("scope")
	case form.Get("scope") != Scope:
		entraError(w, http.StatusBadRequest, "invalid_scope", 70011, fmt.Sprintf(
			"The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.",
			form.Get("scope")))
	default:
		tok, lifetime := s.issue(s.now())
		s.tokensIssued.Add(1)
		secs := int(lifetime / time.Second)
		w.Header().Set("Cache-Control", "no-store, no-cache")
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok,
		})
	}
}

// entraError writes Entra's failure body.
func entraError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	traceID, correlationID := newGUID(), newGUID()
	ts := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	writeJSON(w, status, map[string]any{
		"error": code,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			aadsts, desc, traceID, correlationID, ts),
		"error_codes":    []int{aadsts},
		"timestamp":      ts,
		"trace_id":       traceID,
		"correlation_id": correlationID,
		"error_uri":      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
