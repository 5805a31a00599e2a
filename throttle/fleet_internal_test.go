package throttle

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// noKV stands for a bucket the test never reaches.
type noKV struct{ jetstream.KeyValue }

func TestBudgetCountsSince(t *testing.T) {
	t.Parallel()
	// Slots 7..10, the newest 10.
	b := budget{last: 10, counts: []uint32{1, 0, 2, 3}}
	for _, c := range []struct {
		from   int64
		used   int
		oldest int64
	}{
		{from: 0, used: 6, oldest: 7}, // older than the ring: all of it
		{from: 7, used: 6, oldest: 7},
		{from: 8, used: 5, oldest: 9},
		{from: 10, used: 3, oldest: 10},
		{from: 11, used: 0, oldest: 10}, // newer than the ring: nothing
	} {
		if got := b.usedSince(c.from); got != c.used {
			t.Errorf("usedSince(%d) = %d, want %d", c.from, got, c.used)
		}
		if got := b.oldestSince(c.from); got != c.oldest {
			t.Errorf("oldestSince(%d) = %d, want %d", c.from, got, c.oldest)
		}
	}
}

// A grant counted behind another process's move ahead checks the window
// that ends with its own slot, and the moved permits too. Checking the
// window that ends with the newest slot would forget the oldest grants
// early, by as much as the move went ahead.
func TestRoomBehindAMove(t *testing.T) {
	t.Parallel()
	f, err := NewFleet(FleetConfig{KV: noKV{}, Name: "bc-app", Requests: 3, Window: time.Second, MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Slots of 10 ms; the window and its margin are 103 slots.
	b := newBudget(f.ring, f.slot)
	b.advance(1)
	b.addN(0, 1)
	b.addN(1, 1)
	b.advance(110) // a permit moved ahead to 1.1 s
	b.addN(110, 1)
	for _, c := range []struct {
		target int64
		room   int
	}{
		{target: 85, room: 0},  // slots 0 and 1 are in its window
		{target: 102, room: 0}, // and still in this one's
		{target: 103, room: 1}, // slot 0 left
		{target: 104, room: 2}, // slot 1 left
		{target: 110, room: 2},
	} {
		if got := f.room(b, c.target); got != c.room {
			t.Errorf("room at slot %d = %d, want %d", c.target, got, c.room)
		}
	}
}

func TestBudgetEncoding(t *testing.T) {
	t.Parallel()
	b := budget{last: 1234, slot: int64(10 * time.Millisecond), counts: []uint32{1, 0, 2, 3}}
	got := decodeBudget(b.encode(), 4, 10*time.Millisecond)
	if got.last != b.last || got.slot != b.slot || !slices.Equal(got.counts, b.counts) {
		t.Errorf("decoded %+v, want %+v", got, b)
	}
	old := b.encode()[:8] // the layout before slots were recorded: last, counts
	old = append(old, b.encode()[16:]...)
	for name, c := range map[string]struct {
		value []byte
		n     int
		slot  time.Duration
	}{
		"another slot length": {b.encode(), 4, 20 * time.Millisecond},
		"another ring":        {b.encode(), 5, 10 * time.Millisecond},
		"an older layout":     {old, 4, 10 * time.Millisecond},
		"garbage":             {[]byte("x"), 4, 10 * time.Millisecond},
	} {
		got := decodeBudget(c.value, c.n, c.slot)
		if got.last != 0 || got.usedSince(0) != 0 || len(got.counts) != c.n || got.slot != int64(c.slot) {
			t.Errorf("%s: decoded %+v, want a fresh budget of %d slots of %v", name, got, c.n, c.slot)
		}
	}
}

// A count far ahead of this process's clock (another worker's clock is
// ahead) makes it wait, and says why: otherwise the fleet slows down with
// no word. A count a move ahead is no reason to warn.
func TestClockAheadIsReported(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	kv := brokertest.KV(t, brokertest.New(t), broker.BucketThrottle)
	f, err := NewFleet(FleetConfig{KV: kv, Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5,
		Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	ctx := context.Background()
	for _, c := range []struct {
		ahead int64 // slots of 10 ms
		warn  bool
	}{{ahead: 20}, {ahead: 60, warn: true}} {
		logs.Reset()
		f.clockWarned.Store(0)
		b := newBudget(f.ring, f.slot)
		b.advance(f.slotOf(time.Now()) + c.ahead)
		b.addN(b.last, 1)
		if _, err := kv.Put(ctx, f.rateKey, b.encode()); err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		release, err := f.Acquire(actx)
		cancel()
		if err != nil {
			t.Fatalf("%d slots ahead: %v", c.ahead, err)
		}
		release()
		if got := strings.Contains(logs.String(), "check that the workers' clocks are synchronized"); got != c.warn {
			t.Errorf("%d slots ahead: warned %v, want %v; log:\n%s", c.ahead, got, c.warn, logs.String())
		}
	}
}

// pauseEntry is a pause as the bucket holds it, written at created by the
// store's clock.
type pauseEntry struct {
	jetstream.KeyValueEntry
	value   []byte
	created time.Time
}

func (e pauseEntry) Value() []byte                   { return e.value }
func (e pauseEntry) Created() time.Time              { return e.created }
func (e pauseEntry) Key() string                     { return "pause.x" }
func (e pauseEntry) Revision() uint64                { return 1 }
func (e pauseEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func TestPauseEnd(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	old := binary.BigEndian.AppendUint64(nil, uint64(now.Add(3*time.Second).UnixNano()))
	for _, c := range []struct {
		name    string
		value   []byte
		created time.Time
		live    bool
		want    time.Duration // from now; -1: none
	}{
		{"live: its length from now, whatever the store's clock", encodePause(5 * time.Second), now.Add(-time.Hour), true, 5 * time.Second},
		{"found at start: its length after the store wrote it", encodePause(5 * time.Second), now.Add(-2 * time.Second), false, 3 * time.Second},
		{"found at start, over", encodePause(5 * time.Second), now.Add(-time.Minute), false, -time.Minute + 5*time.Second},
		{"found at start, the store's clock ahead: at most its length", encodePause(5 * time.Second), now.Add(time.Minute), false, 5 * time.Second},
		{"an older bcsync's end", old, now, true, 3 * time.Second},
		{"zero length", encodePause(0), now, true, -1},
		{"garbage", []byte("x"), now, true, -1},
	} {
		got := pauseEnd(pauseEntry{value: c.value, created: c.created}, now, c.live)
		want := now.Add(c.want).UnixNano()
		if c.want == -1 {
			want = 0
		}
		if got != want {
			t.Errorf("%s: end %v from now, want %v", c.name, time.Duration(got-now.UnixNano()), c.want)
		}
	}
}

// A pause announced by a worker whose clock differs from this one's must
// hold this worker for what Retry-After asked. The pause was stored as its
// writer's wall-clock end and compared with each reader's clock: a writer
// 20s behind paused nobody, one 2 minutes ahead paused the fleet for 2
// minutes. The other worker here is a Fleet whose clock is skewed.
func TestPauseFromAWorkerWithAnotherClock(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		skew     time.Duration
		minPause time.Duration // what Retry-After asked for, less a margin
		maxPause time.Duration
	}{
		{"its clock 20s behind, Retry-After 5s", -20 * time.Second, 4 * time.Second, 8 * time.Second},
		{"its clock 2m ahead, Retry-After 1s", 2 * time.Minute, 0, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := brokertest.New(t)
			cfg := FleetConfig{Name: "bc-app", Requests: 1000, Window: time.Second, MaxConcurrency: 5}
			cfg.KV = brokertest.KV(t, b, broker.BucketThrottle)
			f, err := NewFleet(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			r, err := f.Acquire(context.Background()) // starts the pause watch
			if err != nil {
				t.Fatal(err)
			}
			r()
			cfg.KV = brokertest.KV(t, b, broker.BucketThrottle)
			other, err := NewFleet(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(other.Close)
			other.now = func() time.Time { return time.Now().Add(tc.skew) }
			d := tc.minPause + time.Second
			other.Throttled(d)
			time.Sleep(100 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), tc.maxPause+5*time.Second)
			defer cancel()
			start := time.Now()
			r, err = f.Acquire(ctx)
			took := time.Since(start)
			if err == nil {
				r()
			}
			if took < tc.minPause || took > tc.maxPause {
				t.Errorf("a %v pause asked by a 429 held this worker %v (err %v)", d, took.Round(time.Millisecond), err)
			}
		})
	}
}
