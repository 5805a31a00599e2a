package tokencache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/tokencache"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// entra is a token endpoint stand-in that counts requests.
type entra struct {
	lifetime time.Duration
	delay    time.Duration
	fail     atomic.Bool
	n        atomic.Int64
	// hook, when set, runs in the n-th request before it answers; an error
	// is the answer.
	hook func(n int64) error
}

func (e *entra) fetch(ctx context.Context) (*oauth2.Token, error) {
	n := e.n.Add(1)
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	if e.fail.Load() {
		return nil, errors.New("AADSTS7000215: invalid client secret")
	}
	if e.hook != nil {
		if err := e.hook(n); err != nil {
			return nil, err
		}
	}
	return &oauth2.Token{AccessToken: fmt.Sprintf("access-token-%d-%d", n, time.Now().UnixNano()), TokenType: "Bearer", Expiry: time.Now().Add(e.lifetime)}, nil
}

var testID = tokencache.Identity{AuthorityURL: "https://login.example", TenantID: "t1", ClientID: "c1", Scope: "s"}

// fleet makes n sources on n separate NATS connections to one server.
func fleet(t *testing.T, n int, e *entra, secret string, log zerolog.Logger) ([]*tokencache.Source, jetstream.KeyValue) {
	t.Helper()
	b := brokertest.New(t)
	var first jetstream.KeyValue
	var out []*tokencache.Source
	for range n {
		kv := brokertest.KV(t, b, broker.BucketTokens)
		if first == nil {
			first = kv
		}
		s, err := tokencache.New(tokencache.Config{KV: kv, Identity: testID, Secret: secret, Fetch: e.fetch, LockTTL: 2 * time.Second, Wait: 5 * time.Second, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out, first
}

func TestOneFetchForTheWholeFleet(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour, delay: 50 * time.Millisecond}
	srcs, _ := fleet(t, 3, e, "secret-1", zerolog.Nop())
	var wg sync.WaitGroup
	tokens := make(chan string, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := srcs[i%3].Token()
			if err != nil {
				t.Error(err)
				return
			}
			tokens <- tok.AccessToken
		}()
	}
	wg.Wait()
	close(tokens)
	seen := map[string]bool{}
	for tok := range tokens {
		seen[tok] = true
	}
	if e.n.Load() != 1 || len(seen) != 1 {
		t.Errorf("%d token requests and %d distinct tokens for 30 callers in 3 workers, want 1 and 1", e.n.Load(), len(seen))
	}
}

func TestOneRefreshPerLifetime(t *testing.T) {
	t.Parallel()
	const lifetime, run = 2 * time.Second, 9 * time.Second
	e := &entra{lifetime: lifetime}
	srcs, _ := fleet(t, 3, e, "secret-1", zerolog.Nop())
	deadline := time.Now().Add(run)
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				tok, err := s.Token()
				if err != nil {
					t.Error(err)
					return
				}
				if !tok.Expiry.After(time.Now()) {
					t.Error("got an expired token")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	// Refreshed at 90% of each lifetime: run/(0.9*lifetime) lifetimes, +1 for the first.
	maxWant := int64(float64(run)/(0.9*float64(lifetime))) + 1
	if n := e.n.Load(); n > maxWant || n < int64(run/lifetime) {
		t.Errorf("%d token requests over %v with a %v lifetime and 3 workers, want %d..%d", n, run, lifetime, run/lifetime, maxWant)
	}
}

func TestStoredTokenIsEncrypted(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour}
	srcs, kv := fleet(t, 1, e, "secret-1", zerolog.Nop())
	tok, err := srcs[0].Token()
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), testID.Key())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(entry.Value(), []byte(tok.AccessToken)) || bytes.Contains(entry.Value(), []byte("access-token")) {
		t.Fatal("the bucket holds the bearer token in clear")
	}
	for _, part := range []string{testID.TenantID, testID.ClientID} {
		if strings.Contains(testID.Key(), part) {
			t.Errorf("key %q spells out %q", testID.Key(), part)
		}
	}
	// A worker with another secret cannot use it: it fetches its own.
	other, err := tokencache.New(tokencache.Config{KV: kv, Identity: testID, Secret: "another-secret", Fetch: e.fetch})
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := other.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok.AccessToken || e.n.Load() != 2 {
		t.Errorf("a source with another secret read the token (requests %d)", e.n.Load())
	}
}

func TestInvalidateAfter401(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour}
	srcs, _ := fleet(t, 2, e, "secret-1", zerolog.Nop())
	old, err := srcs[0].Token()
	if err != nil {
		t.Fatal(err)
	}
	if t2, _ := srcs[1].Token(); t2.AccessToken != old.AccessToken {
		t.Fatal("second worker did not share the token")
	}
	// Both workers get a 401 with the same token: one new token for both.
	srcs[0].Invalidate(old)
	srcs[1].Invalidate(old)
	n1, _ := srcs[0].Token()
	n2, _ := srcs[1].Token()
	if n1.AccessToken == old.AccessToken || n1.AccessToken != n2.AccessToken || e.n.Load() != 2 {
		t.Errorf("after invalidation: %d token requests, shared=%v", e.n.Load(), n1.AccessToken == n2.AccessToken)
	}
	// A late 401 for the old token does not throw away the new one.
	srcs[0].Invalidate(old)
	if n3, _ := srcs[1].Token(); n3.AccessToken != n1.AccessToken || e.n.Load() != 2 {
		t.Error("a stale invalidation removed the current token")
	}
	if got := srcs[0].Stats().Invalidations.Load() + srcs[1].Stats().Invalidations.Load(); got != 1 {
		t.Errorf("%d invalidations recorded, want 1", got)
	}
}

func TestDeadRefresherBlocksNoLongerThanTheLockTTL(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour}
	srcs, kv := fleet(t, 1, e, "secret-1", zerolog.Nop())
	// A worker took the lock and died: no token, a lock with a 2s TTL.
	if _, err := kv.Create(context.Background(), testID.Key()+".lock", []byte("x"), jetstream.KeyTTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tok, err := srcs[0].Token()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("Token = %v, %v", tok, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("waited %v for a dead worker's lock with a 2s TTL", took)
	}
	if e.n.Load() != 1 {
		t.Errorf("%d token requests, want 1", e.n.Load())
	}
}

// A refresher slower than the lock's TTL must not release the lock of the
// worker that took it over after it expired: a third worker would then
// request a token as well.
func TestSlowRefresherLeavesTheNextOnesLock(t *testing.T) {
	t.Parallel()
	secondFetching, release := make(chan struct{}), make(chan struct{})
	e := &entra{lifetime: time.Hour}
	e.hook = func(n int64) error {
		switch n {
		case 1: // outlives its 2 s lock, until the second worker fetches
			select {
			case <-secondFetching:
			case <-time.After(10 * time.Second):
			}
			return errors.New("AADSTS50058: slow and failed")
		case 2: // holds the lock it took over while the first one gives up
			close(secondFetching)
			<-release
		}
		return nil
	}
	srcs, _ := fleet(t, 3, e, "secret-1", zerolog.Nop())
	first := make(chan error, 1)
	go func() { _, err := srcs[0].Token(); first <- err }()
	for e.n.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { _, err := srcs[1].Token(); second <- err }()
	if err := <-first; err == nil || !strings.Contains(err.Error(), "AADSTS50058") {
		t.Fatalf("first worker's Token = %v, want its failed request", err)
	}
	third := make(chan error, 1)
	go func() { _, err := srcs[2].Token(); third <- err }()
	select {
	case err := <-third:
		t.Errorf("third worker's Token returned (%v) while the second one held the lock", err)
	case <-time.After(time.Second):
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-third:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("third worker's Token did not return after the second one shared its token")
	}
	if got := e.n.Load(); got != 2 {
		t.Errorf("%d token requests, want 2 (the first, failed, and the second's)", got)
	}
}

func TestFetchFailureIsReturnedAndLockReleased(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour}
	e.fail.Store(true)
	srcs, _ := fleet(t, 1, e, "secret-1", zerolog.Nop())
	if _, err := srcs[0].Token(); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("Token with a failing Entra = %v", err)
	}
	e.fail.Store(false)
	start := time.Now()
	if _, err := srcs[0].Token(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 1500*time.Millisecond { // a lock left behind holds for its 2 s TTL
		t.Error("the failed refresh left its lock behind")
	}
}

func TestFallsBackWhenTheBucketIsGone(t *testing.T) {
	t.Parallel()
	e := &entra{lifetime: time.Hour}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := zerolog.New(zerolog.SyncWriter(&lockedWriter{mu: &mu, w: &logs}))
	b := brokertest.New(t)
	kvs, err := broker.EnsureKV(context.Background(), b.JS, broker.KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tokencache.New(tokencache.Config{KV: kvs[broker.BucketTokens], Identity: testID, Secret: "secret-1", Fetch: e.fetch, Wait: time.Second, LockTTL: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.JS.DeleteKeyValue(context.Background(), broker.BucketTokens); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token()
	if err != nil || !tok.Valid() {
		t.Fatalf("Token without a bucket = %v, %v", tok, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "token cache unreachable") || s.Stats().Fallbacks.Load() != 1 {
		t.Errorf("fallback not reported: %q", logs.String())
	}
	if strings.Contains(logs.String(), tok.AccessToken) {
		t.Error("the token was logged")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
