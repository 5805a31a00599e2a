package throttle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/nats-io/nats.go/jetstream"
)

// Concurrency leases.
//
// The fleet's MaxConcurrency slots are the keys lease.<name>.0 to
// lease.<name>.<MaxConcurrency-1>. A process owns a key from its KV create
// (with a TTL, so that a killed process's keys expire) until its KV delete,
// and runs at most one request on it at a time: at most MaxConcurrency
// requests run at once across the fleet.
//
// A process keeps the keys it created for its next requests (sticky
// leases), so that a busy process pays the two KV round trips of a lease
// rarely rather than per request: a released lease is handed to a goroutine
// of the process waiting for one, or kept idle for the next Acquire. The
// process deletes it once it stayed idle for LeaseIdle, or at its first
// release after LeaseHold from its creation (the TTL counts from there too:
// a lease is never reused past half its TTL). Then processes waiting for a
// slot, which poll the keys with KV creates, get their turn: a process
// that waits announces it in a key want.<name>.<id> of its own (with a
// TTL), which every process watches, and a process that knows another one
// waits leaves a key it gave back to the others for leaseYield.

const (
	// leasePollMax is the longest a goroutine waits between two scans of
	// the lease keys.
	leasePollMax = 50 * time.Millisecond
	// leaseYield is how long a process leaves a lease it gave back to the
	// other processes, while one of them waits: two of their polls.
	leaseYield = 2 * leasePollMax
	// wantTTL is how long a want key lives (the least TTL the store
	// knows); a process creates its own again while it keeps waiting.
	// Another process counts it as waiting for twice as long, so that a
	// want key expiring late does not leave a gap.
	wantTTL = time.Second
)

// lease is a concurrency lease held by this process.
type lease struct {
	i         int
	key       string
	rev       uint64    // the create's: a delete removes this lease only
	created   time.Time // taken before the create: the TTL runs from later
	idleSince time.Time
}

// offer is what a goroutine waiting for a lease receives: a lease handed
// over, or (l nil) the index of a key just deleted, to create first.
type offer struct {
	l    *lease
	free int
}

// leaseWaiter is a goroutine of this process waiting for a lease.
type leaseWaiter struct {
	ch chan offer // buffered: one offer per time in the queue
}

// leases is the process's side of the concurrency leases.
type leases struct {
	keys       []string
	ttl        time.Duration // LeaseTTL as the store counts it
	hold       time.Duration // LeaseHold
	idleFor    time.Duration
	wantKey    string
	wantPrefix string

	wantUntil       atomic.Int64 // unix ns: this process's want key is there until then
	othersWantUntil atomic.Int64 // unix ns: another process was seen waiting

	kick chan struct{} // wakes the janitor: a lease went idle

	mu          sync.Mutex
	held        []bool         // per key: this process holds it
	yield       []time.Time    // per key: left to other processes until then
	idle        []*lease       // released and unused, newest last
	waiters     []*leaseWaiter // oldest first
	janitorOn   bool
	janitorNext time.Time // when the janitor wakes, zero if it sleeps
	closed      bool
}

func (ls *leases) init(cfg FleetConfig, ttl time.Duration) {
	ls.keys = make([]string, cfg.MaxConcurrency)
	for i := range ls.keys {
		ls.keys[i] = "lease." + cfg.Name + "." + strconv.Itoa(i)
	}
	ls.ttl, ls.idleFor = ttl, cfg.LeaseIdle
	ls.hold = cfg.LeaseHold // negative: never reused
	ls.wantPrefix = "want." + cfg.Name + "."
	ls.wantKey = ls.wantPrefix + strconv.FormatUint(rand.Uint64(), 36)
	ls.kick = make(chan struct{}, 1)
	ls.held = make([]bool, cfg.MaxConcurrency)
	ls.yield = make([]time.Time, cfg.MaxConcurrency)
}

// reusable reports whether l may serve another request: it was created
// less than LeaseHold ago, and less than half its TTL ago, so that a
// request has at least half the TTL before the lease expires under it.
func (ls *leases) reusable(l *lease, now time.Time) bool {
	age := now.Sub(l.created)
	return age < ls.hold && age < ls.ttl/2
}

// popIdleLocked takes the newest reusable idle lease, and returns the idle
// leases too old to reuse, to delete.
func (ls *leases) popIdleLocked(now time.Time) (l *lease, old []*lease) {
	for len(ls.idle) > 0 {
		n := len(ls.idle) - 1
		l, ls.idle[n] = ls.idle[n], nil
		ls.idle = ls.idle[:n]
		if ls.reusable(l, now) {
			return l, old
		}
		old = append(old, l)
	}
	return nil, old
}

func (ls *leases) dequeueLocked(w *leaseWaiter) bool {
	i := slices.Index(ls.waiters, w)
	if i < 0 {
		return false
	}
	ls.waiters = slices.Delete(ls.waiters, i, i+1)
	return true
}

// offerLocked hands o to the oldest waiter, if any.
func (ls *leases) offerLocked(o offer) bool {
	if len(ls.waiters) == 0 {
		return false
	}
	w := ls.waiters[0]
	ls.waiters = slices.Delete(ls.waiters, 0, 1)
	w.ch <- o
	return true
}

// othersWant records that another process waits for a lease.
func (ls *leases) othersWant(now time.Time) {
	until := now.Add(2 * wantTTL).UnixNano()
	for cur := ls.othersWantUntil.Load(); cur < until && !ls.othersWantUntil.CompareAndSwap(cur, until); cur = ls.othersWantUntil.Load() {
	}
}

// startBackground counts one more goroutine in wg, unless closed.
func (ls *leases) startBackground(wg *sync.WaitGroup) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return false
	}
	wg.Add(1)
	return true
}

// close marks the leases closed and returns the idle ones, to delete; ok
// is false if they were closed already.
func (ls *leases) close() (idle []*lease, ok bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return nil, false
	}
	ls.closed = true
	idle, ls.idle = ls.idle, nil
	return idle, true
}

// lease returns a concurrency lease: one this process holds idle, one
// created, or one another goroutine of the process releases. While every key
// is taken, it waits in line for the process's releases, and polls the keys
// other processes hold now and then (leases last a request, or up to
// LeaseHold when a process keeps them).
func (f *Fleet) lease(ctx context.Context) (*lease, error) {
	w := &leaseWaiter{ch: make(chan offer, 1)}
	// With goroutines of this process in line already (polling the keys),
	// join them at once; else try the keys first.
	if l, queued := f.takeIdle(w, false, true); l != nil {
		return l, nil
	} else if !queued {
		l, contended, err := f.create(ctx, -1)
		if l != nil || err != nil {
			return l, err
		}
		if l, _ := f.takeIdle(w, false, false); l != nil { // released during the scan
			return l, nil
		}
		if contended {
			f.announceWant(ctx)
		}
	}
	f.cfg.Stats.LeaseWaits.Add(1)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for attempt := 0; ; attempt++ {
		timer.Reset(jitter(min(time.Duration(attempt+1)*2*time.Millisecond, leasePollMax)))
		hint := -1 // in line
		select {
		case o := <-w.ch: // out of line
			if o.l != nil {
				f.cfg.Stats.LeasesReused.Add(1)
				return o.l, nil
			}
			hint = o.free
		case <-timer.C:
		case <-ctx.Done():
			f.leaveLine(w)
			return nil, fmt.Errorf("throttle: %w", ctx.Err())
		}
		l, contended, err := f.create(ctx, hint)
		if l != nil || err != nil {
			if hint < 0 {
				f.leaveLine(w)
			}
			return l, err
		}
		if contended {
			f.announceWant(ctx)
		}
		// Told to take a key and beaten to it: back to the head of the line.
		if hint >= 0 {
			if l, _ := f.takeIdle(w, true, false); l != nil {
				return l, nil
			}
		}
	}
}

// takeIdle returns a reusable idle lease. Else it puts w in the line of
// waiters (at its head if first), unless onlyIfLine and the line is empty,
// and reports whether it did. It deletes the idle leases too old to reuse.
func (f *Fleet) takeIdle(w *leaseWaiter, first, onlyIfLine bool) (l *lease, queued bool) {
	ls := &f.leases
	ls.mu.Lock()
	l, old := ls.popIdleLocked(time.Now())
	if l == nil && (!onlyIfLine || len(ls.waiters) > 0) {
		queued = true
		if first {
			ls.waiters = slices.Insert(ls.waiters, 0, w)
		} else {
			ls.waiters = append(ls.waiters, w)
		}
	}
	ls.mu.Unlock()
	for _, o := range old {
		f.giveBack(o)
	}
	if l != nil {
		f.cfg.Stats.LeasesReused.Add(1)
	}
	return l, queued
}

// leaveLine takes w out of the line; a lease offered to it meanwhile goes
// to the next waiter, or idle.
func (f *Fleet) leaveLine(w *leaseWaiter) {
	ls := &f.leases
	ls.mu.Lock()
	if ls.dequeueLocked(w) {
		ls.mu.Unlock()
		return
	}
	o := <-w.ch // offered, under the lock, as it left the line
	ls.mu.Unlock()
	if o.l != nil {
		f.putBack(o.l)
	}
}

// create tries once to create each key this process neither holds nor
// leaves to others, from first (or a random one), and returns nil if every
// key is taken; contended reports whether another process holds one.
func (f *Fleet) create(ctx context.Context, first int) (l *lease, contended bool, err error) {
	ls := &f.leases
	n := len(ls.keys)
	if first < 0 {
		first = rand.IntN(n)
	}
	for j := range n {
		i := (first + j) % n
		ls.mu.Lock()
		skip := ls.held[i] || time.Now().Before(ls.yield[i])
		ls.mu.Unlock()
		if skip {
			continue
		}
		created := time.Now()
		rev, err := f.cfg.KV.Create(ctx, ls.keys[i], nil, jetstream.KeyTTL(ls.ttl))
		if err == nil {
			ls.mu.Lock()
			ls.held[i] = true
			ls.mu.Unlock()
			f.cfg.Stats.LeasesCreated.Add(1)
			return &lease{i: i, key: ls.keys[i], rev: rev, created: created}, false, nil
		}
		if !broker.IsConflict(err) {
			return nil, false, fmt.Errorf("throttle: %s: take a concurrency lease: %w", f.cfg.Name, err)
		}
		contended = true
	}
	return nil, contended, nil
}

// putBack takes a released lease: to the oldest waiting goroutine, or idle,
// if it may be reused; else it deletes it.
func (f *Fleet) putBack(l *lease) {
	ls := &f.leases
	now := time.Now()
	ls.mu.Lock()
	if ls.closed || !ls.reusable(l, now) {
		ls.mu.Unlock()
		f.giveBack(l)
		return
	}
	if ls.offerLocked(offer{l: l}) {
		ls.mu.Unlock()
		return
	}
	l.idleSince = now
	ls.idle = append(ls.idle, l)
	if !ls.janitorOn {
		ls.janitorOn = true
		f.bg.Add(1) // not closed: before Close waits
		go f.janitor()
	}
	if due := ls.idleDeadline(l); ls.janitorNext.IsZero() || due.Before(ls.janitorNext) {
		ls.janitorNext = due
		select {
		case ls.kick <- struct{}{}:
		default:
		}
	}
	ls.mu.Unlock()
}

// idleDeadline is when the idle lease l is deleted.
func (ls *leases) idleDeadline(l *lease) time.Time {
	d := l.idleSince.Add(ls.idleFor)
	if old := l.created.Add(min(ls.hold, ls.ttl/2)); old.Before(d) {
		return old
	}
	return d
}

// giveBack deletes l from the bucket. If that fails, the lease's TTL ends
// it. Then, while another process waits, this process leaves the key to
// the others for a while; else it tells a goroutine of its own that waits
// to take the key at once.
func (f *Fleet) giveBack(l *lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Only this lease's revision: if it expired meanwhile, the key may be
	// another process's lease now.
	if err := f.cfg.KV.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err == nil {
		f.cfg.Stats.LeasesDeleted.Add(1)
	}
	ls := &f.leases
	now := time.Now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.held[l.i] = false
	if now.UnixNano() < ls.othersWantUntil.Load() {
		ls.yield[l.i] = now.Add(leaseYield)
		return
	}
	ls.offerLocked(offer{free: l.i})
}

// janitor deletes the leases that stayed idle for LeaseIdle, or that are
// too old to reuse, until Close.
func (f *Fleet) janitor() {
	defer f.bg.Done()
	ls := &f.leases
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		var due []*lease
		var next time.Time
		ls.mu.Lock()
		keep := ls.idle[:0]
		for _, l := range ls.idle {
			d := ls.idleDeadline(l)
			if !now.Before(d) {
				due = append(due, l)
				continue
			}
			keep = append(keep, l)
			if next.IsZero() || d.Before(next) {
				next = d
			}
		}
		clear(ls.idle[len(keep):])
		ls.idle = keep
		ls.janitorNext = next
		ls.mu.Unlock()
		for _, l := range due {
			f.giveBack(l)
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			t.Reset(time.Until(next))
			tick = t.C
		}
		select {
		case <-f.life.Done():
			return // Close deletes the idle leases
		case <-ls.kick:
		case <-tick:
		}
	}
}

// announceWant tells the other processes, through this process's want key,
// that it waits for a lease, at most once per wantTTL. It is advisory:
// without it, a waiting process still gets a lease when one is deleted, only
// less often.
func (f *Fleet) announceWant(ctx context.Context) {
	ls := &f.leases
	now := time.Now().UnixNano()
	until := ls.wantUntil.Load()
	if now < until || !ls.wantUntil.CompareAndSwap(until, now+int64(wantTTL)) {
		return
	}
	if _, err := f.cfg.KV.Create(ctx, ls.wantKey, nil, jetstream.KeyTTL(wantTTL)); err != nil {
		// Still there (expired late), or the store failed: try again soon.
		ls.wantUntil.Store(now + int64(leaseYield))
	}
}
