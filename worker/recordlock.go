package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLockLost is returned by (*RecordLock).Renew when the lock is no longer
// its holder's: it expired (and may have been taken by another owner since),
// or it was unlocked.
var ErrLockLost = errors.New("worker: record lock lost")

// DefaultRecordLockTTL is how long a record lock lasts without renewal when
// NewRecordLocks is given no TTL.
const DefaultRecordLockTTL = 2 * time.Minute

// Key layout in the broker.BucketRecords bucket.
const (
	// lockKeyPrefix starts lock.<subscription>.<type>.<record token>.
	lockKeyPrefix = "lock."
	// versionKeyPrefix starts ver.<subscription>.<type>.<record token>.
	versionKeyPrefix = "ver."
	// aliasKeyPrefix starts id.<subscription>.<type>.<GUID>: the external id
	// of the record with that BC id.
	aliasKeyPrefix = "id."
	// maxRecordToken is the longest record token kept readable; longer ones
	// are hashed.
	maxRecordToken = 128
)

// RecordLocks keeps DESIGN invariant 2 through a NATS KV bucket
// (broker.BucketRecords) shared by the fleet: two jobs for the same record
// never run at once (Lock), and a stale BC read never overwrites a newer one
// at iPaaS.com (Version, Record).
//
// A lock is a lease: it is its holder's for the TTL after the start of the
// Lock or Renew call that last succeeded, and a holder that runs longer must
// Renew well within the TTL (every TTL/3 is a good rhythm). When a holder
// dies, a lock never renewed expires by its NATS per-key TTL, one TTL after
// it was taken, and a renewed one one TTL after its last renewal (see
// Renew). As a safety net should a key's TTL not be applied, a waiter also
// takes over a lock it saw unchanged for a whole TTL, measured on the
// waiter's own clock, so no two hosts' clocks are ever compared.
type RecordLocks struct {
	js   messages.Publisher
	kv   jetstream.KeyValue
	ttl  time.Duration
	poll time.Duration
}

// NewRecordLocks returns the locks and versions kept in kv (the
// broker.BucketRecords bucket); js renews locks (see Renew). ttl defaults to DefaultRecordLockTTL when
// <= 0, and is rounded up to whole seconds, the granularity of NATS per-key
// TTLs.
func NewRecordLocks(js messages.Publisher, kv jetstream.KeyValue, ttl time.Duration) *RecordLocks {
	if ttl <= 0 {
		ttl = DefaultRecordLockTTL
	}
	if ttl%time.Second != 0 {
		ttl = ttl.Truncate(time.Second) + time.Second
	}
	// The watch wakes a waiter as soon as the lock is released or expires;
	// this poll is the fallback should a wake-up go missing.
	return &RecordLocks{js: js, kv: kv, ttl: ttl, poll: min(ttl/4, time.Second)}
}

// TTL returns the locks' TTL after defaults and rounding.
func (r *RecordLocks) TTL() time.Duration { return r.ttl }

// RecordLock is a held lock on one record. Its methods are safe for
// concurrent use (a keep-alive goroutine may Renew while the job Unlocks).
type RecordLock struct {
	locks *RecordLocks
	key   string
	value []byte

	mu  sync.Mutex
	rev uint64 // revision of the lock's key; 0 once unlocked or lost
}

// lockValue is what a lock's key holds, for people looking at the bucket.
type lockValue struct {
	Owner      string    `json:"owner"`
	AcquiredAt time.Time `json:"acquired_at"`
}

// Lock takes the lock of one record for owner (a worker and job, for
// people reading the bucket), waiting while another owner holds it, until
// ctx ends. Errors wrap ctx.Err() when ctx ended first.
func (r *RecordLocks) Lock(ctx context.Context, subscription string, typ messages.Type, key string, owner string) (*RecordLock, error) {
	k, err := recordKey(lockKeyPrefix, subscription, typ, key)
	if err != nil {
		return nil, fmt.Errorf("worker: record lock: %w", err)
	}
	if owner == "" {
		return nil, errors.New("worker: record lock: owner is required")
	}
	value, err := json.Marshal(lockValue{Owner: owner, AcquiredAt: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("worker: record lock: %w", err)
	}

	var (
		w       jetstream.KeyWatcher
		updates <-chan jetstream.KeyValueEntry
		timer   *time.Timer
		seenRev uint64    // the holder's revision as last seen
		seenAt  time.Time // when it was first seen
	)
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		rev, err := r.kv.Create(ctx, k, value, jetstream.KeyTTL(r.ttl))
		if err == nil {
			return &RecordLock{locks: r, key: k, value: value, rev: rev}, nil
		}
		if !broker.IsConflict(err) {
			return nil, lockErr(ctx, "take "+k, err)
		}
		if w == nil {
			// Watch before looking again, so that a release between the two
			// is not missed.
			if w, err = r.kv.Watch(ctx, k, jetstream.UpdatesOnly()); err != nil {
				return nil, lockErr(ctx, "watch "+k, err)
			}
			updates = w.Updates()
			timer = time.NewTimer(r.poll)
			continue
		}
		e, err := r.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue // released since
		case err != nil:
			return nil, lockErr(ctx, "read "+k, err)
		}
		now := time.Now()
		if e.Revision() != seenRev {
			seenRev, seenAt = e.Revision(), now
		} else if now.Sub(seenAt) >= r.ttl {
			// Unchanged for a whole TTL since this waiter first saw it, so
			// written more than a TTL ago: its holder stopped renewing. Only a
			// key whose TTL was not applied gets here (a lock expires by its
			// key's TTL). The revision check frees it only if it is still
			// that one.
			err := r.kv.Purge(ctx, k, jetstream.LastRevision(seenRev), jetstream.PurgeTTL(r.ttl))
			if err != nil && !broker.IsConflict(err) {
				return nil, lockErr(ctx, "free expired "+k, err)
			}
			continue
		}
		// Wait for a release (a delete or a purge; NATS marks an expired
		// key TTL as a purge) or the next poll. A new holder or a renewal
		// only moves the revision seen.
		timer.Reset(r.poll)
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("worker: record lock: wait for %s: %w", k, ctx.Err())
			case <-timer.C:
				break wait
			case e, ok := <-updates:
				switch {
				case !ok:
					updates = nil // the watch ended: poll
				case e == nil:
				case e.Operation() == jetstream.KeyValuePut:
					if e.Revision() != seenRev {
						seenRev, seenAt = e.Revision(), time.Now()
					}
				default:
					break wait
				}
			}
		}
	}
}

// Renew extends the lock by the TTL from now. Errors wrap ErrLockLost when
// the lock expired (whether or not another owner took it since) or was
// unlocked; the holder must then stop working on the record.
//
// nats.go's KV Update cannot carry a per-key TTL (and would drop the one
// the key had), so Renew publishes the update to the key's subject itself,
// with the revision it expects and the TTL: a renewed lock whose holder
// died expires one TTL after the renewal, as a fresh one does.
func (l *RecordLock) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return fmt.Errorf("worker: record lock: renew %s: %w", l.key, ErrLockLost)
	}
	msg := nats.NewMsg("$KV." + l.locks.kv.Bucket() + "." + l.key)
	msg.Data = l.value
	ack, err := l.locks.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(l.locks.ttl))
	switch {
	case err == nil:
		l.rev = ack.Sequence
		return nil
	case broker.IsConflict(err):
		l.rev = 0
		return fmt.Errorf("worker: record lock: renew %s: %w", l.key, ErrLockLost)
	default:
		return lockErr(ctx, "renew "+l.key, err)
	}
}

// Unlock releases the lock if it is still this holder's; a lock that
// expired, or was taken by another owner since, is left alone and is not an
// error. Give it a context that is still live when the job's has ended. On
// error the lock is kept and Unlock may be called again.
func (l *RecordLock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev == 0 {
		return nil
	}
	// A purge marker with a TTL, unlike a delete marker, does not stay in
	// the bucket once the record is no longer worked on.
	err := l.locks.kv.Purge(ctx, l.key, jetstream.LastRevision(l.rev), jetstream.PurgeTTL(l.locks.ttl))
	if err != nil && !broker.IsConflict(err) {
		return lockErr(ctx, "unlock "+l.key, err)
	}
	l.rev = 0
	return nil
}

// lockErr wraps a KV error, or ctx's error when ctx ended (the KV calls
// report it in their own words).
func lockErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("worker: record lock: %s: %w", what, ctx.Err())
	}
	return fmt.Errorf("worker: record lock: %s: %w: %w", what, ErrLockStore, err)
}

// ErrLockStore is wrapped by the errors of RecordLocks.Lock that the bucket
// caused (NATS unreachable, JetStream not answering): the worker's trouble,
// not the job's, which the loop holds instead of counting toward
// dead-lettering.
var ErrLockStore = errors.New("the record locks' bucket failed")

// Version is what the fleet recorded of one record's last write to
// iPaaS.com: the BC lastModifiedDateTime written and the record's BC id
// (GUID), read by (*RecordLocks).Version.
type Version struct {
	// Modified is the version written; zero when none was recorded.
	Modified time.Time
	// ID is the BC id recorded with it (its alias exists), or "".
	ID string

	rev   uint64      // the key's revision; 0 when absent
	alias *aliasEntry // the alias of the record's BC id, when read (see aliasOf)
}

// aliasEntry is what an alias key holds: the external id the BC record was
// last written under, and that write's lastModifiedDateTime (zero in values
// written before times were kept, or by Alias).
type aliasEntry struct {
	Ext   string
	At    time.Time
	Found bool
}

// aliasTimed starts an alias value that carries its time: "v2", NUL, the
// time, NUL, the external id. An external id is printable, so it holds no
// NUL; a value without the mark is the external id alone.
const aliasTimed = "v2\x00"

func formatAlias(ext string, at time.Time) []byte {
	if at.IsZero() {
		return []byte(ext)
	}
	return []byte(aliasTimed + at.UTC().Format(time.RFC3339Nano) + "\x00" + ext)
}

func parseAlias(v []byte) aliasEntry {
	rest, timed := strings.CutPrefix(string(v), aliasTimed)
	if !timed {
		return aliasEntry{Ext: string(v), Found: true}
	}
	ts, ext, _ := strings.Cut(rest, "\x00")
	at, _ := time.Parse(time.RFC3339Nano, ts)
	return aliasEntry{Ext: ext, At: at, Found: true}
}

// aliasOf reads the alias of the BC record id id.
func (r *RecordLocks) aliasOf(ctx context.Context, subscription string, typ messages.Type, id string) (aliasEntry, error) {
	k, err := recordKey(aliasKeyPrefix, subscription, typ, strings.ToLower(id))
	if err != nil {
		return aliasEntry{}, fmt.Errorf("worker: record alias: %w", err)
	}
	e, err := r.kv.Get(ctx, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return aliasEntry{}, nil
	case err != nil:
		return aliasEntry{}, fmt.Errorf("worker: record alias: read %s: %w", k, err)
	}
	return parseAlias(e.Value()), nil
}

// WrittenElsewhere reports, for a record read from BC with BC id id,
// external id ext and lastModifiedDateTime modified, whether a newer state
// of it was written under another external id (BC renamed its code, and
// this read or snapshot predates the rename): such a read is stale too. It
// reads the record's alias, and keeps it in prior for Record. Nothing is
// read when prior already names id: the record was last written under ext.
func (r *RecordLocks) WrittenElsewhere(ctx context.Context, subscription string, typ messages.Type, ext, id string, modified time.Time, prior *Version) (string, bool, error) {
	if !messages.IsGUID(id) || strings.EqualFold(prior.ID, id) {
		return "", false, nil
	}
	a, err := r.aliasOf(ctx, subscription, typ, id)
	if err != nil {
		return "", false, err
	}
	prior.alias = &a
	if !a.Found || a.Ext == ext || modified.IsZero() {
		return "", false, nil
	}
	newest := a.At
	if !newest.After(modified) {
		// The alias keeps the time it moved at; the record's later writes
		// under that external id (a rename back, say) are in its version.
		v, err := r.Version(ctx, subscription, typ, a.Ext)
		if err != nil {
			return "", false, err
		}
		if strings.EqualFold(v.ID, id) && v.Modified.After(newest) {
			newest = v.Modified
		}
	}
	if newest.After(modified) {
		return a.Ext, true, nil
	}
	return "", false, nil
}

// A version's value is "<RFC3339Nano time>" or "<time> <BC id>": readable in
// the bucket, and the time alone is what earlier versions wrote.
func parseVersion(v []byte) (time.Time, string, error) {
	ts, id, _ := strings.Cut(string(v), " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	return t, id, err
}

func formatVersion(t time.Time, id string) []byte {
	v := t.UTC().Format(time.RFC3339Nano)
	if id != "" {
		v += " " + id
	}
	return []byte(v)
}

// Version reads what was recorded of the record's last write (Record).
func (r *RecordLocks) Version(ctx context.Context, subscription string, typ messages.Type, key string) (Version, error) {
	k, err := recordKey(versionKeyPrefix, subscription, typ, key)
	if err != nil {
		return Version{}, fmt.Errorf("worker: record version: %w", err)
	}
	e, err := r.kv.Get(ctx, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Version{}, nil
	case err != nil:
		return Version{}, fmt.Errorf("worker: record version: read %s: %w", k, err)
	}
	t, id, err := parseVersion(e.Value())
	if err != nil {
		return Version{rev: e.Revision()}, fmt.Errorf("worker: record version: %s holds no time: %w", k, err)
	}
	return Version{Modified: t, ID: id, rev: e.Revision()}, nil
}

// Recorded reports whether a write of the record was recorded.
func (v Version) Recorded() bool { return v.rev != 0 }

// Stale reports whether modified is strictly older than v: a job holding
// such a read must not write it. A zero modified, or a record with no
// version written yet, is never stale.
func (v Version) Stale(modified time.Time) bool {
	return !modified.IsZero() && modified.Before(v.Modified)
}

// Record records a write to iPaaS.com of the record whose external id is
// key, BC id id (a GUID, or "") and lastModifiedDateTime modified, given
// prior, the Version read before the write. The recorded version only moves
// forward: an older modified than the one recorded is ignored, and so is a
// zero one; a recorded value that is not a time is replaced. The alias
// (id -> key and modified, see Alias) is written when the version does not
// name id yet (a new record, or one renamed), and the former external id's
// version stops naming id. In the usual case that is one KV write for the
// version and, for a record seen for the first time, a read and a write
// for its alias.
func (r *RecordLocks) Record(ctx context.Context, subscription string, typ messages.Type, key string, prior Version, modified time.Time, id string) error {
	if modified.IsZero() {
		return r.Alias(ctx, subscription, typ, id, key)
	}
	if !messages.IsGUID(id) {
		id = ""
	}
	id = strings.ToLower(id)
	if id == "" || prior.ID == id {
		// The alias was recorded with the version.
		return r.written(ctx, subscription, typ, key, modified, id, &prior)
	}
	ak, err := recordKey(aliasKeyPrefix, subscription, typ, id)
	if err != nil {
		return fmt.Errorf("worker: record alias: %w", err)
	}
	old := prior.alias
	if old == nil || (old.Found && old.Ext != key) {
		// Renamed (or not known): the former external id's version must
		// stop naming this record, or a rename back would find it named
		// there and leave the alias behind. Under that record's lock, so
		// that a job keyed by the former id cannot name it there again
		// meanwhile; read again under the lock, and the claim cleared
		// before the alias moves, so that a retry after a failure finds the
		// alias where it was and clears again.
		for range 3 {
			if old != nil && old.Found && old.Ext != key && old.Ext != "" {
				if err := lockRecord(ctx, typ, old.Ext); err != nil {
					return err
				}
			}
			a, err := r.aliasOf(ctx, subscription, typ, id)
			if err != nil {
				return err
			}
			moved := old == nil || a.Ext != old.Ext
			old = &a
			if !moved || !a.Found || a.Ext == key || a.Ext == "" {
				break
			}
		}
		if old.Found && old.Ext != key && old.Ext != "" {
			if err := r.forgetID(ctx, subscription, typ, old.Ext, id); err != nil {
				return err
			}
		}
	}
	// The alias before the version: the version names the id only once the
	// alias is there, so a failure between the two writes the alias again
	// on retry.
	if _, err := r.kv.Put(ctx, ak, formatAlias(key, maxTime(modified, old.At, old.Ext == key))); err != nil {
		return fmt.Errorf("worker: record alias: write %s: %w", ak, err)
	}
	return r.written(ctx, subscription, typ, key, modified, id, &prior)
}

// maxTime is the later of a and b when same (an alias kept at its external
// id never goes back in time), else a.
func maxTime(a, b time.Time, same bool) time.Time {
	if same && b.After(a) {
		return b
	}
	return a
}

// forgetID removes id from the version of the record whose external id is
// key, if that version names it: the record of id has another external id
// now.
func (r *RecordLocks) forgetID(ctx context.Context, subscription string, typ messages.Type, key, id string) error {
	k, err := recordKey(versionKeyPrefix, subscription, typ, key)
	if err != nil {
		return fmt.Errorf("worker: record version: %w", err)
	}
	for {
		e, err := r.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("worker: record version: read %s: %w", k, err)
		}
		t, named, perr := parseVersion(e.Value())
		if perr != nil || !strings.EqualFold(named, id) {
			return nil
		}
		_, err = r.kv.Update(ctx, k, formatVersion(t, ""), e.Revision())
		if broker.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("worker: record version: write %s: %w", k, err)
		}
		return nil
	}
}

// Deleted records that the record whose external id is key was deleted in
// BC at at (its delete job's time, or now): a snapshot or read of it from
// before then, run after the delete, is stale and does not bring it back.
// The version only moves forward, and keeps its BC id.
func (r *RecordLocks) Deleted(ctx context.Context, subscription string, typ messages.Type, key string, at time.Time) error {
	return r.written(ctx, subscription, typ, key, at, "", nil)
}

// written sets the version by compare-and-set, starting from prior when
// known; a conflict means another write landed: look again.
func (r *RecordLocks) written(ctx context.Context, subscription string, typ messages.Type, key string, modified time.Time, id string, prior *Version) error {
	k, err := recordKey(versionKeyPrefix, subscription, typ, key)
	if err != nil {
		return fmt.Errorf("worker: record version: %w", err)
	}
	if modified.IsZero() {
		return nil
	}
	for {
		var rev uint64
		var last time.Time
		var lastID string
		var perr error
		if prior != nil {
			rev, last, lastID = prior.rev, prior.Modified, prior.ID
			prior = nil
		} else {
			e, err := r.kv.Get(ctx, k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("worker: record version: read %s: %w", k, err)
			default:
				rev = e.Revision()
				last, lastID, perr = parseVersion(e.Value())
			}
		}
		if rev != 0 && perr == nil && !modified.After(last) && (id == "" || id == lastID) {
			return nil
		}
		at, withID := modified, id
		if withID == "" {
			withID = lastID
		}
		if rev != 0 && perr == nil && at.Before(last) {
			at = last // keep the newer time; only the id is new
		}
		value := formatVersion(at, withID)
		if rev == 0 {
			_, err = r.kv.Create(ctx, k, value)
		} else {
			_, err = r.kv.Update(ctx, k, value, rev)
		}
		if broker.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("worker: record version: write %s: %w", k, err)
		}
		return nil
	}
}

// recordKey builds <prefix><subscription>.<type>.<record token>.
func recordKey(prefix, subscription string, typ messages.Type, key string) (string, error) {
	if !messages.ValidSubscription(subscription) {
		return "", fmt.Errorf("invalid subscription name %q", truncateRunes(subscription, 40))
	}
	if !typ.Valid() {
		return "", fmt.Errorf("unknown record type %q", truncateRunes(string(typ), 40))
	}
	if prefix == lockKeyPrefix && messages.IsGUID(key) {
		// BC ids ignore case: one record, one lock, whichever case a job
		// names it in. (Only locks: other keys keep what they were.)
		key = strings.ToLower(key)
	}
	return prefix + subscription + "." + string(typ) + "." + recordToken(key), nil
}

// recordToken encodes a record key as one KV key token: messages.KeyToken,
// with its "~" (the mark of a base64url-encoded key, not allowed in a KV key)
// turned into "=", which no key token holds. Tokens longer than
// maxRecordToken become "h=" and the key's SHA-256; neither a plain token
// (no "=") nor an encoded one (starting with "=") can look like that.
func recordToken(key string) string {
	tok := messages.KeyToken(key)
	if rest, ok := strings.CutPrefix(tok, "~"); ok {
		tok = "=" + rest
	}
	if len(tok) > maxRecordToken {
		sum := sha256.Sum256([]byte(key))
		tok = "h=" + hex.EncodeToString(sum[:])
	}
	return tok
}

// truncateRunes shortens s for an error message.
func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}

// Alias records that the BC record whose id (a GUID) is id has the external
// id ext, so that a delete job keyed by the GUID (BC's deleted notifications
// carry nothing else, and a deleted record cannot be read) finds the
// iPaaS.com record to deactivate. It writes only when the alias changed.
func (r *RecordLocks) Alias(ctx context.Context, subscription string, typ messages.Type, id, ext string) error {
	if !messages.IsGUID(id) || ext == "" {
		return nil
	}
	k, err := recordKey(aliasKeyPrefix, subscription, typ, strings.ToLower(id))
	if err != nil {
		return fmt.Errorf("worker: record alias: %w", err)
	}
	if e, err := r.kv.Get(ctx, k); err == nil && parseAlias(e.Value()).Ext == ext {
		return nil
	}
	if _, err := r.kv.Put(ctx, k, []byte(ext)); err != nil {
		return fmt.Errorf("worker: record alias: write %s: %w", k, err)
	}
	return nil
}

// Resolve returns the external id Alias recorded for the BC record id id.
func (r *RecordLocks) Resolve(ctx context.Context, subscription string, typ messages.Type, id string) (string, bool, error) {
	a, err := r.aliasOf(ctx, subscription, typ, id)
	return a.Ext, a.Found, err
}
