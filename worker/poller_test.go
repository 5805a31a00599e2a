package worker_test

import (
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/worker"
	"github.com/rs/zerolog"
)

// Locations send no webhooks: the poller finds their changes. With two
// workers, one polls per interval, and a changed record is written once.
func TestE2EPollerSyncsChangesOnceWithTwoWorkers(t *testing.T) {
	t.Parallel()
	const interval = 2 * time.Second
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 20}})
	e.cfg.Subscriptions[0].Poll.Interval = interval // below the configurable 10s, for the test
	var pollers []map[string]*worker.Poller
	e.tune = func(o *worker.Options) {
		o.Pollers = map[string]*worker.Poller{}
		pollers = append(pollers, o.Pollers)
	}
	start := time.Now()
	e.startWorker("w1", zerolog.Nop(), nil)
	e.startWorker("w2", zerolog.Nop(), nil)
	// No watermark yet: the first poll copies every location.
	waitFor(t, 20*time.Second, "the first poll's locations", func() bool { return e.ip.Count("location") == 20 })
	time.Sleep(5 * time.Millisecond)
	codes := e.bc.LocationCodes()
	for _, c := range codes[:3] {
		e.bc.UpdateLocation(c, func(f map[string]any) { f["displayName"] = "polled " + c })
	}
	before := e.ip.Stats().Updates
	waitFor(t, 20*time.Second, "the changes synced", func() bool {
		for _, c := range codes[:3] {
			if rec, _ := e.ip.Lookup("location", c); rec["description"] != "polled "+c {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * interval) // more polls: nothing changed
	if n := e.ip.Stats().Updates - before; n != 3 {
		t.Errorf("%d iPaaS.com updates for 3 changed locations", n)
	}
	elapsed := time.Since(start)
	var polls, pollingWorkers int64
	for _, m := range pollers {
		n := m["contoso"].Polls.Load()
		polls += n
		if n > 0 {
			pollingWorkers++
		}
	}
	// One poll per interval for the fleet (the lease expires a moment after
	// the interval); two workers polling each interval would double it.
	if most := int64(elapsed/interval) + 1; polls > most || polls < 2 {
		t.Errorf("%d polls in %v with a %v interval, want 2..%d", polls, elapsed.Round(time.Millisecond), interval, most)
	}
	t.Logf("%d polls in %v by %d of 2 workers", polls, elapsed.Round(time.Millisecond), pollingWorkers)
	if n := e.streamMsgs("BCSYNC_DLQ"); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}
