package tokencache

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/broker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
)

// Identity names a token: one per (authority, tenant, client id, scope).
type Identity struct {
	AuthorityURL, TenantID, ClientID, Scope string
}

// Key is the KV key of the identity's token: a hash, so that no tenant or
// client id is spelled out in the bucket.
func (id Identity) Key() string {
	sum := sha256.Sum256([]byte(id.AuthorityURL + "\n" + id.TenantID + "\n" + id.ClientID + "\n" + id.Scope))
	return "token." + hex.EncodeToString(sum[:16])
}

func (id Identity) lockKey() string { return id.Key() + ".lock" }

// backoffKey holds, while Entra asked the fleet to wait (429 or
// Retry-After), the wait's length and status, never a token or secret; its
// TTL ends it by the store's clock.
func (id Identity) backoffKey() string { return id.Key() + ".backoff" }

// Config configures a Source.
type Config struct {
	// KV is the bucket (broker.BucketTokens). Required.
	KV jetstream.KeyValue
	// Identity names the token. Required.
	Identity Identity
	// Secret is the client secret: the encryption key is derived from it.
	// Required.
	Secret string
	// Fetch asks Entra for a new token, without caching. Required.
	Fetch func(ctx context.Context) (*oauth2.Token, error)
	// RefreshBefore is how long before expiry a token is refreshed.
	// Default: a tenth of its lifetime, at most 5 minutes.
	RefreshBefore time.Duration
	// LockTTL bounds a refresh: a worker that dies holding the lock blocks
	// refreshes no longer than this. Default 30s.
	LockTTL time.Duration
	// Wait bounds one Token call waiting for another worker's refresh.
	// Default 30s.
	Wait time.Duration
	// Log receives fallbacks and refresh failures (never a token).
	Log zerolog.Logger
	// Stats, when set, counts what happens.
	Stats *Stats
}

// Stats counts a Source's work. Safe for concurrent use.
type Stats struct {
	// Fetches are token requests this process made to Entra.
	Fetches atomic.Int64
	// Shared counts tokens taken from the bucket.
	Shared atomic.Int64
	// Waits counts waits for another worker's refresh.
	Waits atomic.Int64
	// Invalidations counts shared tokens removed after a 401.
	Invalidations atomic.Int64
	// Fallbacks counts tokens fetched locally because the bucket failed.
	Fallbacks atomic.Int64
}

// Source is an oauth2.TokenSource shared by the fleet. Safe for concurrent use.
type Source struct {
	cfg     Config
	aead    cipher.AEAD
	key     string
	lock    string
	backoff string

	mu           sync.Mutex // one Token sequence at a time in this process
	local        *oauth2.Token
	localRefresh time.Time
	// fellBack is set while the bucket is unreachable, to log once.
	fellBack bool
	// Until retryAt, Entra asked this process or the fleet to wait: Token
	// returns retryErr (or a still valid local token) without asking.
	retryAt  time.Time
	retryErr bcclient.TokenError
}

var _ oauth2.TokenSource = (*Source)(nil)

// New checks the configuration and derives the encryption key.
func New(cfg Config) (*Source, error) {
	var errs []error
	if cfg.KV == nil {
		errs = append(errs, errors.New("KV is required"))
	}
	if cfg.Secret == "" {
		errs = append(errs, errors.New("Secret is required (the encryption key derives from it)"))
	}
	if cfg.Fetch == nil {
		errs = append(errs, errors.New("Fetch is required"))
	}
	if cfg.Identity.TenantID == "" || cfg.Identity.ClientID == "" {
		errs = append(errs, errors.New("Identity needs TenantID and ClientID"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("tokencache: %w", errors.Join(errs...))
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 30 * time.Second
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 30 * time.Second
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	key := cfg.Identity.Key()
	k, err := hkdf.Key(sha256.New, []byte(cfg.Secret), []byte("bcsync/tokencache/v1"), key, 32)
	if err != nil {
		return nil, fmt.Errorf("tokencache: derive key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("tokencache: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("tokencache: %w", err)
	}
	return &Source{cfg: cfg, aead: aead, key: key, lock: cfg.Identity.lockKey(), backoff: cfg.Identity.backoffKey()}, nil
}

// Stats returns the source's counters.
func (s *Source) Stats() *Stats { return s.cfg.Stats }

// refreshAt is when tok should be replaced.
func (s *Source) refreshAt(tok *oauth2.Token, issued time.Time) time.Time {
	if tok.Expiry.IsZero() {
		return time.Time{}
	}
	before := s.cfg.RefreshBefore
	if before <= 0 {
		before = min(5*time.Minute, tok.Expiry.Sub(issued)/10)
	}
	return tok.Expiry.Add(-before)
}

// stored is the plaintext of a bucket entry.
type stored struct {
	Token   string    `json:"t"`
	Type    string    `json:"y"`
	Expiry  time.Time `json:"e"`
	Issued  time.Time `json:"i"`
	Refresh time.Time `json:"r"`
}

func (s *Source) seal(st stored) ([]byte, error) {
	plain, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(s.key)), nil
}

func (s *Source) open(b []byte) (stored, error) {
	var st stored
	n := s.aead.NonceSize()
	if len(b) < n {
		return st, errors.New("entry too short")
	}
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(s.key))
	if err != nil {
		// Another secret (rotated, or another app's) or a forged entry.
		return st, errors.New("entry does not decrypt with this client secret")
	}
	return st, json.Unmarshal(plain, &st)
}

func (st stored) token() *oauth2.Token {
	return &oauth2.Token{AccessToken: st.Token, TokenType: st.Type, Expiry: st.Expiry}
}

// fresh reports whether st can be used now without a refresh.
func (st stored) fresh(now time.Time) bool {
	return st.Token != "" && (st.Refresh.IsZero() || now.Before(st.Refresh))
}

// valid reports whether st can still be sent to BC: it has not expired,
// with a margin for the request's time in flight (a twentieth of its
// lifetime, at most 5s).
func (st stored) valid(now time.Time) bool {
	margin := min(5*time.Second, st.Expiry.Sub(st.Issued)/20)
	return st.Token != "" && (st.Expiry.IsZero() || now.Before(st.Expiry.Add(-margin)))
}

// Token returns the fleet's current token, refreshing it if this worker is
// the one to do so. While Microsoft Entra asked to wait (429, or
// Retry-After, answered to any worker of the fleet), it asks Entra nothing
// and returns a still valid token, or a *bcclient.TokenError whose
// RetryAfter is the wait left.
func (s *Source) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.local != nil && s.localFresh(now) {
		return s.local, nil
	}
	if now.Before(s.retryAt) {
		if s.local != nil && s.local.Expiry.After(now.Add(5*time.Second)) {
			return s.local, nil
		}
		e := s.retryErr
		e.RetryAfter = s.retryAt.Sub(now)
		return nil, &e
	}
	var err error
	if s.fellBack {
		// Trying the bucket again: one read, bounded, holds this process's
		// callers briefly. Only once it answers does the sequence run with
		// its usual time, which a slow Entra, or a wait for another
		// worker's refresh, may need.
		pctx, pcancel := context.WithTimeout(context.Background(), fallbackProbe)
		if _, perr := s.cfg.KV.Get(pctx, s.key); perr != nil && !errors.Is(perr, jetstream.ErrKeyNotFound) {
			err = perr
		}
		pcancel()
	}
	var tok *oauth2.Token
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Wait+s.cfg.LockTTL)
		defer cancel()
		tok, err = s.shared(ctx)
	}
	var fe *fetchError
	if errors.As(err, &fe) {
		return nil, fe.err // Entra's answer, as it is
	}
	if err != nil {
		// A context of its own: the bucket's calls may have used up ctx
		// (a NATS server gone hangs them until the deadline).
		fctx, fcancel := context.WithTimeout(context.Background(), s.cfg.LockTTL)
		defer fcancel()
		return s.fallback(fctx, err)
	}
	s.recovered()
	return tok, nil
}

// fallbackRetry is how often a process whose bucket failed tries it
// again; meanwhile its Token calls return its own token at once.
// fallbackProbe bounds the bucket's calls of such a try, during which the
// process's other Token calls wait.
const (
	fallbackRetry = 30 * time.Second
	fallbackProbe = 5 * time.Second
)

// localRefresh is when the cached copy must be looked up again.
func (s *Source) localFresh(now time.Time) bool {
	return s.local.Expiry.IsZero() || now.Before(s.localRefresh)
}

// fetchError is Entra's failure, as opposed to the bucket's.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }

// shared runs the sequence against the bucket. A *fetchError is Entra's
// answer; other errors mean the bucket failed.
func (s *Source) shared(ctx context.Context) (*oauth2.Token, error) {
	for {
		now := time.Now()
		entry, err := s.cfg.KV.Get(ctx, s.key)
		var cur stored
		var rev uint64
		switch {
		case err == nil:
			rev = entry.Revision()
			if st, oerr := s.open(entry.Value()); oerr == nil {
				cur = st
			}
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return nil, err
		}
		if cur.fresh(now) {
			s.cfg.Stats.Shared.Add(1)
			return s.keep(cur), nil
		}
		// The token is missing, due for refresh, or undecryptable: the
		// worker that creates the lock refreshes it.
		lockRev, err := s.cfg.KV.Create(ctx, s.lock, []byte("refreshing"), jetstream.KeyTTL(s.cfg.LockTTL))
		switch {
		case err == nil:
			// Someone may have refreshed between our read and our lock.
			if e, gerr := s.cfg.KV.Get(ctx, s.key); gerr == nil && e.Revision() != rev {
				if st, oerr := s.open(e.Value()); oerr == nil && st.fresh(time.Now()) {
					s.unlock(ctx, lockRev)
					s.cfg.Stats.Shared.Add(1)
					return s.keep(st), nil
				}
			}
			if s.fleetBackoff(ctx) {
				// Entra asked the fleet to wait: not another request.
				s.unlock(ctx, lockRev)
				if cur.valid(time.Now()) {
					s.cfg.Stats.Shared.Add(1)
					return s.keep(cur), nil
				}
				e := s.retryErr
				e.RetryAfter = time.Until(s.retryAt)
				return nil, &fetchError{&e}
			}
			return s.refresh(ctx, cur, lockRev)
		case broker.IsConflict(err):
			if cur.valid(now) {
				// Another worker is refreshing; the current one still works.
				s.cfg.Stats.Shared.Add(1)
				return s.keep(cur), nil
			}
			s.cfg.Stats.Waits.Add(1)
			if err := s.waitChange(ctx, rev); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// refresh fetches a new token while holding the lock (revision lockRev)
// and publishes it.
func (s *Source) refresh(ctx context.Context, cur stored, lockRev uint64) (*oauth2.Token, error) {
	defer s.unlock(ctx, lockRev)
	issued := time.Now()
	tok, err := s.cfg.Fetch(ctx)
	s.cfg.Stats.Fetches.Add(1)
	if err != nil {
		if d, ok := s.backOff(err, time.Now()); ok {
			s.shareBackoff(ctx, d)
		}
		if cur.valid(time.Now()) {
			s.cfg.Log.Warn().Err(err).Msg("refreshing the shared BC token failed; the current one is still valid")
			return s.keep(cur), nil
		}
		return nil, &fetchError{err}
	}
	st := stored{Token: tok.AccessToken, Type: tok.TokenType, Expiry: tok.Expiry, Issued: issued}
	if rt := s.refreshAt(tok, issued); !rt.IsZero() {
		st.Refresh = rt
	}
	sealed, err := s.seal(st)
	if err == nil {
		_, err = s.cfg.KV.Put(ctx, s.key, sealed)
	}
	if err != nil {
		// The token is good; the others will fetch their own or wait.
		s.cfg.Log.Warn().Err(err).Msg("could not share the new BC token through KV")
	}
	return s.keep(st), nil
}

// unlock releases the refresh lock taken at revision rev; if this fails,
// its TTL does. A lock that expired meanwhile and was taken by another
// worker (a refresh slower than the TTL) is that worker's, and stays.
func (s *Source) unlock(ctx context.Context, rev uint64) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.cfg.KV.Delete(dctx, s.lock, jetstream.LastRevision(rev))
}

// waitChange waits until the token entry changes from revision rev (or the
// lock is released, or its TTL ends), watching the bucket.
func (s *Source) waitChange(ctx context.Context, rev uint64) error {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Wait)
	defer cancel()
	w, err := s.cfg.KV.WatchFiltered(wctx, []string{s.key, s.lock}, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer w.Stop()
	// The refresher may have finished between our Get and the watch.
	if e, err := s.cfg.KV.Get(wctx, s.key); err == nil && e.Revision() != rev {
		return nil
	}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e != nil && (e.Key() == s.key || e.Operation() != jetstream.KeyValuePut) {
				return nil // a new token, or the lock went away
			}
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Waited long enough: go round again and take the lock.
			return nil
		}
	}
}

func (s *Source) keep(st stored) *oauth2.Token {
	s.local = st.token()
	s.localRefresh = st.Refresh
	if st.Refresh.IsZero() {
		s.localRefresh = st.Expiry
	}
	return s.local
}

// fallback fetches a token without the bucket, logging the first time.
func (s *Source) fallback(ctx context.Context, cause error) (*oauth2.Token, error) {
	if !s.fellBack {
		s.fellBack = true
		s.cfg.Log.Warn().Err(cause).Msg("token cache unreachable: this worker fetches its own BC tokens until it is back")
	}
	now := time.Now()
	if s.local != nil && s.local.Expiry.After(now.Add(5*time.Second)) {
		s.retryBucketAt(now)
		return s.local, nil
	}
	issued := time.Now()
	tok, err := s.cfg.Fetch(ctx)
	s.cfg.Stats.Fetches.Add(1)
	s.cfg.Stats.Fallbacks.Add(1)
	if err != nil {
		s.backOff(err, time.Now())
		return nil, err
	}
	st := stored{Token: tok.AccessToken, Type: tok.TokenType, Expiry: tok.Expiry, Issued: issued, Refresh: s.refreshAt(tok, issued)}
	tok = s.keep(st)
	s.retryBucketAt(time.Now())
	return tok, nil
}

// retryBucketAt has the local token used without the bucket until
// fallbackRetry from now (or until it is due for expiry): the bucket
// failed, and each try holds the process's callers up.
func (s *Source) retryBucketAt(now time.Time) {
	until := now.Add(fallbackRetry)
	if e := s.local.Expiry.Add(-5 * time.Second); !s.local.Expiry.IsZero() && e.Before(until) {
		until = e
	}
	if !now.Before(s.localRefresh) || until.Before(s.localRefresh) {
		s.localRefresh = until
	}
}

// Entra's requests to wait: a 429 without Retry-After waits
// defaultBackoff; no wait is longer than maxBackoff, so that a bogus
// header does not stop the fleet's tokens for long.
const (
	defaultBackoff = 5 * time.Second
	maxBackoff     = 10 * time.Minute
)

// backOff records, when err is Entra asking to wait (a 429, or any status
// with Retry-After), that this process asks again after the wait, and
// returns the wait.
func (s *Source) backOff(err error, now time.Time) (time.Duration, bool) {
	var te *bcclient.TokenError
	if !errors.As(err, &te) || (te.RetryAfter <= 0 && te.Status != http.StatusTooManyRequests) {
		return 0, false
	}
	d := te.RetryAfter
	if d <= 0 {
		d = defaultBackoff
	}
	d = min(d, maxBackoff)
	s.retryAt, s.retryErr = now.Add(d), *te
	return d, true
}

// backoffValue is the plaintext of the back-off key: how long Entra asked
// to wait, and with which HTTP status.
type backoffValue struct {
	Status int           `json:"status"`
	Wait   time.Duration `json:"wait"`
}

// shareBackoff tells the fleet to wait d before it asks Entra again: a key
// whose TTL (whole seconds, rounded up) ends the wait by the store's clock.
// A key already there (another worker's wait) stays.
func (s *Source) shareBackoff(ctx context.Context, d time.Duration) {
	v, _ := json.Marshal(backoffValue{Status: s.retryErr.Status, Wait: d})
	ttl := max(time.Second, (d + time.Second - 1).Truncate(time.Second))
	if _, err := s.cfg.KV.Create(ctx, s.backoff, v, jetstream.KeyTTL(ttl)); err != nil && !broker.IsConflict(err) {
		s.cfg.Log.Warn().Err(err).Msg("could not share Entra's request to wait through KV")
	}
}

// fleetBackoff reports whether another worker recorded that Entra asked
// the fleet to wait, and if so has this process wait too: for what is left
// of the wait by the time the store wrote it (its clock), at most the
// whole wait.
func (s *Source) fleetBackoff(ctx context.Context) bool {
	e, err := s.cfg.KV.Get(ctx, s.backoff)
	if err != nil {
		return false // none, or the bucket failed: the lock holder asks Entra
	}
	var v backoffValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Wait <= 0 {
		return false
	}
	now := time.Now()
	left := min(max(time.Until(e.Created().Add(v.Wait)), time.Second), v.Wait)
	s.retryAt = now.Add(left)
	s.retryErr = bcclient.TokenError{Status: v.Status,
		Description: "Microsoft Entra asked the fleet to wait before it requests a token again (another worker's request was throttled)"}
	return true
}

func (s *Source) recovered() {
	if s.fellBack {
		s.fellBack = false
		s.cfg.Log.Info().Msg("token cache reachable again")
	}
}

// Invalidate drops tok, which BC refused (401), from this process and from
// the bucket, unless the bucket already holds a newer token. Concurrent
// invalidations of one token remove it once.
func (s *Source) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local != nil && s.local.AccessToken == tok.AccessToken {
		s.local = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := s.cfg.KV.Get(ctx, s.key)
	if err != nil {
		return
	}
	st, err := s.open(e.Value())
	if err != nil || st.Token != tok.AccessToken {
		return
	}
	if s.cfg.KV.Delete(ctx, s.key, jetstream.LastRevision(e.Revision())) == nil {
		s.cfg.Stats.Invalidations.Add(1)
	}
}
