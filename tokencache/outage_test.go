package tokencache_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/tokencache"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// With NATS down and a token that is due for refresh but still valid for
// minutes, the source falls back to it; it must not make every later
// Token call wait out the bucket's timeout (Wait+LockTTL, 60 s by default)
// again, one caller after the other under its mutex.
func TestFallbackWithNATSDownDoesNotWaitAtEveryCall(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour}
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketTokens)
	// Refresh due 1 s after the fetch, expiry in an hour (as a real token
	// is during the last 5 minutes of its life).
	s, err := tokencache.New(tokencache.Config{KV: kv, Identity: testID, Secret: "secret-1", Fetch: e.fetch,
		RefreshBefore: time.Hour - time.Second, LockTTL: time.Second, Wait: time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // due for refresh, valid for an hour
	b.Close()                           // NATS is down
	const callers = 5
	start := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, callers)
	for i := range callers {
		wg.Go(func() {
			if _, err := s.Token(); err != nil {
				t.Error(err)
			}
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	longest := time.Since(start)
	t.Logf("calls returned after %v; %d token requests", took, e.n.Load())
	// One bucket timeout is Wait+LockTTL = 2 s here.
	if longest > 5*time.Second {
		t.Errorf("%d Token calls with NATS down and a valid token took %v: each waited out the bucket again", callers, longest.Round(time.Millisecond))
	}
}

// Entra throttles the token request (429, Retry-After: 20). The jobs of
// the fleet's workers that need a token meanwhile must not each ask Entra
// again: the fleet's one token request per lifetime became one per job
// attempt, against a service that asked it to wait.
func TestEntraRetryAfterIsSharedByTheFleet(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entraSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":"temporarily_unavailable","error_description":"AADSTS50196: too many requests","error_codes":[50196]}`)
	}))
	t.Cleanup(entraSrv.Close)
	fetch, err := bcclient.Credentials{AuthorityURL: entraSrv.URL, TenantID: "t1", ClientID: "c1", ClientSecret: "secret-1"}.Fetcher()
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.New(t)
	kv := brokertest.KV(t, b, broker.BucketTokens)
	var srcs []*tokencache.Source
	for range 3 { // three workers
		s, err := tokencache.New(tokencache.Config{KV: brokertest.KV(t, b, broker.BucketTokens), Identity: testID,
			Secret: "secret-1", Fetch: fetch, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, s)
	}
	var wg sync.WaitGroup
	for i := range 24 { // 8 jobs per worker, each asking once
		wg.Go(func() {
			_, err := srcs[i%3].Token()
			var te *bcclient.TokenError
			switch {
			case err == nil:
				t.Error("a token from a throttled Entra")
			case !errors.As(err, &te) || te.RetryAfter <= 0 || te.RetryAfter > 20*time.Second:
				t.Errorf("Token = %v, want a TokenError with Entra's Retry-After", err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d token requests reached Entra", calls.Load())
	if n := calls.Load(); n > 3 {
		t.Errorf("Entra answered 429 with Retry-After: 20, and the fleet asked it %d times within a moment", n)
	}
	// What the fleet shares holds the wait, never a secret or a token.
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			continue
		}
		if strings.Contains(string(e.Value()), "secret-1") || strings.Contains(string(e.Value()), "AADSTS") {
			t.Errorf("key %s holds %q", k, e.Value())
		}
	}
}

// Once Entra's Retry-After has passed, the fleet asks it again.
func TestEntraIsAskedAgainAfterRetryAfter(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entraSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"temporarily_unavailable","error_codes":[50196]}`)
			return
		}
		fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"tok-2"}`)
	}))
	t.Cleanup(entraSrv.Close)
	fetch, err := bcclient.Credentials{AuthorityURL: entraSrv.URL, TenantID: "t1", ClientID: "c1", ClientSecret: "secret-1"}.Fetcher()
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.New(t)
	var srcs []*tokencache.Source
	for range 2 {
		s, err := tokencache.New(tokencache.Config{KV: brokertest.KV(t, b, broker.BucketTokens), Identity: testID,
			Secret: "secret-1", Fetch: fetch, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, s)
	}
	if _, err := srcs[0].Token(); err == nil {
		t.Fatal("a token from a throttled Entra")
	}
	if _, err := srcs[1].Token(); err == nil {
		t.Fatal("the other worker asked Entra during its Retry-After")
	}
	var tok string
	deadline := time.Now().Add(10 * time.Second)
	for tok == "" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if got, err := srcs[1].Token(); err == nil {
			tok = got.AccessToken
		}
	}
	if tok != "tok-2" || calls.Load() != 2 {
		t.Errorf("after Retry-After: token %q, %d token requests; want tok-2 from the second request", tok, calls.Load())
	}
}

// After a fallback, the bucket is probed briefly; the 5 s bound once cut
// short the token request itself too, so a slow Entra gave no token.
// downKV is a bucket whose reads fail while down is set, as with NATS
// unreachable.
type probeDownKV struct {
	jetstream.KeyValue
	down atomic.Bool
}

func (k *probeDownKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.down.Load() {
		return nil, errors.New("nats: timeout (NATS unreachable)")
	}
	return k.KeyValue.Get(ctx, key)
}

// After a fallback, the 5s bound meant for the bucket's probe also bounds
// the refresh the probe leads to: once NATS is back, the worker that takes
// the refresh lock asks Entra with what is left of 5s, and every Token call
// fails while Entra takes longer than that, although Wait+LockTTL (60s
// here) allows it.
func TestProbeBoundDoesNotCutEntraShort(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	fetch := func(ctx context.Context) (*oauth2.Token, error) {
		i := n.Add(1)
		if i > 1 { // Entra answers in 6s, as it does under load
			select {
			case <-time.After(6 * time.Second):
			case <-ctx.Done():
				return nil, fmt.Errorf("token request: %w", ctx.Err())
			}
		}
		return &oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", i), TokenType: "Bearer", Expiry: time.Now().Add(7 * time.Second)}, nil
	}
	b := brokertest.New(t)
	kv := &probeDownKV{KeyValue: brokertest.KV(t, b, broker.BucketTokens)}
	s, err := tokencache.New(tokencache.Config{KV: kv, Identity: testID, Secret: "secret-1", Fetch: fetch,
		LockTTL: 30 * time.Second, Wait: 30 * time.Second, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	kv.down.Store(true)
	if _, err := s.Token(); err != nil { // falls back to its own token
		t.Fatal(err)
	}
	kv.down.Store(false)                // NATS is back
	time.Sleep(2100 * time.Millisecond) // the local token is due (expiry less 5s)
	start := time.Now()
	tok, err := s.Token()
	if err != nil {
		t.Errorf("Token after NATS came back, with Entra answering in 6s: %v after %v", err, time.Since(start).Round(time.Millisecond))
	} else {
		t.Logf("token %s after %v", tok.AccessToken, time.Since(start).Round(time.Millisecond))
	}
}
