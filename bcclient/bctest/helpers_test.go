package bctest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
)

// clock is a fake clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// result is the outcome of fetch.
type result struct {
	status int
	header http.Header
	body   map[string]any
	err    error
}

// fetch sends a request and decodes its JSON answer. It does not use t, so
// goroutines may call it.
func fetch(ctx context.Context, method, u, tok, body string, header ...string) result {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return result{err: err}
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, err: err}
	if len(b) > 0 && err == nil {
		r.err = json.Unmarshal(b, &r.body)
	}
	return r
}

// send is fetch for the test goroutine: path is relative to s.URL().
func send(t *testing.T, s *bctest.Server, tok, method, path, body string, header ...string) result {
	t.Helper()
	r := fetch(t.Context(), method, s.URL()+path, tok, body, header...)
	if r.err != nil {
		t.Fatalf("%s %s: %v", method, path, r.err)
	}
	return r
}

// parallel sends n GETs of path at once and returns their results.
func parallel(ctx context.Context, s *bctest.Server, tok, path string, n int) []result {
	out := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = fetch(ctx, http.MethodGet, s.URL()+path, tok, "")
		}()
	}
	wg.Wait()
	return out
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func errorMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// values returns the "value" rows of a collection body.
func values(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	raw, ok := body["value"].([]any)
	if !ok {
		t.Fatalf("no value array in %v", body)
	}
	rows := make([]map[string]any, len(raw))
	for i, r := range raw {
		rows[i] = r.(map[string]any)
	}
	return rows
}

// listAll follows next links from path and returns every row and the
// number of pages.
func listAll(t *testing.T, s *bctest.Server, tok, path string, pageSize int) ([]map[string]any, int) {
	t.Helper()
	var rows []map[string]any
	pages := 0
	next := s.URL() + path
	for next != "" {
		r := fetch(t.Context(), http.MethodGet, next, tok, "", "Prefer", "odata.maxpagesize="+strconv.Itoa(pageSize))
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %v %v", next, r.status, r.err, r.body)
		}
		pages++
		page := values(t, r.body)
		if len(page) > pageSize {
			t.Fatalf("page of %d rows, asked %d", len(page), pageSize)
		}
		rows = append(rows, page...)
		next, _ = r.body["@odata.nextLink"].(string)
	}
	return rows, pages
}
