package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/config"
	"github.com/bcsync/bcsync/throttle"
	"github.com/bcsync/bcsync/tokencache"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Shared is what a worker's subscriptions share with the rest of the fleet
// through NATS KV: one token and one request budget per BC app registration
// (BC's limits belong to the client id, not to a worker), and one budget per
// iPaaS.com account. Subscriptions that use the same app registration in one
// process share the same objects; the first one's throttling settings win.
type Shared struct {
	tokensKV, throttleKV jetstream.KeyValue
	// recreateThrottle makes the throttle bucket again when a NATS restart
	// lost it (it is kept in memory).
	recreateThrottle func(ctx context.Context) error
	log              zerolog.Logger

	mu      sync.Mutex
	tokens  map[string]*tokencache.Source
	budgets map[string]*throttle.Fleet
}

// NewShared creates or opens the KV buckets.
func NewShared(ctx context.Context, js jetstream.JetStream, replicas int, log zerolog.Logger) (*Shared, error) {
	kvs, err := broker.EnsureKV(ctx, js, broker.KVOptions{Replicas: replicas})
	if err != nil {
		return nil, err
	}
	recreate := func(ctx context.Context) error {
		_, err := broker.EnsureKV(ctx, js, broker.KVOptions{Replicas: replicas, CreateOnly: true})
		return err
	}
	return &Shared{
		tokensKV: kvs[broker.BucketTokens], throttleKV: kvs[broker.BucketThrottle], recreateThrottle: recreate, log: log,
		tokens: map[string]*tokencache.Source{}, budgets: map[string]*throttle.Fleet{},
	}, nil
}

// Close stops the budgets' watches.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.budgets {
		b.Close()
	}
}

// SharedStats sums the counters of a process's shared tokens and budgets.
type SharedStats struct {
	// TokenFetches are token requests this process made to Entra.
	TokenFetches int64
	// Granted, Waited (ns), RateWaits, LeaseWaits and Pauses (429s or
	// Retry-After reported by a service) are summed over the budgets.
	Granted, Waited, RateWaits, LeaseWaits, Pauses int64
	// Restamped counts permits moved to a later slot because the KV store
	// answered after their slot ended; Stale those left counted and unused.
	Restamped, Stale int64
	// LeasesCreated, LeasesReused and LeasesDeleted count concurrency
	// leases taken from the bucket, requests served by a lease this process
	// already held, and leases given back.
	LeasesCreated, LeasesReused, LeasesDeleted int64
}

// Stats returns the counters.
func (s *Shared) Stats() SharedStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st SharedStats
	for _, t := range s.tokens {
		st.TokenFetches += t.Stats().Fetches.Load()
	}
	for _, b := range s.budgets {
		bs := b.Stats()
		st.Granted += bs.Granted.Load()
		st.Waited += bs.Waited.Load()
		st.RateWaits += bs.RateWaits.Load()
		st.LeaseWaits += bs.LeaseWaits.Load()
		st.Pauses += bs.Pauses.Load()
		st.Stale += bs.Stale.Load()
		st.Restamped += bs.Restamped.Load()
		st.LeasesCreated += bs.LeasesCreated.Load()
		st.LeasesReused += bs.LeasesReused.Load()
		st.LeasesDeleted += bs.LeasesDeleted.Load()
	}
	return st
}

func hashName(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil)[:12])
}

// tokenSource returns the fleet's token source of the subscription's app
// registration.
func (s *Shared) tokenSource(sub *config.Subscription, creds bcclient.Credentials) (oauth2.TokenSource, error) {
	id := tokencache.Identity{AuthorityURL: sub.AuthorityURL, TenantID: sub.TenantID, ClientID: sub.ClientID, Scope: sub.Scope}
	// A new secret (rotated, or corrected after it was refused) gets a new
	// source; the fleet's token stays keyed by the identity.
	key := id.Key() + hashName("/", sub.ClientSecret.Reveal())
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts, ok := s.tokens[key]; ok {
		return ts, nil
	}
	fetch, err := creds.Fetcher()
	if err != nil {
		return nil, err
	}
	ts, err := tokencache.New(tokencache.Config{
		KV: s.tokensKV, Identity: id, Secret: sub.ClientSecret.Reveal(), Fetch: fetch,
		Log: s.log.With().Str("component", "tokencache").Str("client_id", sub.ClientID).Logger(),
	})
	if err != nil {
		return nil, err
	}
	s.tokens[key] = ts
	return ts, nil
}

// budget returns the fleet-wide budget called name, made with t.
func (s *Shared) budget(name string, t config.Throttling) (*throttle.Fleet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.budgets[name]; ok {
		return b, nil
	}
	b, err := throttle.NewFleet(throttle.FleetConfig{
		KV: s.throttleKV, Name: name, Requests: t.RequestsPerWindow, Window: t.Window, MaxConcurrency: t.MaxConcurrency,
		Recreate: s.recreateThrottle, Log: s.log.With().Str("component", "throttle").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("worker: budget %s: %w", name, err)
	}
	s.budgets[name] = b
	return b, nil
}

// bcBudget names the budget of a BC app registration.
func bcBudget(sub *config.Subscription) string {
	return hashName("bc-", sub.AuthorityURL, sub.TenantID, sub.ClientID)
}

// ipaasBudget names the budget of an iPaaS.com account.
func ipaasBudget(sub *config.Subscription) string {
	return hashName("ipaas-", sub.IPaaS.BaseURL, strconv.Itoa(sub.IPaaS.SystemID), sub.IPaaS.ClientID)
}
