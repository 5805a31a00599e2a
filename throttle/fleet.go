package throttle

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// FleetConfig configures a budget shared by every worker that uses the same
// Name, through a NATS KV bucket (broker.BucketThrottle).
type FleetConfig struct {
	// KV is the bucket. Required.
	KV jetstream.KeyValue
	// Name identifies the budget: one per BC app registration (every worker
	// using the same client id shares BC's limits), one per iPaaS.com
	// subscription. [A-Za-z0-9_-]. Required.
	Name string
	// Requests per Window, over a sliding window. Required (> 0).
	Requests int
	Window   time.Duration
	// MaxConcurrency is the number of requests in flight across the fleet.
	// Required (> 0).
	MaxConcurrency int
	// LeaseTTL is how long a concurrency lease lives if its holder dies
	// without releasing it (or its release is lost in a NATS failover):
	// for that long, the fleet runs one request fewer at once. A request
	// that outlives its lease lets one more in than MaxConcurrency, which
	// BC queues rather than refuses. Default 15s: far longer than a
	// request usually takes, short enough that a killed worker's leases do
	// not stall the fleet. At least 1s; the store counts whole seconds.
	LeaseTTL time.Duration
	// LeaseHold is how long, from its creation, a process may keep a
	// concurrency lease for its own next requests. A lease released
	// earlier stays with the process: it is handed to a goroutine of the
	// process waiting for a slot, or kept idle for the next Acquire, with
	// no KV round trip either way. A lease released later is deleted, so
	// that processes waiting for a slot get their turn; while another
	// process is known to wait, a lease given back is left to it for 100ms
	// before this process takes it again. Default 250ms: a busy process
	// then pays a KV create and delete per lease every 250ms (about 1ms of
	// round trips, under 1% of the lease's time), and a waiting process
	// gets a slot within about LeaseHold plus one poll of the lease keys
	// (at most 50ms). At most half of LeaseTTL, so that a lease is never
	// reused past half of its TTL. Negative: every release deletes its
	// lease (a KV create and delete per request).
	LeaseHold time.Duration
	// LeaseIdle is how long a released lease stays idle with the process
	// before it is deleted (or less, when its LeaseHold ends first).
	// Default 20ms: twenty or more KV round trips, so that a busy
	// process, whose goroutines acquire again within milliseconds, keeps
	// its leases, while a lease its process no longer needs holds back
	// other processes for less than one poll of theirs (up to 50ms).
	LeaseIdle time.Duration
	// Slots divides the window to count grants. A permit is handed out
	// within the slot it is counted in (see grant), and the budget is
	// counted over Window plus 3% (one slot, and 2% for the time between a
	// grant and the request's arrival, which varies), so that the service,
	// counting arrivals, never sees more than Requests in a Window.
	// Default 100.
	Slots int
	// Recreate, when set, makes the bucket again when the store answers
	// that it is gone: broker.BucketThrottle is kept in memory, and the
	// restart of a single NATS server loses it; every Acquire then failed
	// until the workers restarted. It must succeed when the bucket exists
	// (another worker made it first), and leave an existing bucket as it
	// is. It is called at most once a second; an Acquire that met the
	// missing bucket tries once more after it. Without it, the bucket's
	// loss stays fatal for the budget.
	Recreate func(ctx context.Context) error
	// Log receives pauses, the re-creation of the bucket, and a warning
	// when another process's clock is ahead of this one's.
	Log zerolog.Logger
	// Stats, when set, counts grants, waits and pauses.
	Stats *Stats
}

// Stats counts a limiter's work. Safe for concurrent use.
type Stats struct {
	// Granted counts permits handed out.
	Granted atomic.Int64
	// RateWaits counts acquires that waited for the request budget;
	// LeaseWaits those that waited for a concurrency slot.
	RateWaits, LeaseWaits atomic.Int64
	// Waited is the total time acquires spent waiting, in nanoseconds.
	Waited atomic.Int64
	// Pauses counts Throttled calls (a 429 or Retry-After from the service).
	Pauses atomic.Int64
	// Conflicts counts lost compare-and-set races on the budget.
	Conflicts atomic.Int64
	// Restamped counts permits moved to a later slot because the store
	// answered after the slot they were counted in had ended; Stale those
	// left counted and unused because other processes kept winning the
	// compare-and-set, or the budget had no room left for them.
	Restamped, Stale atomic.Int64
	// LeasesCreated counts concurrency leases created in the bucket (a KV
	// create each); LeasesReused acquires served by a lease the process
	// already held (no KV round trip); LeasesDeleted leases given back to
	// the fleet (a KV delete each; a failed one leaves the lease to its
	// TTL and is not counted).
	LeasesCreated, LeasesReused, LeasesDeleted atomic.Int64
}

// Fleet is a fleet-wide Limiter: a sliding-window request budget and a
// concurrency limit whose leases expire when a worker dies, and a pause that
// every worker honours when the service answered 429 or Retry-After.
type Fleet struct {
	cfg      FleetConfig
	slot     time.Duration
	rateKey  string
	pauseKey string
	// window is the number of slots a grant checks: the Window and a
	// margin. lead is how many slots a count may lie behind the newest
	// one (another process's move ahead, see maxLead); ring, the slots
	// kept, is both, so that a grant counted behind the newest slot still
	// sees every slot of its window.
	window, lead, ring int

	// turn lets one goroutine of this process at a time take from the
	// budget, so that only processes, not goroutines, race on the CAS.
	turn chan struct{}
	// queued counts goroutines waiting for the turn; the turn's holder
	// takes permits for them too and leaves them in pool, valid in slot
	// poolSlot only (pool and poolSlot belong to the turn's holder).
	queued   atomic.Int64
	pool     int
	poolSlot int64

	pausedUntil atomic.Int64 // unix nanoseconds, cached from the bucket
	clockWarned atomic.Int64 // unix nanoseconds of the last clock warning
	watchOnce   sync.Once
	watchReady  chan struct{} // closed once a watch delivered the bucket's values
	readyOnce   sync.Once
	watching    atomic.Bool   // the watch is set up
	watchKick   chan struct{} // an Acquire found the watch down
	watchMu     sync.Mutex
	watchStop   context.CancelFunc // ends the current watch

	recreateMu   sync.Mutex
	recreateLast time.Time // the last call of cfg.Recreate
	recreateOK   bool      // and whether it succeeded

	leases leases

	// now is time.Now; a test skews it, as another host's clock.
	now func() time.Time

	// life ends with Close; bg counts the goroutines that end with it
	// (the watch of the bucket, the janitor of idle leases).
	life context.Context
	stop context.CancelFunc
	bg   sync.WaitGroup
}

// NewFleet checks the configuration.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	var errs []error
	if cfg.KV == nil {
		errs = append(errs, errors.New("KV is required"))
	}
	if !validName(cfg.Name) {
		errs = append(errs, fmt.Errorf("Name %q must be 1-64 characters of [A-Za-z0-9_-]", cfg.Name))
	}
	if cfg.Requests <= 0 || cfg.Window <= 0 || cfg.MaxConcurrency <= 0 {
		errs = append(errs, errors.New("Requests, Window and MaxConcurrency must be positive"))
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.LeaseHold == 0 {
		cfg.LeaseHold = 250 * time.Millisecond
	}
	if cfg.LeaseIdle <= 0 {
		cfg.LeaseIdle = 20 * time.Millisecond
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 100
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	// The server counts a key's TTL in whole seconds, at least one.
	ttl := cfg.LeaseTTL.Truncate(time.Second)
	if ttl < time.Second {
		errs = append(errs, fmt.Errorf("LeaseTTL %v must be at least 1s (the store counts whole seconds)", cfg.LeaseTTL))
	} else if cfg.LeaseHold > ttl/2 {
		errs = append(errs, fmt.Errorf("LeaseHold %v must be at most half of LeaseTTL (%v as the store counts it)", cfg.LeaseHold, ttl))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("throttle: %w", errors.Join(errs...))
	}
	f := &Fleet{cfg: cfg, slot: cfg.Window / time.Duration(cfg.Slots), window: cfg.Slots + cfg.Slots/50 + 1,
		rateKey: "rate." + cfg.Name, pauseKey: "pause." + cfg.Name, turn: make(chan struct{}, 1), watchKick: make(chan struct{}, 1), watchReady: make(chan struct{})}
	if f.slot <= 0 {
		f.slot = time.Millisecond
	}
	f.lead = int((f.maxLead()+f.slot-1)/f.slot) + 1
	f.ring = f.window + f.lead
	f.life, f.stop = context.WithCancel(context.Background())
	f.now = time.Now
	f.leases.init(cfg, ttl)
	return f, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Stats returns the limiter's counters.
func (f *Fleet) Stats() *Stats { return f.cfg.Stats }

// Close stops watching the bucket, deletes the concurrency leases the
// process holds idle (all at once, within a few seconds even when the
// bucket cannot be reached: their TTL ends them then), and returns once its
// goroutines ended. Leases in use
// are deleted when released. The Fleet still works after Close, without
// keeping leases: every release deletes its lease.
func (f *Fleet) Close() {
	idle, ok := f.leases.close()
	if !ok {
		return
	}
	f.stop()
	f.bg.Wait()
	// At once: with NATS unreachable each waits for its timeout, and a
	// worker holding many leases would outlast its shutdown grace.
	var wg sync.WaitGroup
	for _, l := range idle {
		wg.Go(func() { f.giveBack(l) })
	}
	wg.Wait()
}

// Acquire waits for the end of a pause, for a concurrency lease, and for
// the request budget, in that order, so that a request is sent right after
// its budget was granted. release gives the lease back to the process, which
// keeps it for its next request for a while (see FleetConfig.LeaseHold);
// calling it again does nothing.
func (f *Fleet) Acquire(ctx context.Context) (release func(), err error) {
	f.watch()
	f.awaitWatch(ctx)
	start := time.Now()
	defer func() { f.cfg.Stats.Waited.Add(int64(time.Since(start))) }()
	release, err = f.acquire(ctx)
	if err != nil && f.recreate(ctx, err) {
		release, err = f.acquire(ctx)
	}
	return release, err
}

// acquire waits for the end of a pause, then for a concurrency lease, then
// for the budget. A pause that begins meanwhile is waited out without the
// lease (a pause may outlast LeaseTTL, BC's Retry-After can be minutes,
// and the lease's key, expired meanwhile, would be taken by another
// process while this one still counted it as its own); one that begins
// during the budget wait (up to a window) also leaves the permit counted
// and unused (Stale).
func (f *Fleet) acquire(ctx context.Context) (release func(), err error) {
	for {
		if err := f.waitPause(ctx); err != nil {
			return nil, err
		}
		l, err := f.lease(ctx)
		if err != nil {
			return nil, err
		}
		if f.paused() {
			f.putBack(l)
			continue
		}
		if err := f.grant(ctx); err != nil {
			f.putBack(l)
			return nil, err
		}
		if f.paused() {
			f.cfg.Stats.Stale.Add(1)
			f.putBack(l)
			continue
		}
		f.cfg.Stats.Granted.Add(1)
		var released atomic.Bool
		return func() {
			if released.CompareAndSwap(false, true) {
				f.putBack(l)
			}
		}, nil
	}
}

// paused reports whether the fleet is paused now.
func (f *Fleet) paused() bool { return time.Now().UnixNano() < f.pausedUntil.Load() }

// firstWatchWait bounds how long an Acquire waits for the first watch of
// the bucket to deliver the pause it holds (a process starting during the
// fleet's pause): a NATS that cannot set the watch up costs no more.
const firstWatchWait = 2 * time.Second

// awaitWatch waits, until the first watch delivered the bucket's values or
// for firstWatchWait at most, so that a process's first requests honour a
// pause already stored.
func (f *Fleet) awaitWatch(ctx context.Context) {
	select {
	case <-f.watchReady:
		return
	default:
	}
	t := time.NewTimer(firstWatchWait)
	defer t.Stop()
	select {
	case <-f.watchReady:
	case <-t.C:
	case <-ctx.Done():
	}
}

// grant takes one request from the sliding-window budget, waiting until the
// budget allows it. The budget is a ring of per-slot counts, updated by
// compare-and-set.
//
// A permit is counted in a slot and handed out within that slot, never
// after it: the ring then bounds the requests let out in any window. A
// permit whose compare-and-set answered after its slot ended is moved to a
// slot ahead (restamp) and waits for it to begin.
//
// A permit is counted in the current slot even when another process moved
// permits ahead of it, so that one process's move does not hold back the
// fleet: the grant checks every count from its window's start to the
// newest slot, which bounds every window that holds the permit. Only a
// newest slot further ahead than a move goes (a clock ahead of this one)
// makes the permit count in a slot that has not begun, and wait for it.
func (f *Fleet) grant(ctx context.Context) error {
	f.queued.Add(1)
	select {
	case f.turn <- struct{}{}:
	case <-ctx.Done():
		f.queued.Add(-1)
		return fmt.Errorf("throttle: %w", ctx.Err())
	}
	f.queued.Add(-1)
	defer func() { <-f.turn }()
	waited := false
	for conflicts := 0; ; {
		now := time.Now()
		// Permits taken for this process's queue, for a slot not yet over.
		if f.pool > 0 && f.poolSlot >= f.slotOf(now) {
			f.pool--
			return f.waitSlot(ctx, f.poolSlot)
		}
		b, rev, err := f.read(ctx)
		if err != nil {
			return err
		}
		target := max(f.slotOf(now), b.last-int64(f.lead))
		f.checkClock(now, b.last)
		b.advance(target)
		if b.at(target) >= f.slotCap() {
			// Paced: that slot had its share; wait for the next one.
			if !waited {
				waited = true
				f.cfg.Stats.RateWaits.Add(1)
			}
			next := time.Duration(target+1)*f.slot - time.Duration(now.UnixNano())
			if err := sleep(ctx, max(next, 0)+jitter(f.slot/10)); err != nil {
				return err
			}
			continue
		}
		if room := f.room(b, target); room > 0 {
			// Take permits for the goroutines queued behind this one too,
			// and a few for the requests about to come (a sixteenth of a
			// slot's share; those unused when the slot ends are lost),
			// within the slot's share and the budget, so that a busy
			// process pays one compare-and-set for many requests.
			n := min(int(f.queued.Load())+1+int(f.slotCap()/16), int(f.slotCap()-b.at(target)), room)
			b.addN(target, uint32(n))
			if rev == 0 {
				_, err = f.cfg.KV.Create(ctx, f.rateKey, b.encode())
			} else {
				_, err = f.cfg.KV.Update(ctx, f.rateKey, b.encode(), rev)
			}
			if err == nil {
				if took := time.Since(now); f.slotOf(now.Add(took)) > target {
					// The store answered after the permits' slot ended:
					// handed out now, they would leave later than the
					// ring counts them. Move them to a slot ahead.
					at, err := f.restamp(ctx, target, n, took)
					if err != nil {
						return err
					}
					if at < 0 {
						continue // left counted and unused
					}
					target = at
				}
				f.pool, f.poolSlot = n-1, target
				return f.waitSlot(ctx, target)
			}
			if !broker.IsConflict(err) {
				return fmt.Errorf("throttle: %s: update the budget: %w", f.cfg.Name, err)
			}
			// Another process took a grant first: try again after a
			// moment, growing with repeated losses.
			f.cfg.Stats.Conflicts.Add(1)
			conflicts++
			if err := sleep(ctx, jitter(time.Duration(min(conflicts, 10))*time.Millisecond)); err != nil {
				return err
			}
			continue
		}
		if !waited {
			waited = true
			f.cfg.Stats.RateWaits.Add(1)
		}
		// Full: wait until the oldest counted slot leaves the window.
		wait := time.Duration(b.oldestSince(f.windowStart(target))+int64(f.window))*f.slot - time.Duration(now.UnixNano())
		if err := sleep(ctx, max(wait, time.Millisecond)+jitter(f.slot/4)); err != nil {
			return err
		}
	}
}

// read returns the budget and its revision (0: not yet created).
func (f *Fleet) read(ctx context.Context) (budget, uint64, error) {
	entry, err := f.cfg.KV.Get(ctx, f.rateKey)
	switch {
	case err == nil:
		return decodeBudget(entry.Value(), f.ring, f.slot), entry.Revision(), nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return newBudget(f.ring, f.slot), 0, nil
	default:
		return budget{}, 0, fmt.Errorf("throttle: %s: read the budget: %w", f.cfg.Name, err)
	}
}

// slotOf is the slot of time t.
func (f *Fleet) slotOf(t time.Time) int64 { return t.UnixNano() / int64(f.slot) }

// maxLead is the furthest ahead of now a move counts permits: 2% of the
// window (6 s of BC's 5 minutes), at least a slot and 250 ms, so that a
// store that answers in tens of milliseconds on a loaded machine lands its
// moves on a short window too. The ring keeps that many slots more than
// the window, for the grants counted behind a move (see grant).
func (f *Fleet) maxLead() time.Duration {
	return max(f.slot, f.cfg.Window/50, 250*time.Millisecond)
}

// checkClock warns, at most once a minute, when the newest count lies
// further ahead of now than a move goes: another process's clock is ahead
// of this one's, and this process waits for it at each grant.
func (f *Fleet) checkClock(now time.Time, last int64) {
	ahead := time.Duration(last-f.slotOf(now)) * f.slot
	if ahead <= f.maxLead()+f.slot {
		return
	}
	prev := f.clockWarned.Load()
	if now.UnixNano()-prev < int64(time.Minute) || !f.clockWarned.CompareAndSwap(prev, now.UnixNano()) {
		return
	}
	f.cfg.Log.Warn().Str("budget", f.cfg.Name).Dur("ahead", ahead).
		Msg("another worker counts this budget ahead of this worker's clock, and this worker waits for it: check that the workers' clocks are synchronized (NTP)")
}

// room is how many more permits slot target may count: the budget less
// the permits counted from the start of target's window to the newest slot.
// Counting the newer slots too bounds every window that holds target, also
// when target lies behind the newest slot (see grant).
func (f *Fleet) room(b budget, target int64) int {
	return f.cfg.Requests - b.usedSince(f.windowStart(target))
}

// windowStart is the first slot of the window that ends with slot target.
func (f *Fleet) windowStart(target int64) int64 { return target - int64(f.window) + 1 }

// waitSlot waits until slot begins.
func (f *Fleet) waitSlot(ctx context.Context, slot int64) error {
	if d := time.Until(time.Unix(0, slot*int64(f.slot))); d > 0 {
		return sleep(ctx, d)
	}
	return nil
}

// restamp moves n permits counted in slot from, which ended before the
// compare-and-set that counted them answered after took, to a slot ahead:
// that of now plus twice the last round trip, at most maxLead. It returns
// that slot. A move that answers after its own slot ended is moved again,
// ahead by its own round trip. Handing such permits out, or dropping them,
// would let requests out later than the ring counts them, or burn the
// fleet's budget for as long as the store stays slow. The lead is not kept
// for later grants: one slow answer (a NATS hiccup) must not hold back the
// requests after it.
//
// It returns -1, leaving the permits counted and unused (Stale), when
// other processes kept winning the compare-and-set, and when from left the
// ring meanwhile and the budget has no room for them now.
func (f *Fleet) restamp(ctx context.Context, from int64, n int, took time.Duration) (int64, error) {
	// Lost races with other processes only cost a short wait, as in grant.
	for conflicts := 0; conflicts < 100; {
		now := time.Now()
		b, rev, err := f.read(ctx)
		if err != nil {
			return 0, err
		}
		target := max(f.slotOf(now.Add(min(2*took, f.maxLead()))), b.last-int64(f.lead))
		b.advance(target)
		// Moved later, the permits fall in windows they were not checked
		// against (and when from left the ring, they are counted nowhere):
		// they need room there.
		b.take(from, uint32(n))
		if f.room(b, target) < n {
			break
		}
		b.addN(target, uint32(n))
		_, err = f.cfg.KV.Update(ctx, f.rateKey, b.encode(), rev)
		switch {
		case err == nil:
			f.cfg.Stats.Restamped.Add(int64(n))
			if took = time.Since(now); f.slotOf(now.Add(took)) <= target {
				return target, nil
			}
			from = target // late again: move them ahead again
		case !broker.IsConflict(err):
			return 0, fmt.Errorf("throttle: %s: update the budget: %w", f.cfg.Name, err)
		default:
			conflicts++
			f.cfg.Stats.Conflicts.Add(1)
			if err := sleep(ctx, jitter(time.Duration(min(conflicts, 10))*time.Millisecond)); err != nil {
				return 0, err
			}
		}
	}
	f.cfg.Stats.Stale.Add(int64(n))
	return -1, nil
}

// slotCap is how many grants one slot may hold: the budget's average share
// of a slot, rounded up (at least 1), so that a backlog is sent at about the
// budget's pace rather than in one burst per window. BC sees a steadier
// load, and the fleet's token stays in use.
func (f *Fleet) slotCap() uint32 {
	return uint32(max(1, (f.cfg.Requests+f.cfg.Slots-1)/f.cfg.Slots))
}

// Throttled pauses every worker of this budget for d: the service answered
// 429 or sent Retry-After. A shorter pause than the current one is ignored.
func (f *Fleet) Throttled(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	f.cfg.Stats.Pauses.Add(1)
	until := f.now().Add(d).UnixNano()
	if until <= f.pausedUntil.Load() {
		return
	}
	f.pausedUntil.Store(until)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	val := encodePause(d)
	for range 5 {
		e, err := f.cfg.KV.Get(ctx, f.pauseKey)
		var rev uint64
		if err == nil {
			rev = e.Revision()
			if pauseEnd(e, f.now(), false) >= until {
				return
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		if rev == 0 {
			_, err = f.cfg.KV.Create(ctx, f.pauseKey, val)
		} else {
			_, err = f.cfg.KV.Update(ctx, f.pauseKey, val, rev)
		}
		if err == nil {
			f.cfg.Log.Warn().Str("budget", f.cfg.Name).Dur("pause", d).Msg("throttled by the service: every worker of this budget pauses")
			return
		}
		if !broker.IsConflict(err) {
			return
		}
	}
}

// watch keeps pausedUntil in step with the bucket, and learns when other
// processes wait for a concurrency lease (see announceWant), from the first
// Acquire until Close. While the watch is down, each call hurries the next
// attempt to set it up.
func (f *Fleet) watch() {
	f.watchOnce.Do(func() {
		if !f.leases.startBackground(&f.bg) {
			return // closed
		}
		go f.watchLoop()
	})
	if !f.watching.Load() {
		select {
		case f.watchKick <- struct{}{}:
		default:
		}
	}
}

// watchLoop follows the bucket until Close, setting its watch up again
// whenever it could not be set up (NATS unreachable at the first request)
// or ended: after a wait growing with the failures in a row (0.1s to 2s),
// or as soon as an Acquire needs it, but at most every 100ms.
func (f *Fleet) watchLoop() {
	defer f.bg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for failures := 0; ; {
		if f.follow(min(time.Second<<min(failures, 3), 5*time.Second)) {
			failures = 0
		} else {
			failures++
		}
		if sleep(f.life, 100*time.Millisecond) != nil {
			return
		}
		wait := min(100*time.Millisecond<<min(failures, 5), 2*time.Second)
		timer.Reset(wait/2 + jitter(wait/2))
		select {
		case <-timer.C:
		case <-f.watchKick:
		case <-f.life.Done():
			return
		}
	}
}

// follow watches the bucket until the watch ends or the Fleet closes. It
// reports whether the watch was set up within setup: a request sent as
// the connection broke is never answered (1s at first, longer after
// failures, so that a slow store still gets there).
func (f *Fleet) follow(setup time.Duration) bool {
	ctx, cancel := context.WithCancel(f.life) // the watch lives as long as ctx
	defer cancel()
	// A watch of a bucket lost and made again (a NATS restart, another
	// process's Recreate) may stay open and hear nothing: it is set up
	// anew every watchRefresh, which bounds how long a pause can go
	// unheard.
	refresh := time.AfterFunc(watchRefresh+jitter(watchRefresh/4), cancel)
	defer refresh.Stop()
	f.watchMu.Lock()
	f.watchStop = cancel
	f.watchMu.Unlock()
	timer := time.AfterFunc(setup, cancel)
	w, err := f.cfg.KV.WatchFiltered(ctx, []string{f.pauseKey, f.leases.wantPrefix + "*"})
	if !timer.Stop() || err != nil {
		if err == nil {
			w.Stop()
		}
		return false
	}
	defer w.Stop()
	f.watching.Store(true)
	defer f.watching.Store(false)
	live := false // past the values the bucket held when the watch began
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return true
			}
			if e == nil {
				live = true
				f.readyOnce.Do(func() { close(f.watchReady) })
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			switch key := e.Key(); {
			case key == f.pauseKey:
				if v := pauseEnd(e, time.Now(), live); v > f.pausedUntil.Load() {
					f.pausedUntil.Store(v)
				}
			case key != f.leases.wantKey:
				f.leases.othersWant(time.Now())
			}
		case <-ctx.Done():
			return true
		}
	}
}

// watchRefresh is about how long one watch of the bucket is kept before it
// is set up again (see follow): one consumer made per process and budget
// every 8-10 s.
const watchRefresh = 8 * time.Second

// recreate makes the bucket again with cfg.Recreate if err says that it is
// gone, at most once a second, and then sets the watch up again (the old
// one followed the lost bucket). It reports whether the bucket was made
// again, by this call or by another within the last second.
func (f *Fleet) recreate(ctx context.Context, err error) bool {
	if f.cfg.Recreate == nil || !bucketGone(err) || ctx.Err() != nil {
		return false
	}
	f.recreateMu.Lock()
	defer f.recreateMu.Unlock()
	if time.Since(f.recreateLast) < time.Second {
		return f.recreateOK
	}
	f.recreateLast = time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rerr := f.cfg.Recreate(rctx); rerr != nil {
		f.recreateOK = false
		f.cfg.Log.Warn().Err(rerr).Str("budget", f.cfg.Name).Msg("the throttle bucket is gone and could not be made again")
		return false
	}
	f.recreateOK = true
	f.cfg.Log.Warn().Err(err).Str("budget", f.cfg.Name).
		Msg("the throttle bucket was gone (a NATS restart?) and was made again: the budget's counts start afresh")
	f.watchMu.Lock()
	if f.watchStop != nil {
		f.watchStop()
	}
	f.watchMu.Unlock()
	return true
}

// bucketGone reports whether err says that the bucket's stream does not
// exist: no server answers for it, or the server says so.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

func (f *Fleet) waitPause(ctx context.Context) error {
	for {
		until := f.pausedUntil.Load()
		d := time.Until(time.Unix(0, until))
		if d <= 0 {
			return nil
		}
		if err := sleep(ctx, d+jitter(d/10)); err != nil {
			return err
		}
	}
}

// pauseFormat begins a pause's value: 1 is the pause's length, in
// nanoseconds (8 bytes, big-endian), so that each host derives its end
// from its own clock and no two hosts' clocks are compared. A value of 8
// bytes is the pause's end, as bcsync wrote it before: unix nanoseconds of
// the writer's clock, still honoured as such during a rolling upgrade
// (hosts running that older bcsync ignore the new values: they pause on
// their own 429s only, until they are replaced).
const pauseFormat = 1

func encodePause(d time.Duration) []byte {
	return binary.BigEndian.AppendUint64([]byte{pauseFormat}, uint64(d))
}

// pauseEnd is when the pause in e ends, in unix nanoseconds of this host's
// clock (0: none), seen at now. A pause that arrives live, as it is
// written, lasts its length from now. One written earlier (found when the
// watch began, or read by Throttled) ends its length after the store wrote
// it, by the store's clock, but never later than its length from now.
func pauseEnd(e jetstream.KeyValueEntry, now time.Time, live bool) int64 {
	b := e.Value()
	switch {
	case len(b) == 9 && b[0] == pauseFormat:
		d := time.Duration(binary.BigEndian.Uint64(b[1:]))
		if d <= 0 {
			return 0
		}
		end := now.Add(d).UnixNano()
		if !live {
			end = min(end, e.Created().Add(d).UnixNano())
		}
		return end
	case len(b) == 8:
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

// budget counts grants per slot over the last len(counts) slots, the newest
// being slot last; slot is the slots' length, in nanoseconds.
type budget struct {
	last   int64
	slot   int64
	counts []uint32 // counts[i] is slot last-len+1+i
}

func newBudget(n int, slot time.Duration) budget {
	return budget{slot: int64(slot), counts: make([]uint32, n)}
}

// decodeBudget reads a budget of n slots of length slot. A budget of
// another layout (other slots, another ring, or a value from an older
// bcsync) starts afresh: its slot numbers mean other times. Processes whose
// budgets differ so (an operator changed the window while old workers
// still run) reset each other's counts until the old ones are gone; BC's
// 429, which pauses the fleet, bounds the overrun meanwhile.
func decodeBudget(b []byte, n int, slot time.Duration) budget {
	if len(b) != 16+4*n || int64(binary.BigEndian.Uint64(b[8:])) != int64(slot) {
		return newBudget(n, slot)
	}
	out := budget{last: int64(binary.BigEndian.Uint64(b)), slot: int64(slot), counts: make([]uint32, n)}
	for i := range n {
		out.counts[i] = binary.BigEndian.Uint32(b[16+4*i:])
	}
	return out
}

func (b budget) encode() []byte {
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 16+4*len(b.counts)), uint64(b.last))
	out = binary.BigEndian.AppendUint64(out, uint64(b.slot))
	for _, c := range b.counts {
		out = binary.BigEndian.AppendUint32(out, c)
	}
	return out
}

// advance moves the ring so that slot cur is the newest.
func (b *budget) advance(cur int64) {
	shift := cur - b.last
	if shift <= 0 {
		return
	}
	n := int64(len(b.counts))
	if shift >= n {
		clear(b.counts)
	} else {
		copy(b.counts, b.counts[shift:])
		clear(b.counts[n-shift:])
	}
	b.last = cur
}

// addN counts n grants in slot cur (a slot older than the ring counts in
// the oldest).
func (b *budget) addN(cur int64, n uint32) {
	b.counts[max(0, len(b.counts)-1-int(b.last-cur))] += n
}

// take removes n grants from slot cur, if cur is still in the ring and holds
// them, and reports whether it did.
func (b *budget) take(cur int64, n uint32) bool {
	i := len(b.counts) - 1 - int(b.last-cur)
	if i < 0 || i >= len(b.counts) || b.counts[i] < n {
		return false
	}
	b.counts[i] -= n
	return true
}

// at is the count of slot cur (0 when it is older than the ring).
func (b budget) at(cur int64) uint32 {
	i := len(b.counts) - 1 - int(b.last-cur)
	if i < 0 {
		return 0
	}
	return b.counts[i]
}

// usedSince counts the grants from slot from to the newest.
func (b budget) usedSince(from int64) int {
	n := 0
	for i := b.index(from); i < len(b.counts); i++ {
		n += int(b.counts[i])
	}
	return n
}

// oldestSince is the oldest slot from slot from on with a grant.
func (b budget) oldestSince(from int64) int64 {
	for i := b.index(from); i < len(b.counts); i++ {
		if b.counts[i] > 0 {
			return b.last - int64(len(b.counts)-1-i)
		}
	}
	return b.last
}

// index is where slot cur is counted, or would be (0 when it is older than
// the ring, len(b.counts) when newer).
func (b budget) index(cur int64) int {
	return min(max(0, len(b.counts)-1-int(b.last-cur)), len(b.counts))
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("throttle: %w", ctx.Err())
	}
}
