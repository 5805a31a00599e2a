package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/ipaasclient/ipaastest"
	"github.com/bcsync/bcsync/mapping"
	"github.com/bcsync/bcsync/messages"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		class            Class
		own, attempt, md int
		down             bool
		want             Action
	}{
		{"", 1, 1, 5, false, ActionAck},
		{"", 5, 5, 5, false, ActionAck},
		{"", 5, 5, 5, true, ActionAck},
		{ClassPermanent, 1, 1, 5, false, ActionDeadLetter},
		{ClassPermanent, 1, 1, 5, true, ActionDeadLetter},
		{ClassNotFound, 1, 1, 5, false, ActionDeadLetter},
		// A transient failure counts while the dependency is up...
		{ClassTransient, 1, 1, 5, false, ActionRetry},
		{ClassTransient, 4, 4, 5, false, ActionRetry},
		{ClassTransient, 5, 5, 5, false, ActionDeadLetter},
		// ...and not while it is down.
		{ClassTransient, 1, 1, 5, true, ActionHold},
		{ClassTransient, 5, 5, 5, true, ActionRequeue},
		{ClassTransient, 9, 9, 5, true, ActionRequeue},
		// Throttling and refused credentials never count.
		{ClassThrottled, 2, 2, 5, false, ActionHold},
		{ClassThrottled, 5, 5, 5, false, ActionRequeue},
		{ClassAuth, 1, 1, 5, false, ActionHold},
		{ClassAuth, 1, 1, 5, true, ActionHold},
		{ClassAuth, 5, 5, 5, false, ActionRequeue},
		// Held deliveries are JetStream's, not the job's: on JetStream's last
		// delivery, a job with fewer own failures is requeued, not
		// dead-lettered...
		{ClassTransient, 3, 5, 5, false, ActionRequeue},
		{ClassTransient, 2, 4, 5, false, ActionRetry},
		// ...and a copy carrying earlier failures reaches the limit sooner.
		{ClassTransient, 5, 2, 5, false, ActionDeadLetter},
	}
	for _, tt := range tests {
		if got := Decide(tt.class, tt.own, tt.attempt, tt.md, tt.down); got != tt.want {
			t.Errorf("Decide(%q, own %d, attempt %d, %d, down=%v) = %v, want %v", tt.class, tt.own, tt.attempt, tt.md, tt.down, got, tt.want)
		}
	}
}

func TestClassifyGeneric(t *testing.T) {
	t.Parallel()
	_, decodeErr := messages.Decode([]byte("nope"))
	tests := []struct {
		err  error
		want Class
	}{
		{nil, ""},
		{decodeErr, ClassPermanent},
		{Permanent(errors.New("x")), ClassPermanent},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), ClassTransient},
		{errors.New("something odd"), ClassTransient},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	b := Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5}
	for attempt := 1; attempt <= 12; attempt++ {
		base := time.Second << (attempt - 1)
		lo, hi := base/2, base*3/2
		if base > time.Minute {
			lo, hi = time.Minute/2, time.Minute
		}
		for range 50 {
			d := b.Delay(attempt, 0)
			if d < lo || d > hi || d > time.Minute {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v] and <= max", attempt, d, lo, hi)
			}
		}
	}
	for range 50 {
		if d := b.Delay(1, 10*time.Second); d < 10*time.Second || d > 11*time.Second {
			t.Fatalf("Delay with Retry-After 10s = %v", d)
		}
	}
	// A Retry-After longer than Max is still honoured.
	if d := b.Delay(1, 2*time.Minute); d < 2*time.Minute {
		t.Fatalf("Delay with Retry-After 2m = %v", d)
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := NewRedactor("topsecret", "")
	in := "Authorization: Bearer abc.def-ghi and topsecret and eyJhbGciOiJI.eyJzdWIiOiIx.sig"
	out := r.Redact(in)
	for _, leak := range []string{"abc.def-ghi", "topsecret", "eyJhbGciOiJI"} {
		if strings.Contains(out, leak) {
			t.Errorf("Redact left %q in %q", leak, out)
		}
	}
}

func TestClassifyClientErrors(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("sync: %w", err) }
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"BC 400", &bcclient.APIError{Status: 400, Code: "BadRequest_InvalidToken"}, ClassPermanent},
		{"BC 401", &bcclient.APIError{Status: 401, Code: "Authentication_InvalidCredentials"}, ClassAuth},
		{"BC 403", &bcclient.APIError{Status: 403, Code: "Authorization_Unauthorized"}, ClassAuth},
		{"BC record not found", &bcclient.APIError{Status: 404, Code: "Internal_RecordNotFound"}, ClassNotFound},
		{"BC no row for a code", fmt.Errorf("no row: %w", bcclient.ErrNotFound), ClassNotFound},
		{"BC company not found", &bcclient.APIError{Status: 404, Code: "Internal_CompanyNotFound"}, ClassAuth},
		{"BC 408", &bcclient.APIError{Status: 408}, ClassTransient},
		{"BC 409 changed", &bcclient.APIError{Status: 409, Code: "Request_EntityChanged"}, ClassTransient},
		{"BC 429", &bcclient.APIError{Status: 429, Code: "Application_TooManyRequests"}, ClassThrottled},
		{"BC 500", &bcclient.APIError{Status: 500}, ClassTransient},
		{"BC 503", &bcclient.APIError{Status: 503}, ClassTransient},
		{"BC invalid key", fmt.Errorf("x: %w", bcclient.ErrInvalidKey), ClassPermanent},
		{"Entra wrong secret", &bcclient.TokenError{Status: 401, ErrorCode: "invalid_client", Codes: []int{7000215}}, ClassAuth},
		{"Entra unknown tenant", &bcclient.TokenError{Status: 400, Codes: []int{90002}}, ClassAuth},
		{"Entra throttled", &bcclient.TokenError{Status: 429}, ClassThrottled},
		{"Entra down", &bcclient.TokenError{Status: 503}, ClassTransient},
		{"iPaaS AUTH", &ipaasclient.APIError{Status: 401, Code: "AUTH-1001"}, ClassAuth},
		{"iPaaS AUTZ", &ipaasclient.APIError{Status: 403, Code: "AUTZ-1000"}, ClassAuth},
		{"iPaaS VALD", &ipaasclient.APIError{Status: 400, Code: "VALD-1049"}, ClassPermanent},
		{"iPaaS 422", &ipaasclient.APIError{Status: 422}, ClassPermanent},
		{"iPaaS INTL", &ipaasclient.APIError{Status: 500, Code: "INTL-1000"}, ClassTransient},
		{"iPaaS 429", &ipaasclient.APIError{Status: 429}, ClassThrottled},
		{"iPaaS 502 html", &ipaasclient.APIError{Status: 502}, ClassTransient},
		{"iPaaS NFND", &ipaasclient.APIError{Status: 404, Code: "NFND-1000"}, ClassNotFound},
		{"mapping", &mapping.Error{Field: "code", Problem: "missing"}, ClassPermanent},
		{"iPaaS invalid external id", fmt.Errorf("%w: control characters", ipaasclient.ErrInvalidExternalID), ClassPermanent},
		{"iPaaS unknown kind", fmt.Errorf("%w: widget", ipaasclient.ErrUnknownKind), ClassPermanent},
	}
	for _, tt := range tests {
		if got := Classify(wrap(tt.err)); got != tt.want {
			t.Errorf("%s: Classify = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A job fails on a throttled service: its redelivery waits at least the
// Retry-After that service gave, BC's, iPaaS.com's or Entra's.
func TestRetryAfterOfEveryService(t *testing.T) {
	for name, err := range map[string]error{
		"BC":        &bcclient.APIError{Status: 429, RetryAfter: 7 * time.Second},
		"iPaaS.com": &ipaasclient.APIError{Status: 429, RetryAfter: 7 * time.Second},
		"Entra":     &bcclient.TokenError{Status: 429, RetryAfter: 7 * time.Second},
	} {
		if d, ok := RetryAfter(fmt.Errorf("job: %w", err)); !ok || d != 7*time.Second {
			t.Errorf("%s: RetryAfter = %v, %v; want 7s", name, d, ok)
		}
	}
	if _, ok := RetryAfter(&bcclient.TokenError{Status: 401}); ok {
		t.Error("a token error without Retry-After gave one")
	}
}

// ipaas.md: "Network errors, 5xx and 429 are retried with backoff"; README:
// "throttled | 429 | held; the whole fleet slows down". An iPaaS.com 429 is
// throttling whatever code its body carries (iPaaS.com documents none for
// it): it must never be dead-lettered at once nor count toward
// dead-lettering.
func TestIPaaS429WithACodeIsThrottled(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"INTL-1000", "VALD-1100", "AUTZ-1010"} {
		err := &ipaasclient.APIError{Status: 429, Code: code, Message: "Too many requests for your plan"}
		if got := Classify(fmt.Errorf("sync: %w", err)); got != ClassThrottled {
			t.Errorf("429 %s: Classify = %q (first delivery: %s), want %q", code, got,
				Decide(got, 1, 1, 5, false), ClassThrottled)
		}
		// A 5xx is retried whatever its code, too.
		err = &ipaasclient.APIError{Status: 503, Code: code, Message: "unavailable"}
		if got := Classify(err); got != ClassTransient {
			t.Errorf("503 %s: Classify = %q, want %q", code, got, ClassTransient)
		}
	}
}

// A create whose answer is BIZL-1003 (an earlier attempt, whose answer was
// lost, created the record) is resolved by a look-up. When that look-up
// meets a passing 503, the job must be retried: the next attempt finds
// the link and updates. Classify finds the BIZL-1003 APIError first in
// the joined error and dead-letters the job at once.
func TestLinkConflictThenTransientLookupIsRetried(t *testing.T) {
	t.Parallel()
	fake := ipaastest.New(ipaastest.Options{})
	var lookups atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/LookupSpecial") && lookups.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"errors":[{"code":"INTL-1000","message":"Service unavailable"}]}`)
			return
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ip, err := ipaasclient.New(ipaasclient.Config{BaseURL: hs.URL, APIKey: fake.APIKey(), SystemID: fake.SystemID()})
	if err != nil {
		t.Fatal(err)
	}
	// The earlier attempt's record; with CreateFirst the look-up after the
	// refused create is the first one.
	if _, err := fake.Create(ipaastest.TableLocation, "EAST", map[string]any{"name": "EAST"}); err != nil {
		t.Fatal(err)
	}
	_, err = ip.Upsert(t.Context(), ipaasclient.Location{Name: "EAST", City: "Boston"}, "EAST", ipaasclient.CreateFirst())
	if err == nil {
		t.Fatal("upsert succeeded; the test wants its look-up to fail")
	}
	if got := Classify(err); got == ClassPermanent || got == ClassNotFound {
		t.Errorf("Classify(%v) = %q: %s on the first delivery, want a retry", err, got, Decide(got, 1, 1, 5, false))
	}
}
