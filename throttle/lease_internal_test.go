package throttle

import (
	"testing"
	"time"
)

// A lease is reused only while it is younger than LeaseHold and half its
// TTL (NewFleet refuses a LeaseHold past half the TTL, so the second check
// is a guard: it is tested here, on the leases alone).
func TestLeaseReuseAndIdleDeadline(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name       string
		hold, ttl  time.Duration
		age, idle  time.Duration // of the lease; how long it has been idle
		reusable   bool
		idleBefore time.Duration // from now: when the janitor deletes it
	}{
		{"fresh", 250 * time.Millisecond, 15 * time.Second, 10 * time.Millisecond, 0, true, 20 * time.Millisecond},
		{"held too long", 250 * time.Millisecond, 15 * time.Second, 250 * time.Millisecond, 0, false, 0},
		{"hold ends before idle time", 250 * time.Millisecond, 15 * time.Second, 240 * time.Millisecond, 0, true, 10 * time.Millisecond},
		{"idle long enough", 250 * time.Millisecond, 15 * time.Second, 100 * time.Millisecond, 20 * time.Millisecond, true, 0},
		{"past half its TTL", time.Hour, 2 * time.Second, 1100 * time.Millisecond, 0, false, 0},
		{"within half its TTL", time.Hour, 2 * time.Second, 900 * time.Millisecond, 0, true, 20 * time.Millisecond},
		{"no reuse", -1, 15 * time.Second, 0, 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ls := leases{hold: tc.hold, ttl: tc.ttl, idleFor: 20 * time.Millisecond}
			l := &lease{created: now.Add(-tc.age), idleSince: now.Add(-tc.idle)}
			if got := ls.reusable(l, now); got != tc.reusable {
				t.Errorf("reusable = %v, want %v", got, tc.reusable)
			}
			if got := ls.idleDeadline(l).Sub(now); tc.reusable && got != tc.idleBefore || !tc.reusable && got > 0 {
				t.Errorf("deleted when idle in %v, want %v", got, tc.idleBefore)
			}
		})
	}
}
