package tokencache_test

import (
	"sync"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/tokencache"
	"github.com/rs/zerolog"
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
