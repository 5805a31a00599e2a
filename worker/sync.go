package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bcsync/bcsync/bcclient"
	"github.com/bcsync/bcsync/ipaasclient"
	"github.com/bcsync/bcsync/mapping"
	"github.com/bcsync/bcsync/messages"
)

// Syncer is the Handler of one subscription: it reads the record from BC
// (unless the job carries a snapshot), maps it, and writes it to iPaaS.com
// idempotently.
type Syncer struct {
	BC    *bcclient.Client
	IPaaS *ipaasclient.Client
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
	}
	return Permanent(fmt.Errorf("op %q of %s jobs is not handled by this worker version", job.Op, job.Type))
}

func (s *Syncer) upsert(ctx context.Context, job *messages.Job) error {
	switch job.Type {
	case messages.TypeLocation:
		return upsert(ctx, s, job, s.BC.GetLocation, locationKeyMatches, mapping.Location, mapping.LocationExternalID)
	case messages.TypeShippingMethod:
		return upsert(ctx, s, job, s.BC.GetShipmentMethod, shipmentMethodKeyMatches, mapping.ShippingMethod, mapping.ShippingMethodExternalID)
	case messages.TypeCustomerCategory:
		return upsert(ctx, s, job, s.BC.GetCustomerPriceGroup, priceGroupKeyMatches, mapping.CustomerCategory, mapping.CustomerCategoryExternalID)
	case messages.TypeCustomer:
		return upsert(ctx, s, job, s.BC.GetCustomer, customerKeyMatches, mapping.Customer, mapping.CustomerExternalID)
	}
	return Permanent(fmt.Errorf("type %q is not synced by this worker version", job.Type))
}

// upsert is the pipeline shared by every data type: BC record (snapshot or
// GET) -> mapping -> iPaaS.com upsert keyed by the record's external id.
func upsert[B any, R ipaasclient.Record](
	ctx context.Context, s *Syncer, job *messages.Job,
	get func(context.Context, string) (B, error),
	keyMatches func(B, string) bool,
	mapf func(B) (R, error),
	externalID func(B) string,
) error {
	var rec B
	if len(job.Data) > 0 {
		if err := decodeSnapshot(job.Data, &rec); err != nil {
			return Permanent(fmt.Errorf("job data is not a BC %s record: %w", job.Type, err))
		}
		if !keyMatches(rec, job.Key) {
			return Permanent(fmt.Errorf("job data is a %s record whose id and code do not match the job key %q", job.Type, job.Key))
		}
	} else {
		r, err := get(ctx, job.Key)
		if err != nil {
			return err
		}
		rec = r
	}
	out, err := mapf(rec)
	if err != nil {
		return err
	}
	if _, err := s.IPaaS.Upsert(ctx, out, externalID(rec)); err != nil {
		return err
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
	default:
		return Permanent(fmt.Errorf("type %q is not synced by this worker version", job.Type))
	}
	if messages.IsGUID(job.Key) {
		// iPaaS.com links BC records by code or number, and a deleted BC
		// record can no longer be read to find it.
		return Permanent(errors.New("a delete job must be keyed by the BC code or number, not the GUID"))
	}
	_, err := s.IPaaS.Deactivate(ctx, kind, job.Key)
	return err
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
