package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
)

// recordLockEnv is one embedded JetStream seen by two workers, each on its
// own connection.
type recordLockEnv struct {
	kvA, kvB jetstream.KeyValue
	a, b     *worker.RecordLocks
}

func newRecordLockEnv(t *testing.T, ttl time.Duration) *recordLockEnv {
	t.Helper()
	b := brokertest.New(t)
	e := &recordLockEnv{kvA: brokertest.KV(t, b, broker.BucketRecords), kvB: brokertest.KV(t, b, broker.BucketRecords)}
	if e.kvA == nil || e.kvB == nil {
		t.Fatalf("no %s bucket", broker.BucketRecords)
	}
	e.a, e.b = worker.NewRecordLocks(b.JS, e.kvA, ttl), worker.NewRecordLocks(b.JS, e.kvB, ttl)
	return e
}

// record names a record in the tests.
type record struct {
	sub string
	typ messages.Type
	key string
}

var testRecord = record{"contoso", messages.TypeCustomer, "C00010"}

func lockRecord(ctx context.Context, l *worker.RecordLocks, r record, owner string) (*worker.RecordLock, error) {
	return l.Lock(ctx, r.sub, r.typ, r.key, owner)
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestNewRecordLocksTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want time.Duration }{
		{0, worker.DefaultRecordLockTTL},
		{-time.Second, worker.DefaultRecordLockTTL},
		{time.Nanosecond, time.Second},
		{300 * time.Millisecond, time.Second},
		{time.Second, time.Second},
		{1200 * time.Millisecond, 2 * time.Second},
		{90 * time.Second, 90 * time.Second},
	} {
		if got := worker.NewRecordLocks(nil, nil, tc.in).TTL(); got != tc.want {
			t.Errorf("NewRecordLocks(ttl %v).TTL() = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestRecordLockMutualExclusion(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 30*time.Second)
	const goroutines, iterations = 20, 10
	var inside, overlaps, done atomic.Int32
	var wg sync.WaitGroup
	for g := range goroutines {
		locks := e.a
		if g%2 == 1 {
			locks = e.b
		}
		owner := fmt.Sprintf("worker-%d", g)
		wg.Go(func() {
			for range iterations {
				l, err := lockRecord(ctx, locks, testRecord, owner)
				if err != nil {
					t.Errorf("%s: Lock: %v", owner, err)
					return
				}
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				time.Sleep(time.Millisecond) // the window an overlap would show in
				inside.Add(-1)
				if err := l.Unlock(ctx); err != nil {
					t.Errorf("%s: Unlock: %v", owner, err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d times two holders were inside at once", n)
	}
	if n := done.Load(); n != goroutines*iterations {
		t.Errorf("%d iterations completed, want %d", n, goroutines*iterations)
	}
}

func TestRecordLockDifferentRecordsDoNotBlock(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0) // a blocked Lock would wait minutes
	long := strings.Repeat("K", 300)
	records := []record{
		testRecord,
		{"contoso", messages.TypeCustomer, "C00011"},
		{"contoso", messages.TypeCustomer, "c00010"},
		{"contoso", messages.TypeProduct, "C00010"},
		{"fabrikam", messages.TypeCustomer, "C00010"},
		{"contoso", messages.TypeLocation, "A.B"},
		{"contoso", messages.TypeLocation, "A_B"},
		{"contoso", messages.TypeLocation, "A-B"},
		{"contoso", messages.TypeLocation, "A B/*>~="},
		{"contoso", messages.TypeLocation, ""},
		{"contoso", messages.TypeLocation, "_all"},
		{"contoso", messages.TypeLocation, long + "1"},
		{"contoso", messages.TypeLocation, long + "2"},
	}
	ctx := testContext(t, 10*time.Second)
	for i, r := range records {
		locks := e.a
		if i%2 == 1 {
			locks = e.b
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := lockRecord(lctx, locks, r, "holder")
		cancel()
		if err != nil {
			t.Fatalf("Lock(%+v) while the records before it are locked: %v", r, err)
		}
	}
	// Every one of them is held: the same record again blocks.
	for _, r := range records {
		lctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := lockRecord(lctx, e.b, r, "second")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lock(%+v) while it is held = %v, want a deadline error", r, err)
		}
	}
}

func TestRecordLockKeyLayout(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 10*time.Second)
	modified := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.FixedZone("CET", 3600))
	long := strings.Repeat("K", 200) // its token would be too long: hashed
	longSum := sha256.Sum256([]byte(long))
	for _, tc := range []struct {
		key, token string
	}{
		{"C00010", "C00010"},
		{"A.B", "=QS5C"},
		{"", "_all"},
		{"A/B", "=QS9C"},
		{long, "h=" + hex.EncodeToString(longSum[:])},
	} {
		if _, err := e.a.Lock(ctx, "contoso", messages.TypeCustomer, tc.key, "worker-1/job-9"); err != nil {
			t.Fatal(err)
		}
		if err := writeVersion(ctx, e.a, "contoso", messages.TypeCustomer, tc.key, modified); err != nil {
			t.Fatal(err)
		}
		token := tc.token
		lock, err := e.kvA.Get(ctx, "lock.contoso.customer."+token)
		if err != nil {
			t.Fatalf("key %q: lock: %v", tc.key, err)
		}
		var v struct {
			Owner      string    `json:"owner"`
			AcquiredAt time.Time `json:"acquired_at"`
		}
		if err := json.Unmarshal(lock.Value(), &v); err != nil || v.Owner != "worker-1/job-9" || time.Since(v.AcquiredAt) > time.Minute {
			t.Errorf("key %q: lock value %s (%v)", tc.key, lock.Value(), err)
		}
		ver, err := e.kvA.Get(ctx, "ver.contoso.customer."+token)
		if err != nil {
			t.Fatalf("key %q: version: %v", tc.key, err)
		}
		if got := string(ver.Value()); got != "2026-03-04T04:06:07.89Z" {
			t.Errorf("key %q: version value %q", tc.key, got)
		}
	}
}

func TestRecordLockTakenAfterHolderDies(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, time.Second)
	for name, renew := range map[string]bool{"never renewed": false, "renewed once": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 10*time.Second)
			r := record{"contoso", messages.TypeCustomer, strings.ReplaceAll(name, " ", "-")}
			dead, err := lockRecord(ctx, e.a, r, "dead")
			if err != nil {
				t.Fatal(err)
			}
			if renew {
				if err := dead.Renew(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// The holder dies here: it never renews or unlocks again.
			start := time.Now()
			heir, err := lockRecord(ctx, e.b, r, "heir")
			waited := time.Since(start)
			if err != nil {
				t.Fatalf("after %v: %v", waited, err)
			}
			if waited < 900*time.Millisecond || waited > 5*time.Second {
				t.Errorf("the heir waited %v for a dead holder's lock with a TTL of 1s", waited)
			}
			if err := dead.Renew(ctx); !errors.Is(err, worker.ErrLockLost) {
				t.Errorf("Renew by the dead holder = %v, want ErrLockLost", err)
			}
			if err := heir.Renew(ctx); err != nil {
				t.Errorf("Renew by the heir: %v", err)
			}
		})
	}
}

func TestRecordLockRenewKeepsTheLock(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, time.Second)
	ctx := testContext(t, 10*time.Second)
	held, err := lockRecord(ctx, e.a, testRecord, "holder")
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	got := make(chan error, 1)
	go func() {
		l, err := lockRecord(ctx, e.b, testRecord, "waiter")
		if err == nil && !released.Load() {
			err = errors.New("the waiter took the lock while its holder was renewing it")
		}
		if l != nil {
			_ = l.Unlock(ctx)
		}
		got <- err
	}()
	until := time.Now().Add(2500 * time.Millisecond)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(until) {
		select {
		case err := <-got:
			t.Fatalf("the waiter finished while the lock was held: %v", err)
		case <-tick.C:
		}
		if err := held.Renew(ctx); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	released.Store(true)
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiter did not get the unlocked lock")
	}
	if err := held.Renew(ctx); !errors.Is(err, worker.ErrLockLost) {
		t.Errorf("Renew after Unlock = %v, want ErrLockLost", err)
	}
}

// A Renew that could not reach the store (here, a context already ended)
// is an error, but not a lost lock: the holder keeps it and may renew again.
func TestRecordLockRenewThatFailsKeepsTheLock(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 5*time.Second)
	ctx := testContext(t, 10*time.Second)
	l, err := lockRecord(ctx, e.a, testRecord, "holder")
	if err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Renew(ended); err == nil || errors.Is(err, worker.ErrLockLost) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Renew with an ended context = %v, want the context's error and not ErrLockLost", err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("Renew after a failed one: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kvB.Get(ctx, "lock.contoso.customer.C00010"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the lock's key after Unlock: %v", err)
	}
}

// A lock whose holder stopped renewing leaves the bucket by its key's TTL,
// whether or not it was renewed, with no waiter to free it; a Renew after
// that is refused and does not bring it back. (nats.go's KV Update drops a
// key's TTL: a lock renewed that way stayed in the bucket for good.)
func TestRecordLockRenewAfterExpiryIsLost(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, time.Second)
	for name, renew := range map[string]bool{"never renewed": false, "renewed": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 10*time.Second)
			r := record{"contoso", messages.TypeCustomer, strings.ReplaceAll(name, " ", "-")}
			key := "lock.contoso.customer." + r.key
			l, err := lockRecord(ctx, e.a, r, "slow")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if renew {
				time.Sleep(500 * time.Millisecond)
				if err := l.Renew(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := e.kvB.Get(ctx, key); err != nil {
					t.Fatalf("the lock's key right after Renew: %v", err)
				}
			}
			// Nobody takes it: it just expires.
			for {
				_, err := e.kvB.Get(ctx, key)
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					break
				}
				if err != nil {
					t.Fatalf("the lock's key %v after it was taken: %v", time.Since(start), err)
				}
				if time.Since(start) > 6*time.Second {
					t.Fatalf("the lock's key is still there %v after it was taken, with a TTL of 1s", time.Since(start))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if took := time.Since(start); renew && took < 1200*time.Millisecond {
				t.Errorf("a lock renewed 0.5 s after it was taken expired %v after it was taken, before its renewed TTL", took)
			}
			if err := l.Renew(ctx); !errors.Is(err, worker.ErrLockLost) {
				t.Fatalf("Renew of an expired lock = %v, want ErrLockLost", err)
			}
			// Renew must not have brought it back.
			if _, err := e.kvB.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("the lock's key after a lost Renew: %v", err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Errorf("Unlock of an expired lock: %v", err)
			}
		})
	}
}

func TestRecordLockUnlockLeavesAnotherOwnersLock(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, time.Second)
	ctx := testContext(t, 10*time.Second)
	old, err := lockRecord(ctx, e.a, testRecord, "old")
	if err != nil {
		t.Fatal(err)
	}
	heir, err := lockRecord(ctx, e.b, testRecord, "heir") // once old expired
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of a lock taken by another owner: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := lockRecord(short, e.a, testRecord, "third"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock after the old holder's Unlock = %v, want a deadline error: the heir still holds it", err)
	}
	if err := heir.Renew(ctx); err != nil {
		t.Fatalf("the heir's Renew: %v", err)
	}
	if err := heir.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	quick, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if _, err := lockRecord(quick, e.a, testRecord, "third"); err != nil {
		t.Fatalf("Lock after the heir's Unlock: %v", err)
	}
}

func TestRecordLockHonoursContext(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 10*time.Second)
	if _, err := lockRecord(ctx, e.a, testRecord, "holder"); err != nil {
		t.Fatal(err)
	}
	deadline, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := lockRecord(deadline, e.b, testRecord, "waiter")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "worker: record lock: ") {
		t.Errorf("Lock past its deadline = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lock returned %v after its deadline of 200ms", d)
	}
	cancelled, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = lockRecord(cancelled, e.b, testRecord, "waiter")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Lock cancelled = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lock returned %v after being cancelled at 100ms", d)
	}
}

func TestRecordLockRejectsBadInput(t *testing.T) {
	t.Parallel()
	locks := worker.NewRecordLocks(nil, nil, 0) // never reached
	ctx := context.Background()
	for name, r := range map[string]record{
		"subscription with a dot":   {"a.b", messages.TypeCustomer, "C1"},
		"empty subscription":        {"", messages.TypeCustomer, "C1"},
		"upper-case subscription":   {"Contoso", messages.TypeCustomer, "C1"},
		"unknown type":              {"contoso", "vendor", "C1"},
		"type with a wildcard":      {"contoso", "*", "C1"},
		"subscription with a space": {"con toso", messages.TypeCustomer, "C1"},
	} {
		if _, err := lockRecord(ctx, locks, r, "owner"); err == nil {
			t.Errorf("%s: Lock succeeded", name)
		}
		if _, err := staleVersion(ctx, locks, r.sub, r.typ, r.key, time.Now()); err == nil {
			t.Errorf("%s: Stale succeeded", name)
		}
		if err := writeVersion(ctx, locks, r.sub, r.typ, r.key, time.Now()); err == nil {
			t.Errorf("%s: Written succeeded", name)
		}
	}
	if _, err := lockRecord(ctx, locks, testRecord, ""); err == nil {
		t.Error("Lock without an owner succeeded")
	}
}

func TestRecordVersionStale(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 10*time.Second)
	r := testRecord
	base := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	stale := func(l *worker.RecordLocks, r record, at time.Time) bool {
		t.Helper()
		s, err := staleVersion(ctx, l, r.sub, r.typ, r.key, at)
		if err != nil {
			t.Fatalf("Stale(%v): %v", at, err)
		}
		return s
	}
	written := func(l *worker.RecordLocks, at time.Time) {
		t.Helper()
		if err := writeVersion(ctx, l, r.sub, r.typ, r.key, at); err != nil {
			t.Fatalf("Written(%v): %v", at, err)
		}
	}

	if stale(e.a, r, base.Add(-time.Hour)) {
		t.Error("a record never written is stale")
	}
	written(e.a, time.Time{})
	if _, err := e.kvA.Get(ctx, "ver.contoso.customer.C00010"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Written(zero time) stored a version: %v", err)
	}

	written(e.a, base)
	other := []record{
		{"contoso", messages.TypeCustomer, "C00011"},
		{"contoso", messages.TypeProduct, r.key},
		{"fabrikam", r.typ, r.key},
	}
	for _, c := range []struct {
		name  string
		at    time.Time
		stale bool
	}{
		{"older by 1ns", base.Add(-time.Nanosecond), true},
		{"older by 1h", base.Add(-time.Hour), true},
		{"equal", base, false},
		{"equal in another zone", base.In(time.FixedZone("EST", -5*3600)), false},
		{"newer by 1ns", base.Add(time.Nanosecond), false},
		{"zero", time.Time{}, false},
	} {
		if got := stale(e.b, r, c.at); got != c.stale {
			t.Errorf("%s: Stale = %v, want %v", c.name, got, c.stale)
		}
	}
	for _, o := range other {
		if stale(e.b, o, base.Add(-time.Hour)) {
			t.Errorf("%+v is stale from another record's version", o)
		}
	}

	// Never backwards: an older write, from either worker, is ignored.
	written(e.b, base.Add(-time.Hour))
	written(e.a, time.Time{})
	if !stale(e.a, r, base.Add(-time.Nanosecond)) || stale(e.a, r, base) {
		t.Error("the version moved backwards")
	}
	// Forwards.
	written(e.b, base.Add(time.Second))
	if !stale(e.a, r, base) || stale(e.a, r, base.Add(time.Second)) {
		t.Error("the version did not move forwards")
	}

	// A value that is not a time makes Stale fail and is replaced by Written.
	if _, err := e.kvA.Put(ctx, "ver.contoso.customer.C00010", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := staleVersion(ctx, e.a, r.sub, r.typ, r.key, base); err == nil {
		t.Error("Stale of a garbage version succeeded")
	}
	written(e.a, base)
	if !stale(e.a, r, base.Add(-time.Nanosecond)) {
		t.Error("Written did not replace a garbage version")
	}
}

func TestRecordVersionConcurrentWrittenKeepsTheNewest(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 10*time.Second)
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	const writers = 10
	for round := range 5 {
		key := fmt.Sprintf("C%05d", round)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, n := range rand.Perm(writers) {
			locks := e.a
			if i%2 == 1 {
				locks = e.b
			}
			at := base.Add(time.Duration(n) * time.Millisecond)
			wg.Go(func() {
				<-start
				if err := writeVersion(ctx, locks, "contoso", messages.TypeProduct, key, at); err != nil {
					t.Errorf("Written(%v): %v", at, err)
				}
			})
		}
		close(start)
		wg.Wait()
		newest := base.Add((writers - 1) * time.Millisecond)
		got, err := e.kvA.Get(ctx, "ver.contoso.product."+key)
		if err != nil {
			t.Fatal(err)
		}
		if want := newest.Format(time.RFC3339Nano); string(got.Value()) != want {
			t.Errorf("round %d: version %s, want the newest %s", round, got.Value(), want)
		}
		if s, err := staleVersion(ctx, e.b, "contoso", messages.TypeProduct, key, newest.Add(-time.Nanosecond)); err != nil || !s {
			t.Errorf("round %d: Stale(newest - 1ns) = %v, %v", round, s, err)
		}
	}
}

// TestRecordKeepsVersionAndAliasInFewWrites checks Record: the version and
// the BC id in one value, the alias written only for an id not yet
// recorded, and a lost race (a prior read before another write) resolved
// by reading again.
func TestRecordKeepsVersionAndAliasInFewWrites(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 10*time.Second)
	r := testRecord
	guid := "6F1C1D3E-0000-4000-8000-00000000A001"
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	revision := func(key string) uint64 {
		t.Helper()
		en, err := e.kvA.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return en.Revision()
	}
	version := func(l *worker.RecordLocks) worker.Version {
		t.Helper()
		v, err := l.Version(ctx, r.sub, r.typ, r.key)
		if err != nil {
			t.Fatalf("Version: %v", err)
		}
		return v
	}

	v0 := version(e.a)
	if !v0.Modified.IsZero() || v0.ID != "" || v0.Stale(base) || v0.Recorded() {
		t.Fatalf("version of a record never written = %+v", v0)
	}
	if err := e.a.Record(ctx, r.sub, r.typ, r.key, v0, base, guid); err != nil {
		t.Fatal(err)
	}
	v1 := version(e.b)
	if !v1.Modified.Equal(base) || v1.ID != strings.ToLower(guid) || !v1.Recorded() {
		t.Fatalf("after Record: %+v", v1)
	}
	if ext, ok, err := e.b.Resolve(ctx, r.sub, r.typ, guid); err != nil || !ok || ext != r.key {
		t.Fatalf("Resolve = %q, %v, %v", ext, ok, err)
	}
	aliasKey := "id.contoso.customer." + strings.ToLower(guid)
	aliasRev := revision(aliasKey)

	// A newer write of the same record: the version moves, the alias is
	// not written again.
	if err := e.a.Record(ctx, r.sub, r.typ, r.key, v1, base.Add(time.Minute), guid); err != nil {
		t.Fatal(err)
	}
	if got := revision(aliasKey); got != aliasRev {
		t.Errorf("alias rewritten: revision %d, was %d", got, aliasRev)
	}
	if v := version(e.a); !v.Modified.Equal(base.Add(time.Minute)) || !v.Stale(base) {
		t.Errorf("after the second Record: %+v", v)
	}

	// v1 is now out of date: Record reads again and keeps the newer time.
	if err := e.b.Record(ctx, r.sub, r.typ, r.key, v1, base.Add(30*time.Second), guid); err != nil {
		t.Fatal(err)
	}
	if v := version(e.a); !v.Modified.Equal(base.Add(time.Minute)) {
		t.Errorf("an older Record from a stale read moved the version back: %+v", v)
	}

	// A version written before ids were recorded (the time alone) gets its
	// id, and the alias, at the next Record.
	other := record{"contoso", messages.TypeCustomer, "C00011"}
	guid2 := "6f1c1d3e-0000-4000-8000-00000000a002"
	if _, err := e.kvA.Put(ctx, "ver.contoso.customer.C00011", []byte(base.Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	old, err := e.a.Version(ctx, other.sub, other.typ, other.key)
	if err != nil || !old.Modified.Equal(base) || old.ID != "" {
		t.Fatalf("legacy version = %+v, %v", old, err)
	}
	if err := e.a.Record(ctx, other.sub, other.typ, other.key, old, base, guid2); err != nil {
		t.Fatal(err)
	}
	if ext, ok, err := e.a.Resolve(ctx, other.sub, other.typ, guid2); err != nil || !ok || ext != other.key {
		t.Fatalf("Resolve after a legacy version = %q, %v, %v", ext, ok, err)
	}
	if v, _ := e.a.Version(ctx, other.sub, other.typ, other.key); v.ID != guid2 || !v.Modified.Equal(base) {
		t.Errorf("legacy version after Record = %+v", v)
	}
}

// failingPuts makes the first Put fail, as a NATS outage would.
type failingPuts struct {
	jetstream.KeyValue
	failed atomic.Bool
}

func (f *failingPuts) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if f.failed.CompareAndSwap(false, true) {
		return 0, errors.New("nats: timeout")
	}
	return f.KeyValue.Put(ctx, key, value)
}

// TestRecordWritesTheAliasAgainAfterItFailed: an alias that could not be
// written is written by the retry; the version does not claim it.
func TestRecordWritesTheAliasAgainAfterItFailed(t *testing.T) {
	t.Parallel()
	e := newRecordLockEnv(t, 0)
	ctx := testContext(t, 10*time.Second)
	locks := worker.NewRecordLocks(nil, &failingPuts{KeyValue: e.kvA}, 0)
	r := testRecord
	guid := "6f1c1d3e-0000-4000-8000-00000000a003"
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for attempt := 1; ; attempt++ {
		v, err := locks.Version(ctx, r.sub, r.typ, r.key)
		if err != nil {
			t.Fatal(err)
		}
		if err = locks.Record(ctx, r.sub, r.typ, r.key, v, at, guid); err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("the retry failed too: %v", err)
		}
	}
	if ext, ok, err := e.a.Resolve(ctx, r.sub, r.typ, guid); err != nil || !ok || ext != r.key {
		t.Fatalf("after a failed alias and a retry, Resolve = %q, %v, %v", ext, ok, err)
	}
}

// writeVersion records a write of modified, as a job does after writing
// the record, from a Version read long before (the empty one): Record must
// read again and keep the version moving forwards only.
func writeVersion(ctx context.Context, l *worker.RecordLocks, sub string, typ messages.Type, key string, modified time.Time) error {
	return l.Record(ctx, sub, typ, key, worker.Version{}, modified, "")
}

// staleVersion reads the record's version and tells whether modified is
// older, as a job does before writing.
func staleVersion(ctx context.Context, l *worker.RecordLocks, sub string, typ messages.Type, key string, modified time.Time) (bool, error) {
	v, err := l.Version(ctx, sub, typ, key)
	return v.Stale(modified), err
}

// BenchmarkRecordLockUnlock is the record lock's cost per job: a Lock and an
// Unlock of a record nobody else holds, 64 at once, on the embedded broker
// (see BENCHMARKS.md, which compares it with a raw consume-and-ack).
func BenchmarkRecordLockUnlock(b *testing.B) {
	br := brokertest.New(b)
	locks := worker.NewRecordLocks(br.JS, brokertest.KV(b, br, broker.BucketRecords), time.Minute)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := locks.Lock(ctx, "contoso", messages.TypeCustomer, "C"+strconv.FormatInt(n.Add(1), 10), "bench")
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Unlock(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
