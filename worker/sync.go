package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/mapping"
	"github.com/bcsync/bcsync/messages"
	"github.com/rs/zerolog"
)

// Syncer is the Handler of one subscription: it reads the record from BC
// (unless the job carries a snapshot), maps it, and writes it to iPaaS.com
// idempotently.
type Syncer struct {
	BC    *bcclient.Client
	IPaaS *ipaasclient.Client
	// Versions, when set, keeps a stale BC read (an older snapshot, a
	// replayed job) from overwriting a newer one at iPaaS.com: the record's
	// lastModifiedDateTime is compared with the last one written, for
	// Subscription.
	Versions     *RecordLocks
	Subscription string
	// Bulk handles initialize and delta jobs; nil refuses them.
	Bulk *Bulk

	readsOnce sync.Once
	reads     struct {
		customers       *batchReader[bcclient.Customer]
		locations       *batchReader[bcclient.Location]
		shipmentMethods *batchReader[bcclient.ShipmentMethod]
		items           *batchReader[bcclient.Item]
	}
}

// newBatchReader reads records of one type by code or number, many in one
// BC request when several jobs want them at once.
func newBatchReader[B any](one func(context.Context, string) (B, error), many func(context.Context, []string) (map[string]B, error)) *batchReader[B] {
	return &batchReader[B]{
		one: one, many: many,
		absent: func(key string) error {
			_, err := bcclient.Lookup[B](nil, key)
			return err
		},
		batchable: func(key string) bool { return !bcclient.IsGUID(key) },
		refused:   func(err error) bool { return errors.Is(err, bcclient.ErrInvalidKey) },
		max:       bcclient.MaxBatchKeys,
		// Two requests at once per type and worker: while they run, the
		// jobs arriving gather into the next.
		inflight: 2,
		timeout:  2 * time.Minute,
	}
}

func (s *Syncer) initReads() {
	s.readsOnce.Do(func() {
		s.reads.customers = newBatchReader(s.BC.GetCustomer, s.BC.GetCustomers)
		s.reads.locations = newBatchReader(s.BC.GetLocation, s.BC.GetLocations)
		s.reads.shipmentMethods = newBatchReader(s.BC.GetShipmentMethod, s.BC.GetShipmentMethods)
		s.reads.items = newBatchReader(s.BC.GetItem, s.BC.GetItems)
	})
}

var _ Handler = (*Syncer)(nil)

// Handle implements Handler.
func (s *Syncer) Handle(ctx context.Context, job *messages.Job) error {
	ctx = ipaasclient.WithCorrelationID(ctx, job.ID)
	switch job.Op {
	case messages.OpUpsert:
		return s.upsert(ctx, job)
	case messages.OpDelete:
		return s.delete(ctx, job)
	case messages.OpInitialize, messages.OpDelta:
		if s.Bulk != nil {
			return s.Bulk.Handle(ctx, job)
		}
	}
	return Permanent(fmt.Errorf("op %q of %s jobs is not handled by this worker version", job.Op, job.Type))
}

func (s *Syncer) upsert(ctx context.Context, job *messages.Job) error {
	s.initReads()
	switch job.Type {
	case messages.TypeLocation:
		return upsert(ctx, s, job, s.reads.locations.get, locationKeyMatches, mapping.Location, mapping.LocationExternalID,
			func(r bcclient.Location) (string, time.Time) { return r.ID, r.LastModifiedDateTime })
	case messages.TypeShippingMethod:
		return upsert(ctx, s, job, s.reads.shipmentMethods.get, shipmentMethodKeyMatches, mapping.ShippingMethod, mapping.ShippingMethodExternalID,
			func(r bcclient.ShipmentMethod) (string, time.Time) { return r.ID, r.LastModifiedDateTime })
	case messages.TypeCustomerCategory:
		// Price groups carry no id nor modification time, so a snapshot
		// cannot be told older than what a job before it wrote (a bulk's
		// snapshot retried after a newer one would win). BC is read
		// instead, under the record's lock: never older than the last write.
		if len(job.Data) > 0 {
			fresh := *job
			fresh.Data = nil
			job = &fresh
		}
		return upsert(ctx, s, job, s.BC.GetCustomerPriceGroup, priceGroupKeyMatches, mapping.CustomerCategory, mapping.CustomerCategoryExternalID,
			func(bcclient.CustomerPriceGroup) (string, time.Time) { return "", time.Time{} })
	case messages.TypeCustomer:
		return upsert(ctx, s, job, s.reads.customers.get, customerKeyMatches, mapping.Customer, mapping.CustomerExternalID,
			func(r bcclient.Customer) (string, time.Time) { return r.ID, r.LastModifiedDateTime })
	case messages.TypeProduct:
		return upsert(ctx, s, job, s.reads.items.get, itemKeyMatches, mapping.Product, mapping.ProductExternalID,
			func(r bcclient.Item) (string, time.Time) { return r.ID, r.LastModifiedDateTime })
	}
	return Permanent(fmt.Errorf("type %q is not synced by this worker version", job.Type))
}

// upsert is the pipeline shared by every data type: BC record (snapshot or
// GET) -> stale check -> mapping -> iPaaS.com upsert keyed by the record's
// external id -> version recorded.
func upsert[B any, R ipaasclient.Record](
	ctx context.Context, s *Syncer, job *messages.Job,
	get func(context.Context, string) (B, error),
	keyMatches func(B, string) bool,
	mapf func(B) (R, error),
	externalID func(B) string,
	meta func(B) (id string, modified time.Time),
) error {
	var rec B
	if len(job.Data) > 0 {
		if err := decodeSnapshot(job.Data, &rec); err != nil {
			return Permanent(fmt.Errorf("job data is not a BC %s record: %w", job.Type, err))
		}
		if !keyMatches(rec, job.Key) {
			return Permanent(fmt.Errorf("job data is a %s record whose id and code do not match the job key %q", job.Type, job.Key))
		}
	}
	// Versions are keyed by the external id, the same whether the job
	// named the record by its GUID or its code. A job keyed by code reads
	// the version while BC reads the record: one round trip less to wait.
	type versionRead struct {
		v   Version
		err error
	}
	// Price groups carry no modification time: no version to read.
	versioned := s.Versions != nil && job.Type != messages.TypeCustomerCategory
	var early chan versionRead
	if versioned && len(job.Data) == 0 && !messages.IsGUID(job.Key) {
		early = make(chan versionRead, 1)
		go func() {
			v, err := s.Versions.Version(ctx, s.Subscription, job.Type, job.Key)
			early <- versionRead{v, err}
		}()
	}
	if len(job.Data) == 0 {
		r, err := get(ctx, job.Key)
		if err != nil {
			return err
		}
		rec = r
	}
	ext := externalID(rec)
	id, mod := meta(rec)
	if ext != job.Key {
		// Named by GUID: the record's code is now known. Lock it too, so
		// that this job and one named by the code never write at once.
		// Its BC read may be older than what such a job wrote meanwhile;
		// the version read below, under the lock, tells.
		if err := lockRecord(ctx, job.Type, ext); err != nil {
			return err
		}
	}
	var prior Version
	if versioned {
		var err error
		if early != nil && ext == job.Key {
			r := <-early
			prior, err = r.v, r.err
		} else {
			prior, err = s.Versions.Version(ctx, s.Subscription, job.Type, ext)
		}
		if err != nil {
			return err
		}
		if prior.Stale(mod) {
			zerolog.Ctx(ctx).Info().Time("modified", mod).Msg("BC read older than the version at iPaaS.com: not written")
			return nil
		}
		// A read of a record BC renamed since: its newer state went to
		// iPaaS.com under the new code.
		if code, stale, err := s.Versions.WrittenElsewhere(ctx, s.Subscription, job.Type, ext, id, mod, &prior); err != nil {
			return err
		} else if stale {
			zerolog.Ctx(ctx).Info().Time("modified", mod).Str("written_as", code).Msg("BC read older than what was written of the record under its newer code: not written")
			return nil
		}
	}
	out, err := mapf(rec)
	if err != nil {
		return err
	}
	var opts []ipaasclient.UpsertOption
	if s.Versions != nil && !mod.IsZero() && !prior.Recorded() {
		// bcsync never wrote this record: most likely new.
		opts = append(opts, ipaasclient.CreateFirst())
	}
	if _, err := s.IPaaS.Upsert(ctx, out, ext, opts...); err != nil {
		return err
	}
	if s.Versions != nil {
		// If these fail, the job is retried and rewrites the same state.
		return s.Versions.Record(ctx, s.Subscription, job.Type, ext, prior, mod, id)
	}
	return nil
}

func decodeSnapshot(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	// BC rows carry more fields than bcsync reads (and @odata.* ones), so
	// unknown fields are fine; wrong types are not.
	return dec.Decode(v)
}

func (s *Syncer) delete(ctx context.Context, job *messages.Job) error {
	var kind ipaasclient.Kind
	switch job.Type {
	case messages.TypeCustomerCategory:
		// The iPaaS.com BC connection does not delete customer categories.
		return nil
	case messages.TypeLocation:
		kind = ipaasclient.KindLocation
	case messages.TypeShippingMethod:
		kind = ipaasclient.KindShippingMethod
	case messages.TypeCustomer:
		kind = ipaasclient.KindCustomer
	case messages.TypeProduct:
		kind = ipaasclient.KindProduct
	default:
		return Permanent(fmt.Errorf("type %q is not synced by this worker version", job.Type))
	}
	key := job.Key
	if messages.IsGUID(key) {
		// iPaaS.com links BC records by code or number, and a deleted BC
		// record can no longer be read: the code is the one recorded when
		// the record was synced.
		if s.Versions == nil {
			return Permanent(errors.New("a delete job keyed by a GUID needs the record aliases (bcsync_records)"))
		}
		ext, ok, err := s.Versions.Resolve(ctx, s.Subscription, job.Type, key)
		if err != nil {
			return err
		}
		if !ok {
			zerolog.Ctx(ctx).Info().Msg("delete of a record bcsync never synced: nothing to deactivate")
			return nil
		}
		if err := lockRecord(ctx, job.Type, ext); err != nil {
			return err
		}
		// The code may have gone to another record since (this one was
		// renamed, then deleted before its rename was synced): its version
		// names the record that holds it now.
		v, err := s.Versions.Version(ctx, s.Subscription, job.Type, ext)
		if err != nil {
			return err
		}
		if v.ID != "" && !strings.EqualFold(v.ID, key) {
			zerolog.Ctx(ctx).Info().Str("code", ext).Msg("delete of a record whose code another record has now: nothing to deactivate")
			return nil
		}
		key = ext
	}
	found, err := s.IPaaS.Deactivate(ctx, kind, key)
	if err != nil {
		return err
	}
	if !found {
		zerolog.Ctx(ctx).Info().Msg("delete of a record not linked at iPaaS.com: nothing to deactivate")
	}
	if s.Versions != nil {
		// A snapshot or read from before the delete, run after it, is
		// stale now: it must not bring the record back.
		// Only with BC's time of the delete (a webhook's): this worker's
		// clock could run ahead of BC's and hold back a record made anew
		// with the same code.
		if !job.ChangedAt.IsZero() {
			return s.Versions.Deleted(ctx, s.Subscription, job.Type, key, job.ChangedAt)
		}
	}
	return nil
}

// sameKey reports whether a snapshot's id or code is the job's key (GUIDs
// compare case-insensitively, as BC treats them).
func sameKey(id, code, key string) bool {
	return code == key || (id != "" && strings.EqualFold(id, key))
}

func locationKeyMatches(r bcclient.Location, key string) bool { return sameKey(r.ID, r.Code, key) }

func shipmentMethodKeyMatches(r bcclient.ShipmentMethod, key string) bool {
	return sameKey(r.ID, r.Code, key)
}

func priceGroupKeyMatches(r bcclient.CustomerPriceGroup, key string) bool {
	return sameKey("", r.Code, key)
}

func customerKeyMatches(r bcclient.Customer, key string) bool { return sameKey(r.ID, r.Number, key) }

func itemKeyMatches(r bcclient.Item, key string) bool { return sameKey(r.ID, r.Number, key) }
