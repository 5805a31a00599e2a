package bcclient_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/bcsync/bcsync/bcclient"
)

// stubCompanyID is the company id the stub answers.
const stubCompanyID = "11111111-2222-3333-4444-555555555555"

// stubRoot is the path every stub request starts with.
const stubRoot = "/v2.0/t/e/api/v2.0/"

// seen is a request the stub received.
type seen struct {
	Method, Path, RawQuery, Body string
	Header                       http.Header
}

// stub is a hand-written BC for one test: it answers the company lookup
// itself and passes every other request to handle.
type stub struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func (s *stub) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// newStub starts a stub and a Client for it (static token "test-token",
// fake clock). mods change the Config.
func newStub(t *testing.T, handle http.HandlerFunc, mods ...func(*bcclient.Config)) (*bcclient.Client, *stub, *fakeClock) {
	t.Helper()
	s := &stub{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == stubRoot+"companies" {
			fmt.Fprintf(w, `{"value":[{"id":%q,"name":"C","displayName":"C"}]}`, stubCompanyID)
			return
		}
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header.Clone()})
		s.mu.Unlock()
		handle(w, r)
	}))
	t.Cleanup(s.Close)
	cfg := bcclient.Config{
		APIURL: s.URL, TenantID: "t", Environment: "e", CompanyName: "C",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "test-token"}),
	}
	for _, m := range mods {
		m(&cfg)
	}
	c := newClient(t, cfg)
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	bcclient.SetClock(c, clock.Now, clock.Sleep)
	return c, s, clock
}

// fakeClock is the retry loop's clock: Sleep records the delay and moves
// the time on at once.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeClock) slept() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// bcError writes a BC error body.
func bcError(w http.ResponseWriter, status int, code string, header ...string) {
	for i := 0; i+1 < len(header); i += 2 {
		w.Header().Set(header[i], header[i+1])
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":"stub says %d. CorrelationId: 0f6a3c2e-1b4d-4e5f-8a9b-0c1d2e3f4a5b."}}`, code, status)
}

// sequence answers the i-th request with steps[i] (the last step repeats).
func sequence(steps ...http.HandlerFunc) http.HandlerFunc {
	var mu sync.Mutex
	i := 0
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		step := steps[min(i, len(steps)-1)]
		i++
		mu.Unlock()
		step(w, r)
	}
}

func fail(status int, code string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { bcError(w, status, code, header...) }
}

func okJSON(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

// locationJSON is a location row.
const locationJSON = `{"@odata.etag":"W/\"JzE5\"","id":"aaaaaaaa-0000-4000-8000-000000000001","code":"L1","displayName":"Main","lastModifiedDateTime":"2026-01-02T03:04:05.678Z"}`

func pathAfterRoot(p string) string { return strings.TrimPrefix(p, stubRoot) }
