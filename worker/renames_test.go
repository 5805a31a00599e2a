package worker_test

// Renames, deletes and GUID spellings against DESIGN invariants 2 and 7.
// A review wrote these tests; each failed before its fix: aliases now carry
// the time they were written and a rename clears the former code's claim,
// a read older than the record's state under another code is stale, a
// delete leaves its time in the version and checks that the code is still
// the record's, and a GUID takes one lock in any case.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bcsync/bcsync/bcclient/bctest"
	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/broker/brokertest"
	"github.com/bcsync/bcsync/messages"
	"github.com/bcsync/bcsync/worker"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// runJob publishes one job and waits until the fleet acked it (acked is
// the count to reach).
func runJob(t *testing.T, e *e2e, job messages.Job, acked int64) {
	t.Helper()
	job.Subscription = "contoso"
	if _, _, err := messages.Publish(context.Background(), e.b.JS, job); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "job acked", func() bool { return e.stats.Acked.Load() >= acked })
	if d := e.stats.DeadLettered.Load(); d != 0 {
		t.Fatalf("%d dead letters", d)
	}
}

func resolveAlias(t *testing.T, e *e2e, guid string) string {
	t.Helper()
	ctx := context.Background()
	kv, err := e.b.JS.KeyValue(ctx, broker.BucketRecords)
	if err != nil {
		t.Fatal(err)
	}
	ext, _, err := worker.NewRecordLocks(e.b.JS, kv, time.Minute).Resolve(ctx, "contoso", messages.TypeLocation, guid)
	if err != nil {
		t.Fatal(err)
	}
	return ext
}

// oneLocation is a rig whose BC holds one location: its code and BC id.
func oneLocation(t *testing.T) (*e2e, string, string) {
	t.Helper()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 1}})
	c := e.bc.LocationCodes()[0]
	return e, c, recordIDs(t, e.bc, bctest.SetLocations, []string{c})[0]
}

func locationSnapshot(t *testing.T, e *e2e, code string) json.RawMessage {
	t.Helper()
	rec, ok := e.bc.Record(bctest.SetLocations, code)
	if !ok {
		t.Fatalf("no location %s", code)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A record renamed C -> C2 and back to C keeps its alias at C2: Record
// writes the alias only when the version of the external id names another
// BC id, and ver.C still names this one from before the first rename. Once
// C2 is reused by another record, deleting the first deactivates the
// other's iPaaS.com record and leaves its own active.
func TestRenameBackMovesTheAliasBack(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 2}})
	codes := e.bc.LocationCodes()
	c, d := codes[0], codes[1]
	ids := recordIDs(t, e.bc, bctest.SetLocations, codes)
	g, gd := ids[0], ids[1]
	const c2 = "RENAMED"
	e.startWorker("w1", zerolog.Nop(), nil)

	up := func(key string) messages.Job {
		return messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: key}
	}
	runJob(t, e, up(g), 1) // synced as C
	if !e.bc.Rename(bctest.SetLocations, c, c2) {
		t.Fatal("rename failed")
	}
	runJob(t, e, up(g), 2) // synced as C2: alias G -> C2
	if !e.bc.Rename(bctest.SetLocations, c2, c) {
		t.Fatal("rename back failed")
	}
	runJob(t, e, up(g), 3) // synced as C again
	if got := resolveAlias(t, e, g); got != c {
		t.Errorf("after the rename back to %s, the alias of %s resolves to %q", c, g, got)
	}
	// Another record takes the freed code C2.
	if !e.bc.Rename(bctest.SetLocations, d, c2) {
		t.Fatal("rename of the second record failed")
	}
	runJob(t, e, up(gd), 4)
	// BC deletes the first record (its notification carries the GUID only).
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpDelete, Key: g}, 5)

	if _, ok := e.ip.Lookup("location", c); ok {
		t.Errorf("location %s (BC id %s, deleted) is still active at iPaaS.com", c, g)
	}
	if _, ok := e.ip.Lookup("location", c2); !ok {
		t.Errorf("location %s (BC id %s, never deleted) was deactivated by the delete of %s", c2, gd, g)
	}
}

// An older snapshot (an initialize job listed the record before BC renamed
// it C -> X) that runs after the rename was synced is not seen as stale:
// versions are kept per code and C has none. It creates a record for a
// code BC no longer has and moves the record's alias back to C, so BC's
// delete of the record deactivates that ghost and leaves X active.
func TestSnapshotFromBeforeARenameIsStale(t *testing.T) {
	t.Parallel()
	e, c, g := oneLocation(t)
	const x = "RENAMED"
	old := locationSnapshot(t, e, c)
	time.Sleep(5 * time.Millisecond)
	if !e.bc.Rename(bctest.SetLocations, c, x) {
		t.Fatal("rename failed")
	}
	e.startWorker("w1", zerolog.Nop(), nil)

	// The rename's job (by GUID, as a webhook sends it) runs first.
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: g}, 1)
	// The initialize's job for the record, with its older snapshot, second.
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: c, Data: old, Source: "initialize:review"}, 2)
	if got := resolveAlias(t, e, g); got != x {
		t.Errorf("after an older snapshot of %s, the alias of %s resolves to %q, want %q", c, g, got, x)
	}
	if _, ok := e.ip.Lookup("location", c); ok {
		t.Errorf("a snapshot older than the record's last write created location %s, a code BC no longer has", c)
	}
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpDelete, Key: g}, 3)
	if _, ok := e.ip.Lookup("location", x); ok {
		t.Errorf("location %s (BC id %s) is still active after BC deleted it", x, g)
	}
}

// A delete leaves no mark in the versions: a snapshot with the very
// lastModifiedDateTime last written (an initialize job that listed the
// record before BC deleted it, run after the delete) is not stale, and
// recreates the deleted record at iPaaS.com.
func TestSnapshotFromBeforeADeleteIsStale(t *testing.T) {
	t.Parallel()
	e, c, g := oneLocation(t)
	snap := locationSnapshot(t, e, c)
	e.startWorker("w1", zerolog.Nop(), nil)

	// A webhook's job syncs the record; BC deletes it; its delete runs,
	// carrying the notification's time, as the webhook's jobs do.
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: g}, 1)
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpDelete, Key: g, ChangedAt: time.Now().UTC()}, 2)
	if _, ok := e.ip.Lookup("location", c); ok {
		t.Fatalf("location %s still active after its delete", c)
	}
	// The initialize's job, whose snapshot predates the delete, runs last.
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: c, Data: snap, Source: "initialize:review"}, 3)
	if _, ok := e.ip.Lookup("location", c); ok {
		t.Errorf("a snapshot read before BC deleted location %s recreated it at iPaaS.com after its delete (%d live records)", c, e.ip.Count("location"))
	}
}

// holdRead holds the answer of the first BC GET that match accepts: it
// signals read once BC answered, and returns the answer once release is
// closed.
type holdRead struct {
	match         func(*http.Request) bool
	read, release chan struct{}
	once          *sync.Once
}

func newHoldRead(match func(*http.Request) bool) holdRead {
	return holdRead{match: match, read: make(chan struct{}), release: make(chan struct{}), once: new(sync.Once)}
}

func (h holdRead) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if r.Method == http.MethodGet && h.match(r) {
		first := false
		h.once.Do(func() { first = true })
		if first {
			close(h.read)
			<-h.release
		}
	}
	return resp, err
}

// Record locks are keyed by the job's key as written, and BC GUIDs are
// case-insensitive (messages accept either case, sameKey and Resolve fold
// it): two jobs naming one record by its GUID in two cases take two locks
// and run at once. Here an upsert that read the record just before BC
// deleted it writes after the record's delete ran, and recreates it.
func TestGUIDInTwoCasesTakesOneLock(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 1}})
	c := e.bc.LocationCodes()[0]
	g := strings.ToLower(recordIDs(t, e.bc, bctest.SetLocations, []string{c})[0])
	upper := strings.ToUpper(g)
	if upper == g {
		t.Skip("GUID without letters")
	}
	ht := newHoldRead(func(r *http.Request) bool { return strings.Contains(r.URL.Path, upper) })
	e.startWorker("w1", zerolog.Nop(), &http.Client{Transport: ht, Timeout: 30 * time.Second})

	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: g}, 1)
	// An upsert naming the record by its GUID in upper case reads it...
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: upper}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ht.read:
	case <-time.After(10 * time.Second):
		t.Fatal("the upper-case job never read the record")
	}
	// ...BC deletes the record, and its delete job (lower case) comes in.
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpDelete, Key: g}); err != nil {
		t.Fatal(err)
	}
	ranAtOnce := true
	deadline := time.Now().Add(3 * time.Second)
	for e.stats.Acked.Load() < 2 {
		if time.Now().After(deadline) {
			ranAtOnce = false // the delete waits for the upsert: right
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ranAtOnce {
		t.Errorf("the delete of %s ran to completion while the upsert of %s (the same record) was running", g, upper)
	}
	close(ht.release)
	waitFor(t, 20*time.Second, "both jobs acked", func() bool { return e.stats.Acked.Load() == 3 })
	if _, ok := e.ip.Lookup("location", c); ok {
		t.Errorf("location %s is active at iPaaS.com after BC deleted it and its delete job ran last", c)
	}
}

// A delete by GUID trusts the alias without checking that the code's
// version still names that GUID: record A (code C) is renamed to X and
// deleted before its rename was synced (the updated notification's read
// finds nothing), while record B took the code C and was synced. The
// version of C names B, yet A's delete deactivates B's iPaaS.com record.
func TestDeleteByGUIDLeavesTheRecordThatReusedTheCode(t *testing.T) {
	t.Parallel()
	e := newE2E(t, e2eOptions{bc: bctest.Options{Locations: 2}})
	codes := e.bc.LocationCodes()
	c, d := codes[0], codes[1]
	ids := recordIDs(t, e.bc, bctest.SetLocations, codes)
	ga, gb := ids[0], ids[1]
	e.startWorker("w1", zerolog.Nop(), nil)
	up := func(key string) messages.Job {
		return messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: key}
	}
	runJob(t, e, up(ga), 1)
	runJob(t, e, up(gb), 2)
	// A is renamed C -> X (and then deleted: its rename is never synced);
	// B is renamed D -> C and synced.
	if !e.bc.Rename(bctest.SetLocations, c, "RENAMED") || !e.bc.Rename(bctest.SetLocations, d, c) {
		t.Fatal("rename failed")
	}
	runJob(t, e, up(gb), 3)
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpDelete, Key: ga}, 4)
	if _, ok := e.ip.Lookup("location", c); !ok {
		t.Errorf("location %s (now BC id %s, never deleted) was deactivated by the delete of %s, its former holder", c, gb, ga)
	}
}

// A job keyed by the code C reads the record (changed, code still C) while
// BC renames C -> X and the rename's job (keyed by g: it holds g and X)
// syncs it. The rename's job once cleared C's claim on g at once, and the
// job of C, going on with its stale copy of the version, named g there
// again: after a rename back, the alias stayed at X and BC's delete
// deactivated X, leaving C active. The rename's job now takes C's lock
// before it clears C's claim, so it waits for the job of C.
func TestRenameWaitsForAJobOfTheFormerCode(t *testing.T) {
	t.Parallel()
	e, c, g := oneLocation(t)
	const x = "RENAMED"
	// A read of the record by its code, once armed.
	var armed atomic.Bool
	ht := newHoldRead(func(r *http.Request) bool {
		return armed.Load() && strings.Contains(r.URL.Query().Get("$filter"), "'"+c+"'")
	})
	e.startWorker("w1", zerolog.Nop(), &http.Client{Transport: ht, Timeout: 30 * time.Second})
	up := func(key string) messages.Job {
		return messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: key}
	}
	runJob(t, e, up(g), 1) // synced as C

	// BC changes the record (its code stays C); a job for C reads it...
	time.Sleep(5 * time.Millisecond)
	if !e.bc.UpdateLocation(c, func(f map[string]any) { f["displayName"] = "changed" }) {
		t.Fatal("update failed")
	}
	armed.Store(true)
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: c}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ht.read:
	case <-time.After(10 * time.Second):
		t.Fatal("the job of the code never read the record")
	}
	time.Sleep(200 * time.Millisecond)
	// ...BC renames it C -> X and the rename's job syncs it.
	time.Sleep(5 * time.Millisecond)
	if !e.bc.Rename(bctest.SetLocations, c, x) {
		t.Fatal("rename failed")
	}
	// The rename's job runs while the job of C is held: it must wait for C
	// (the code it takes the record from) before it clears C's claim.
	if _, _, err := messages.Publish(context.Background(), e.b.JS, messages.Job{Subscription: "contoso", Type: messages.TypeLocation, Op: messages.OpUpsert, Key: g}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	// The job of C finishes with its read from before the rename.
	close(ht.release)
	waitFor(t, 20*time.Second, "both jobs acked", func() bool { return e.stats.Acked.Load() >= 3 })
	if got := resolveAlias(t, e, g); got != x {
		t.Fatalf("after the rename, the alias of %s resolves to %q, want %q", g, got, x)
	}

	logRecordState(t, e, c, x, g)
	// BC renames it back X -> C, and that is synced.
	time.Sleep(5 * time.Millisecond)
	if !e.bc.Rename(bctest.SetLocations, x, c) {
		t.Fatal("rename back failed")
	}
	runJob(t, e, up(g), 4)
	if got := resolveAlias(t, e, g); got != c {
		t.Errorf("after the rename back to %s, the alias of %s resolves to %q", c, g, got)
	}
	logRecordState(t, e, c, x, g)
	// BC deletes the record.
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpDelete, Key: g}, 5)
	if _, ok := e.ip.Lookup("location", c); ok {
		t.Errorf("location %s (BC id %s, deleted in BC) is still active at iPaaS.com", c, g)
	}
}

func logRecordState(t *testing.T, e *e2e, c, x, g string) {
	ctx := context.Background()
	kv, _ := e.b.JS.KeyValue(ctx, broker.BucketRecords)
	rl := worker.NewRecordLocks(e.b.JS, kv, time.Minute)
	vc, _ := rl.Version(ctx, "contoso", messages.TypeLocation, c)
	vx, _ := rl.Version(ctx, "contoso", messages.TypeLocation, x)
	a, _, _ := rl.Resolve(ctx, "contoso", messages.TypeLocation, g)
	t.Logf("ver C %+v ver X %+v alias %s", vc, vx, a)
}

// failVersionGet fails every Get of one key while armed: NATS failing
// the request (or the worker dying) between Record's alias write and
// its forgetID.
type failVersionGet struct {
	jetstream.KeyValue
	key   string
	armed atomic.Bool
}

func (f *failVersionGet) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if f.armed.Load() && key == f.key {
		return nil, errors.New("review: injected KV failure")
	}
	return f.KeyValue.Get(ctx, key)
}

// reviewUpsert runs the version steps of one upsert as worker/sync.go
// does: Version, Stale, WrittenElsewhere, (the write), Record.
func reviewUpsert(ctx context.Context, rl *worker.RecordLocks, ext, id string, mod time.Time) (bool, error) {
	prior, err := rl.Version(ctx, "contoso", messages.TypeLocation, ext)
	if err != nil {
		return false, err
	}
	if prior.Stale(mod) {
		return false, nil
	}
	if _, stale, err := rl.WrittenElsewhere(ctx, "contoso", messages.TypeLocation, ext, id, mod, &prior); err != nil || stale {
		return false, err
	}
	return true, rl.Record(ctx, "contoso", messages.TypeLocation, ext, prior, mod, id)
}

// Record once wrote the alias first, then cleared the former code's claim.
// A failure between the two (a KV error, or the worker dying) was retried
// with the job, but the retry found the alias already at the new code and
// never cleared the claim: a rename back then left the alias at the
// intermediate code, and BC's delete deactivated that one. The claim is
// now cleared before the alias moves.
func TestRenameClearsTheFormerClaimOnRetry(t *testing.T) {
	t.Parallel()
	b := brokertest.New(t)
	kv := &failVersionGet{KeyValue: brokertest.KV(t, b, broker.BucketRecords), key: "ver.contoso.location.EAST"}
	rl := worker.NewRecordLocks(b.JS, kv, time.Minute)
	ctx := context.Background()
	const g = "5d1c2c0e-8f8a-4b53-9a3e-0c1d2e3f4a5b"
	t1 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	t2, t3 := t1.Add(time.Minute), t1.Add(2*time.Minute)

	if _, err := reviewUpsert(ctx, rl, "EAST", g, t1); err != nil { // synced as EAST
		t.Fatal(err)
	}
	// Renamed EAST -> WEST; the first attempt fails in forgetID...
	kv.armed.Store(true)
	if _, err := reviewUpsert(ctx, rl, "WEST", g, t2); err == nil {
		t.Fatal("the injected failure did not fail Record")
	}
	kv.armed.Store(false)
	// ...and the job's retry succeeds.
	if _, err := reviewUpsert(ctx, rl, "WEST", g, t2); err != nil {
		t.Fatal(err)
	}
	if v, err := rl.Version(ctx, "contoso", messages.TypeLocation, "EAST"); err != nil || v.ID != "" {
		t.Errorf("after the rename EAST -> WEST was synced (on retry), EAST's version still names %q (err %v)", v.ID, err)
	}
	// Renamed back WEST -> EAST, synced.
	if wrote, err := reviewUpsert(ctx, rl, "EAST", g, t3); err != nil || !wrote {
		t.Fatalf("rename back: wrote %v, err %v", wrote, err)
	}
	if ext, _, err := rl.Resolve(ctx, "contoso", messages.TypeLocation, g); err != nil || ext != "EAST" {
		t.Errorf("after the rename back to EAST, the alias of the record resolves to %q (err %v): its delete would deactivate that one and leave EAST active", ext, err)
	}
}

// A record renamed C -> X -> C, the rename back synced first, then a late
// read of the middle state (X) arrives: it once passed the stale check (the
// alias kept the time it moved at, older than the read) and created X at
// iPaaS.com, moving the alias there. The stale check now also weighs the
// record's later writes under the alias's code.
func TestLateReadOfAMiddleCodeIsStale(t *testing.T) {
	t.Parallel()
	e, c, g := oneLocation(t)
	const x = "RENAMED"
	e.startWorker("w1", zerolog.Nop(), nil)
	up := func(key string) messages.Job {
		return messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: key}
	}
	runJob(t, e, up(g), 1) // synced as C at t0

	time.Sleep(5 * time.Millisecond)
	if !e.bc.Rename(bctest.SetLocations, c, x) { // t1
		t.Fatal("rename failed")
	}
	mid := locationSnapshot(t, e, x)
	time.Sleep(5 * time.Millisecond)
	if !e.bc.Rename(bctest.SetLocations, x, c) { // t2
		t.Fatal("rename back failed")
	}
	runJob(t, e, up(g), 2) // synced as C at t2

	// The intermediate state arrives late (a webhook's snapshot, or a job
	// whose BC read was slow).
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpUpsert, Key: x, Data: mid, Source: "initialize:review"}, 3)
	logRecordState(t, e, c, x, g)
	if got := resolveAlias(t, e, g); got != c {
		t.Errorf("the alias of %s resolves to %q after a stale read of its former code %s; BC has it as %s", g, got, x, c)
	}
	if _, ok := e.ip.Lookup("location", x); ok {
		t.Errorf("a read older than the record's last write (under %s) created location %s, a code BC no longer has", c, x)
	}
	runJob(t, e, messages.Job{Type: messages.TypeLocation, Op: messages.OpDelete, Key: g}, 4)
	if _, ok := e.ip.Lookup("location", c); ok {
		t.Errorf("location %s (BC id %s, deleted in BC) is still active at iPaaS.com", c, g)
	}
}
