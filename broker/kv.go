package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV buckets bcsync keeps its fleet-wide state in.
const (
	// BucketTokens holds the shared BC access tokens (encrypted) and the
	// locks of their refresh.
	BucketTokens = "bcsync_tokens"
	// BucketThrottle holds the fleet-wide request budgets: grants per
	// window, concurrency leases and pauses.
	BucketThrottle = "bcsync_throttle"
	// BucketRecords holds the per-record leases (two jobs for one record
	// never run at once) and the last BC version written of each record
	// (a stale read never overwrites a newer one).
	BucketRecords = "bcsync_records"
	// BucketProgress holds the checkpoints of bulk jobs (initialize,
	// delta), the marks of their requeued jobs, the watermarks of deltas
	// and the pollers' leases.
	BucketProgress = "bcsync_progress"
)

// KVOptions tunes the buckets.
type KVOptions struct {
	// Replicas of each bucket: 1 (default) on one server, 3 on a cluster.
	Replicas int
	// CreateOnly creates the missing buckets and leaves existing ones as
	// they are (see StreamOptions.CreateOnly).
	CreateOnly bool
}

// KVConfigs are the buckets' configurations. Keys may carry a TTL (locks and
// leases expire when their holder died), which needs limit markers.
func KVConfigs(o KVOptions) []jetstream.KeyValueConfig {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return []jetstream.KeyValueConfig{
		{Bucket: BucketTokens, Description: "bcsync shared BC access tokens (encrypted) and refresh locks",
			History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, LimitMarkerTTL: time.Minute},
		{Bucket: BucketThrottle, Description: "bcsync fleet-wide request budgets, concurrency leases and pauses",
			History: 1, Storage: jetstream.MemoryStorage, Replicas: o.Replicas, LimitMarkerTTL: time.Minute},
		{Bucket: BucketRecords, Description: "bcsync per-record leases and last written versions",
			History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, LimitMarkerTTL: time.Minute},
		{Bucket: BucketProgress, Description: "bcsync bulk job checkpoints, delta watermarks and poller leases",
			History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, LimitMarkerTTL: time.Minute},
	}
}

// EnsureKV creates the buckets, or updates them when their settings differ,
// and returns them by name.
func EnsureKV(ctx context.Context, js jetstream.JetStream, o KVOptions) (map[string]jetstream.KeyValue, error) {
	out := map[string]jetstream.KeyValue{}
	for _, want := range KVConfigs(o) {
		kv, err := js.KeyValue(ctx, want.Bucket)
		if err == nil {
			st, serr := kv.Status(ctx)
			if serr == nil && (o.CreateOnly || kvMatches(st, want)) {
				out[want.Bucket] = kv
				continue
			}
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("broker: KV bucket %s: %w", want.Bucket, err)
		}
		kv, err = js.CreateOrUpdateKeyValue(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("broker: create or update KV bucket %s: %w", want.Bucket, err)
		}
		out[want.Bucket] = kv
	}
	return out, nil
}

func kvMatches(st jetstream.KeyValueStatus, want jetstream.KeyValueConfig) bool {
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil && bs.StreamInfo().Config.Replicas != max(want.Replicas, 1) {
		return false // e.g. made R1 by a command, before any worker ran on the cluster
	}
	return st.History() == int64(want.History) && st.LimitMarkerTTL() == want.LimitMarkerTTL
}

// JetStream API error codes a KV create or update on a changed key answers:
// nats.go maps the first to jetstream.ErrKeyExists; a clustered server with
// per-key TTLs answers the second, which it does not map.
const (
	errCodeWrongLastSequence         = 10071
	errCodeWrongLastSequenceConstant = 10164
)

// IsConflict reports whether err says a KV Create found the key already
// there, or an Update found another revision: someone else wrote first.
func IsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var ae *jetstream.APIError
	return errors.As(err, &ae) && (ae.ErrorCode == errCodeWrongLastSequence || ae.ErrorCode == errCodeWrongLastSequenceConstant)
}
