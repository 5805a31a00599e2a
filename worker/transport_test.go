package worker

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dials counts the connections that rounds of n requests at once open to
// one server through rt.
func dials(t *testing.T, rt http.RoundTripper, n, rounds int) int64 {
	t.Helper()
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond) // so that the n overlap
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := &http.Client{Transport: rt}
	for range rounds {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			})
		}
		wg.Wait()
	}
	return opened.Load()
}

// With more requests at once to one host than http.DefaultTransport keeps
// idle (2), the default closes most connections after their request and
// dials again; the worker's transport keeps them.
func TestPooledTransportReusesConnections(t *testing.T) {
	t.Parallel()
	const n, rounds = 32, 3
	if got := dials(t, pooled(nil).Transport, n, rounds); got > n+n/4 {
		t.Errorf("%d rounds of %d requests at once opened %d connections, want about %d", rounds, n, got, n)
	}
	// The control: the default transport does dial again, so the check
	// above can tell.
	def := http.DefaultTransport.(*http.Transport).Clone()
	defer def.CloseIdleConnections()
	if got := dials(t, def, n, rounds); got < 2*n {
		t.Errorf("the default transport opened only %d connections for %d rounds of %d", got, rounds, n)
	}
}

func TestPooledKeepsTheCallersSettings(t *testing.T) {
	t.Parallel()
	if c := pooled(nil); c.Transport != pooledTransport {
		t.Error("no client: not the pooled transport")
	}
	c := pooled(&http.Client{Timeout: 7 * time.Second})
	if c.Transport != pooledTransport || c.Timeout != 7*time.Second {
		t.Errorf("a client without transport: got %T, timeout %v", c.Transport, c.Timeout)
	}
	own := &http.Transport{}
	if c := pooled(&http.Client{Transport: own}); c.Transport != own {
		t.Error("a client's own transport was replaced")
	}
}
