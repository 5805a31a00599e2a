package worker

import (
	"context"
	"sync"

	"github.com/bcsync/bcsync/messages"
)

// jobLocks are the record locks one job holds: the one the loop takes for
// the job's key before the handler runs, and those the handler adds with
// lockRecord. The heartbeat renews them all; the loop releases them all
// once the job is settled.
type jobLocks struct {
	locks        *RecordLocks
	subscription string
	owner        string

	mu   sync.Mutex
	held map[string]*RecordLock // by type and key
}

type jobLocksKey struct{}

func withJobLocks(ctx context.Context, jl *jobLocks) context.Context {
	return context.WithValue(ctx, jobLocksKey{}, jl)
}

// lock takes the lock of one record for the job, unless it holds it.
func (jl *jobLocks) lock(ctx context.Context, typ messages.Type, key string) error {
	id := string(typ) + "\x00" + key
	jl.mu.Lock()
	_, held := jl.held[id]
	jl.mu.Unlock()
	if held {
		return nil
	}
	l, err := jl.locks.Lock(ctx, jl.subscription, typ, key, jl.owner)
	if err != nil {
		return err
	}
	jl.mu.Lock()
	if jl.held == nil {
		jl.held = map[string]*RecordLock{}
	}
	jl.held[id] = l
	jl.mu.Unlock()
	return nil
}

// all returns the locks held.
func (jl *jobLocks) all() []*RecordLock {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	out := make([]*RecordLock, 0, len(jl.held))
	for _, l := range jl.held {
		out = append(out, l)
	}
	return out
}

// lockRecord makes the job that ctx runs hold the lock of the record of
// type typ whose external id is key as well, waiting for it, for at most
// one lock TTL: a job named by GUID locks its record's code before it
// writes, so that it never writes at the same time as a job named by code.
// Without record locks (no loop, or a loop without them) it does nothing.
func lockRecord(ctx context.Context, typ messages.Type, key string) error {
	jl, _ := ctx.Value(jobLocksKey{}).(*jobLocks)
	if jl == nil {
		return nil
	}
	// Bounded: a job already holding one lock must not wait forever for a
	// second (two jobs could each hold what the other waits for, were two
	// records ever to swap codes); a timeout is a transient failure, and
	// the job's locks are released and taken again on its next delivery.
	ctx, cancel := context.WithTimeout(ctx, jl.locks.TTL())
	defer cancel()
	return jl.lock(ctx, typ, key)
}
