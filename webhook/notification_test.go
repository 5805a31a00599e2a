package webhook_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/webhook"
)

func TestParseResource(t *testing.T) {
	t.Parallel()
	co, rec := companyID, customerID
	upper := strings.ToUpper(rec)
	tests := []struct {
		in   string
		want webhook.Resource
	}{
		{"api/v2.0/companies(" + co + ")/customers(" + rec + ")", webhook.Resource{CompanyID: co, EntitySet: "customers", RecordID: rec}},
		{"/api/v2.0/companies(" + co + ")/customers(" + rec + ")", webhook.Resource{CompanyID: co, EntitySet: "customers", RecordID: rec}},
		{"API/V2.0/Companies(" + strings.ToUpper(co) + ")/CUSTOMERS(" + upper + ")", webhook.Resource{CompanyID: co, EntitySet: "customers", RecordID: rec}},
		{"api/v2.0/companies(" + co + ")/shipmentmethods(" + rec + ")", webhook.Resource{CompanyID: co, EntitySet: "shipmentMethods", RecordID: rec}},
		{"api/v2.0/companies(" + co + ")/salesOrders(" + rec + ")", webhook.Resource{CompanyID: co, EntitySet: "salesOrders", RecordID: rec}},
		{"api/v2.0/companies(" + co + ")/items", webhook.Resource{CompanyID: co, EntitySet: "items"}},
		{"api/v2.0/companies(" + co + ")/customers?$filter=lastModifiedDateTime%20gt%202026-11-29T10:00:00.000Z",
			webhook.Resource{CompanyID: co, EntitySet: "customers", Query: true}},
		{"api/v2.0/companies(" + co + ")/customers?$filter=lastModifiedDateTime gt 2026-11-29T10:00:00Z",
			webhook.Resource{CompanyID: co, EntitySet: "customers", Query: true}},
		{"https://api.businesscentral.dynamics.com/v2.0/tenant/Production/api/v2.0/companies(" + co + ")/customers(" + rec + ")",
			webhook.Resource{CompanyID: co, EntitySet: "customers", RecordID: rec}},
	}
	for _, tt := range tests {
		got, err := webhook.ParseResource(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseResource(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{
		"", "/", "api/v2.0/", "api/v2.0/companies(" + co + ")", "api/v1.0/companies(" + co + ")/customers(" + rec + ")",
		"api/v2.0/companies(" + co + ")/customers(" + rec + ")/addresses", "api/v2.0/companies/customers(" + rec + ")",
		"api/v2.0/companies()/customers", "api/v2.0/companies(" + co + ")/customers(C0001)", "api/v2.0/companies(" + co + ")/customers(" + rec,
		"api/v2.0/companies(" + co + ")/(" + rec + ")", "api/v2.0/companies(" + co + ")/locations(" + rec + ")",
		"api/v2.0/companies(" + co + ")/customers#x", "ftp://h/api/v2.0/companies(" + co + ")/customers",
		"https://h/other/companies(" + co + ")/customers", "api/v2.0/companies(" + co + ")/cust omers",
		"api/v2.0/companies(" + co + ")/customers\x00", "api/v2.0/companies(" + co + ")/customers\xff",
	} {
		if got, err := webhook.ParseResource(in); err == nil {
			t.Errorf("ParseResource(%q) = %+v, want an error", in, got)
		}
	}
}

func TestParseNotification(t *testing.T) {
	t.Parallel()
	b := body(
		item(testState, "created", customerRes(customerID), "2026-11-29T10:00:00.1234567Z"),
		item("", "COLLECTION", "api/v2.0/companies("+companyID+")/items?$filter=x", "2026-11-29T10:00:00"),
	)
	ns, err := webhook.ParseNotification(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []webhook.Notification{
		{SubscriptionID: bcSubID, ClientState: testState, Resource: customerRes(customerID), ChangeType: webhook.ChangeCreated,
			LastModified: time.Date(2026, 11, 29, 10, 0, 0, 123456700, time.UTC), Expiration: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
			CompanyID: companyID, EntitySet: "customers", RecordID: customerID},
		{SubscriptionID: bcSubID, Resource: "api/v2.0/companies(" + companyID + ")/items?$filter=x", ChangeType: webhook.ChangeCollection,
			LastModified: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), Expiration: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
			CompanyID: companyID, EntitySet: "items"},
	}
	if len(ns) != len(want) {
		t.Fatalf("%d notifications", len(ns))
	}
	for i := range want {
		if ns[i] != want[i] {
			t.Errorf("item %d:\n got %+v\nwant %+v", i, ns[i], want[i])
		}
	}
	// Unknown properties are BC's to add: ignored.
	if _, err := webhook.ParseNotification([]byte(`{"@odata.context":"x","value":[{"subscriptionId":"s","resource":"` +
		customerRes(customerID) + `","changeType":"updated","lastModifiedDateTime":"2026-11-29T10:00:00Z","tenantId":"t"}]}`)); err != nil {
		t.Errorf("unknown properties: %v", err)
	}
	_, err = webhook.ParseNotification([]byte(`{"value":[]}`))
	if !errors.Is(err, webhook.ErrMalformed) {
		t.Errorf("empty value: %v", err)
	}
	// Formatting never shows the clientState.
	if s := fmt.Sprintf("%v %+v %#v %s", ns[0], ns[0], ns, ns[0]); strings.Contains(s, testState) || !strings.Contains(s, "[redacted]") {
		t.Errorf("formatted: %s", s)
	}
}

func TestJobs(t *testing.T) {
	t.Parallel()
	const otherID = "11111111-2222-4333-8444-555555555555"
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
	n := func(ct webhook.ChangeType, set, rec, when string) webhook.Notification {
		res := "api/v2.0/companies(" + companyID + ")/" + set
		if rec != "" {
			res += "(" + rec + ")"
		}
		return webhook.Notification{SubscriptionID: bcSubID, Resource: res, ChangeType: ct, LastModified: at(when),
			CompanyID: companyID, EntitySet: set, RecordID: rec}
	}
	ns := []webhook.Notification{
		n(webhook.ChangeUpdated, "customers", customerID, "2026-11-29T10:00:01Z"),
		n(webhook.ChangeCollection, "items", "", "2026-11-29T10:00:02Z"),
		n(webhook.ChangeCreated, "customers", customerID, "2026-11-29T10:00:00Z"), // older: folded into the first
		n(webhook.ChangeDeleted, "customers", customerID, "2026-11-29T10:00:03Z"),
		n(webhook.ChangeUpdated, "vendors", customerID, "2026-11-29T10:00:04Z"),
		n(webhook.ChangeCollection, "items", "", "2026-11-29T10:00:05Z"), // later: replaces the first collection
		n(webhook.ChangeUpdated, "shipmentMethods", methodID, "2026-11-29T10:00:06Z"),
		n(webhook.ChangeUpdated, "customers", otherID, "2026-11-29T10:00:07Z"), // after its delete: kept
		n(webhook.ChangeDeleted, "customers", otherID, "2026-11-29T10:00:06Z"),
	}
	js, ignored := webhook.Jobs("demo", ns)
	if ignored != 1 {
		t.Errorf("ignored %d, want 1 (vendors)", ignored)
	}
	want := []struct {
		typ  messages.Type
		op   messages.Op
		key  string
		from int // the notification the job comes from
	}{
		// The upsert of customerID is dropped: the record was deleted after.
		{messages.TypeProduct, messages.OpDelta, "", 5},
		{messages.TypeCustomer, messages.OpDelete, customerID, 3},
		{messages.TypeShippingMethod, messages.OpUpsert, methodID, 6},
		{messages.TypeCustomer, messages.OpUpsert, otherID, 7},
		{messages.TypeCustomer, messages.OpDelete, otherID, 8},
	}
	if len(js) != len(want) {
		t.Fatalf("%d jobs: %+v", len(js), js)
	}
	ids := map[string]bool{}
	for i, w := range want {
		j := js[i]
		if j.Type != w.typ || j.Op != w.op || j.Key != w.key || !j.ChangedAt.Equal(ns[w.from].LastModified) ||
			j.ID != webhook.JobID("demo", ns[w.from]) || j.Source != webhook.Source || j.V != messages.Version {
			t.Errorf("job %d: %+v, want %+v", i, j, w)
		}
		if err := j.Validate(); err != nil {
			t.Errorf("job %d: %v", i, err)
		}
		ids[j.ID] = true
	}
	if len(ids) != len(want) {
		t.Error("two jobs share an id")
	}
	again, _ := webhook.Jobs("demo", ns)
	other, _ := webhook.Jobs("other", ns)
	if again[0].ID != js[0].ID || other[0].ID == js[0].ID || len(again) != len(js) {
		t.Error("job ids are not derived from the subscription and the notification alone")
	}
	// Every entity set the configuration accepts makes jobs.
	for _, set := range config.WebhookEntitySets() {
		_, synced := config.WebhookType(set)
		js, ignored := webhook.Jobs("demo", []webhook.Notification{n(webhook.ChangeCreated, set, customerID, "2026-11-29T10:00:00Z")})
		if synced != (len(js) == 1) || synced == (ignored == 1) {
			t.Errorf("%s: %d jobs, %d ignored", set, len(js), ignored)
		}
	}
}

// A change needs its time: BC's blank DateTime is none (a delete without
// it would record no time, and an older read could bring the record back),
// and a time not in ISO 8601's two-digit form is not BC's.
func TestParseNotificationRefusesBlankAndNonISOTimes(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00", "0001-01-01T0:00:00", "2026-11-29T1:00:00Z", "2026-11-29 10:00:00Z"} {
		ns, err := webhook.ParseNotification(body(item(testState, "deleted", customerRes(customerID), at)))
		if !errors.Is(err, webhook.ErrMalformed) || !strings.Contains(err.Error(), "lastModifiedDateTime") {
			t.Errorf("lastModifiedDateTime %q: %+v, %v; want it refused", at, ns, err)
		}
	}
}

// A body of many empty items ({"value":[{},{},...]}), which anyone can
// send before any clientState is checked, is refused at the first item past
// MaxItems: decoded whole, 4 MiB of it once took about 750 MiB of memory.
// Not parallel: it measures the memory allocated.
func TestParseNotificationStopsPastMaxItems(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"value":[{}`)
	for b.Len() < 4<<20-16 {
		b.WriteString(`,{}`)
	}
	b.WriteString(`]}`)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := webhook.ParseNotification(b.Bytes())
	runtime.ReadMemStats(&after)
	if !errors.Is(err, webhook.ErrMalformed) || !strings.Contains(err.Error(), fmt.Sprintf("more than %d items", webhook.MaxItems)) {
		t.Errorf("ParseNotification = %v, want too many items", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(4*b.Len()) {
		t.Errorf("a %d-byte body of empty items allocated %d MiB", b.Len(), alloc>>20)
	}
}

// FuzzParseNotification checks that the parser never panics, that it
// accepts only what makes valid jobs, and that its errors are ErrMalformed.
func FuzzParseNotification(f *testing.F) {
	f.Add(body(item(testState, "updated", customerRes(customerID), "2026-11-29T10:00:00.123Z")))
	f.Add(body(item(testState, "collection", "api/v2.0/companies("+companyID+")/customers?$filter=lastModifiedDateTime%20gt%202026-11-29T10:00:00.000Z", "2026-11-29T10:00:00Z")))
	f.Add([]byte(`{"value":[{}]}`))
	f.Add([]byte(`{"value":[]}`))
	f.Add([]byte(`{"value":[{"subscriptionId":"a","resource":"/api/v2.0/companies(` + companyID + `)/Items(` + customerID + `)","changeType":"deleted","lastModifiedDateTime":"2026-11-29T10:00:00+02:00"}]} x`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ns, err := webhook.ParseNotification(b)
		if err != nil {
			if !errors.Is(err, webhook.ErrMalformed) || ns != nil {
				t.Fatalf("error %v with %d notifications", err, len(ns))
			}
			return
		}
		if len(ns) == 0 || len(ns) > webhook.MaxItems {
			t.Fatalf("%d notifications without an error", len(ns))
		}
		for _, n := range ns {
			r, err := webhook.ParseResource(n.Resource)
			if err != nil || r.EntitySet != n.EntitySet || r.CompanyID != n.CompanyID || !messages.IsGUID(n.CompanyID) {
				t.Fatalf("%+v: resource %+v, %v", n, r, err)
			}
			if (n.ChangeType == webhook.ChangeCollection) != (n.RecordID == "") || n.SubscriptionID == "" || n.LastModified.IsZero() {
				t.Fatalf("accepted %+v", n)
			}
		}
		js, ignored := webhook.Jobs("fuzz", ns)
		if len(js)+ignored > len(ns) || len(js) == 0 && ignored == 0 {
			t.Fatalf("%d jobs and %d ignored of %d notifications", len(js), ignored, len(ns))
		}
		for _, j := range js {
			if err := j.Validate(); err != nil {
				t.Fatalf("invalid job %+v: %v", j, err)
			}
		}
	})
}
