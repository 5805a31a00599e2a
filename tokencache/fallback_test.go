package tokencache_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/tokencache"
	"github.com/rs/zerolog"
)

// TestFallsBackWhenNATSIsDown: the NATS server goes away (the worker's
// connection keeps reconnecting, as broker.Connect configures it), so the
// bucket's calls hang until their deadline. The source then fetches its own
// token; it once did so with the context the bucket's calls had used up,
// so the real Fetcher (which honours its context) never reached Entra.
func TestFallsBackWhenNATSIsDown(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entraSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"tok-1"}`)
	}))
	t.Cleanup(entraSrv.Close)
	fetch, err := bcclient.Credentials{AuthorityURL: entraSrv.URL, TenantID: "t1", ClientID: "c1", ClientSecret: "secret-1"}.Fetcher()
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketTokens)
	s, err := tokencache.New(tokencache.Config{KV: kv, Identity: testID, Secret: "secret-1", Fetch: fetch,
		LockTTL: time.Second, Wait: time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // NATS is down; the worker's connection reconnects forever
	start := time.Now()
	tok, err := s.Token()
	if err != nil || tok == nil || tok.AccessToken != "tok-1" {
		t.Errorf("Token with NATS down = %v, %v after %v (%d token requests reached Entra); want the fallback's own token",
			tok, err, time.Since(start).Round(time.Millisecond), calls.Load())
	}
}
