package bcclient_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
)

const subJSON = `{"@odata.etag":"W/\"JzE2OzE\"","subscriptionId":"0b9e7d4c5a3f4e2d9c8b7a6f5e4d3c2b",` +
	`"notificationUrl":"https://hooks.example.com/bc","resource":"/api/v2.0/companies(` + stubCompanyID + `)/customers",` +
	`"userId":"ffffffff-0000-4000-8000-000000000001","lastModifiedDateTime":"2026-01-02T03:04:05Z",` +
	`"clientState":"s3cret-state","expirationDateTime":"2026-01-05T03:04:05Z"}`

func TestSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	handler := func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			status(201, subJSON)(w, r)
		case http.MethodPatch:
			okJSON(strings.Replace(strings.Replace(subJSON, `JzE2OzE`, `JzE2OzI`, 1), "2026-01-05", "2026-01-08", 1))(w, r)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			okJSON(`{"value":[`+subJSON+`]}`)(w, r)
		}
	}
	c, s, _ := newStub(t, handler)
	ctx := t.Context()
	res, err := c.Resource(ctx, "customers")
	if err != nil || res != "/api/v2.0/companies("+stubCompanyID+")/customers" {
		t.Fatalf("Resource = %q, %v", res, err)
	}
	sub, err := c.CreateSubscription(ctx, bcclient.SubscriptionRequest{
		NotificationURL: "https://hooks.example.com/bc", Resource: res, ClientState: "s3cret-state",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := bcclient.Subscription{
		SubscriptionID: "0b9e7d4c5a3f4e2d9c8b7a6f5e4d3c2b", NotificationURL: "https://hooks.example.com/bc",
		Resource: res, UserID: "ffffffff-0000-4000-8000-000000000001", ClientState: "s3cret-state",
		LastModifiedDateTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		ExpirationDateTime:   time.Date(2026, 1, 5, 3, 4, 5, 0, time.UTC), ETag: `W/"JzE2OzE"`,
	}
	if sub != want {
		t.Errorf("created %+v", sub)
	}
	renewed, err := c.RenewSubscription(ctx, sub)
	if err != nil || renewed.ETag != `W/"JzE2OzI"` || !renewed.ExpirationDateTime.Equal(time.Date(2026, 1, 8, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("renewed %+v, %v", renewed, err)
	}
	list, err := c.ListSubscriptions(ctx)
	if err != nil || len(list) != 1 || list[0] != want {
		t.Fatalf("ListSubscriptions = %+v, %v", list, err)
	}
	if err := c.DeleteSubscription(ctx, renewed); err != nil {
		t.Fatal(err)
	}

	reqs := s.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	const subs = "subscriptions"
	const one = "subscriptions('0b9e7d4c5a3f4e2d9c8b7a6f5e4d3c2b')"
	for i, w := range []struct{ method, path, ifMatch, contentType string }{
		{"POST", subs, "", "application/json"},
		{"PATCH", one, `W/"JzE2OzE"`, "application/json"},
		{"GET", subs, "", ""},
		{"DELETE", one, `W/"JzE2OzI"`, ""},
	} {
		r := reqs[i]
		if r.Method != w.method || pathAfterRoot(r.Path) != w.path || r.Header.Get("If-Match") != w.ifMatch ||
			r.Header.Get("Content-Type") != w.contentType || r.Header.Get("Authorization") != "Bearer test-token" {
			t.Errorf("request %d: %s %s If-Match %q Content-Type %q", i, r.Method, r.Path, r.Header.Get("If-Match"), r.Header.Get("Content-Type"))
		}
	}
	var created map[string]string
	if err := json.Unmarshal([]byte(reqs[0].Body), &created); err != nil ||
		fmt.Sprint(created) != fmt.Sprint(map[string]string{"notificationUrl": "https://hooks.example.com/bc", "resource": res, "clientState": "s3cret-state"}) {
		t.Errorf("POST body %s", reqs[0].Body)
	}
	var patch map[string]string
	if err := json.Unmarshal([]byte(reqs[1].Body), &patch); err != nil ||
		fmt.Sprint(patch) != fmt.Sprint(map[string]string{"notificationUrl": "https://hooks.example.com/bc", "clientState": "s3cret-state"}) {
		t.Errorf("PATCH body %s", reqs[1].Body)
	}
	if reqs[3].Body != "" {
		t.Errorf("DELETE body %q", reqs[3].Body)
	}

	// The client state never prints.
	out := fmt.Sprintf("%v %+v %#v %s", sub, sub, sub, bcclient.SubscriptionRequest{ClientState: "s3cret-state"})
	if strings.Contains(out, "s3cret-state") || !strings.Contains(out, "[redacted]") || !strings.Contains(out, sub.SubscriptionID) {
		t.Errorf("printed %s", out)
	}
}

func TestSubscriptionChanged(t *testing.T) {
	t.Parallel()
	sub := bcclient.Subscription{SubscriptionID: "0b9e7d4c-5a3f-4e2d-9c8b-7a6f5e4d3c2b", ETag: `W/"stale"`}
	for _, tt := range []struct {
		status int
		code   string
	}{{409, "Request_EntityChanged"}, {412, ""}, {412, "Request_PreconditionFailed"}} {
		t.Run(fmt.Sprint(tt.status, tt.code), func(t *testing.T) {
			t.Parallel()
			c, s, clock := newStub(t, fail(tt.status, tt.code))
			_, err := c.RenewSubscription(t.Context(), sub)
			derr := c.DeleteSubscription(t.Context(), sub)
			for _, err := range []error{err, derr} {
				var e *bcclient.APIError
				if !errors.Is(err, bcclient.ErrChanged) || !errors.As(err, &e) || e.Status != tt.status ||
					errors.Is(err, bcclient.ErrNotFound) || bcclient.Classify(err) != bcclient.ClassTransient {
					t.Errorf("err = %v", err)
				}
			}
			if n := len(s.requests()); n != 2 || len(clock.slept()) != 0 {
				t.Errorf("%d requests, sleeps %v: ErrChanged must not be retried", n, clock.slept())
			}
		})
	}
	// Other 409s are not ErrChanged.
	if errors.Is(&bcclient.APIError{Status: 409, Code: "Internal_EntityWithSameKeyExists"}, bcclient.ErrChanged) {
		t.Error("a duplicate is ErrChanged")
	}
}

func TestSubscriptionGone(t *testing.T) {
	t.Parallel()
	c, _, _ := newStub(t, fail(404, "BadRequest_NotFound"))
	sub := bcclient.Subscription{SubscriptionID: "abc", ETag: "*"}
	_, err := c.RenewSubscription(t.Context(), sub)
	derr := c.DeleteSubscription(t.Context(), sub)
	for _, err := range []error{err, derr} {
		var e *bcclient.APIError
		if !errors.Is(err, bcclient.ErrNotFound) || !errors.As(err, &e) || bcclient.Classify(err) != bcclient.ClassNotFound {
			t.Errorf("err = %v", err)
		}
	}
	// A missing environment is not a missing subscription.
	c, _, _ = newStub(t, fail(404, "Internal_EnvironmentNotFound"))
	if err := c.DeleteSubscription(t.Context(), sub); errors.Is(err, bcclient.ErrNotFound) || bcclient.Classify(err) != bcclient.ClassAuth {
		t.Errorf("err = %v", err)
	}
}

// TestSubscriptionValidation: invalid arguments send nothing.
func TestSubscriptionValidation(t *testing.T) {
	t.Parallel()
	c, s, _ := newStub(t, okJSON(subJSON))
	ctx := t.Context()
	res := "/api/v2.0/companies(" + stubCompanyID + ")/items"
	good := bcclient.SubscriptionRequest{NotificationURL: "https://h.example.com/x", Resource: res, ClientState: strings.Repeat("é", 2048)}
	for name, tt := range map[string]struct {
		run  func() error
		want error
	}{
		"client state too long": {func() error {
			r := good
			r.ClientState += "x"
			_, err := c.CreateSubscription(ctx, r)
			return err
		}, bcclient.ErrInvalidRequest},
		"relative notification URL": {func() error {
			r := good
			r.NotificationURL = "/hook"
			_, err := c.CreateSubscription(ctx, r)
			return err
		}, bcclient.ErrInvalidRequest},
		"notification URL with user": {func() error {
			r := good
			r.NotificationURL = "https://u:p@h.example.com/"
			_, err := c.CreateSubscription(ctx, r)
			return err
		}, bcclient.ErrInvalidRequest},
		"no resource": {func() error {
			r := good
			r.Resource = ""
			_, err := c.CreateSubscription(ctx, r)
			return err
		}, bcclient.ErrInvalidRequest},
		"locations":   {func() error { _, err := c.Resource(ctx, "locations"); return err }, bcclient.ErrInvalidRequest},
		"unknown set": {func() error { _, err := c.Resource(ctx, "customers/../x"); return err }, bcclient.ErrInvalidRequest},
		"id with quote": {func() error {
			_, err := c.RenewSubscription(ctx, bcclient.Subscription{SubscriptionID: "a')/x('", ETag: "*"})
			return err
		}, bcclient.ErrInvalidKey},
		"empty id": {func() error {
			return c.DeleteSubscription(ctx, bcclient.Subscription{ETag: "*"})
		}, bcclient.ErrInvalidKey},
		"no ETag": {func() error {
			return c.DeleteSubscription(ctx, bcclient.Subscription{SubscriptionID: "abc"})
		}, bcclient.ErrInvalidRequest},
		"ETag with newline": {func() error {
			_, err := c.RenewSubscription(ctx, bcclient.Subscription{SubscriptionID: "abc", ETag: "W/\"1\"\r\nX: y"})
			return err
		}, bcclient.ErrInvalidRequest},
	} {
		if err := tt.run(); !errors.Is(err, tt.want) || bcclient.Classify(err) != bcclient.ClassPermanent {
			t.Errorf("%s: err = %v, want %v", name, err, tt.want)
		}
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
	if _, err := c.CreateSubscription(ctx, good); err != nil {
		t.Errorf("2048 characters refused: %v", err)
	}
	for id, ok := range map[string]bool{
		"0b9e7d4c5a3f4e2d9c8b7a6f5e4d3c2b": true, "0B9E7D4C-5A3F-4E2D-9C8B-7A6F5E4D3C2B": true,
		"": false, "a b": false, "a/b": false, "a'b": false, "é": false, strings.Repeat("a", 129): false,
	} {
		if err := bcclient.CheckSubscriptionID(id); (err == nil) != ok {
			t.Errorf("CheckSubscriptionID(%q) = %v", id, err)
		}
	}
}
