package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bcsync/bcsync/messages"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// ClassMaxDeliveries is the class of a job that reached MaxDeliver without
// being settled: its worker died, or could not reach NATS, on the last
// delivery.
const ClassMaxDeliveries Class = "max_deliveries"

// maxDeliveriesAdvisory is JetStream's advisory for a message that reached
// its consumer's MaxDeliver.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// advisorySubject is where JetStream announces BCSYNC_JOBS messages that
// reached MaxDeliver, for every consumer.
var advisorySubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + messages.StreamJobs + ".*"

// SafetyNet moves jobs that reached MaxDeliver without being settled (a
// worker died between its last delivery and its dead letter) to BCSYNC_DLQ,
// then deletes them from BCSYNC_JOBS, where nobody would deliver them again.
// Every worker runs it; a queue group makes one of them handle each
// advisory. A letter the loop already stored is not stored twice. The
// returned function stops it.
func SafetyNet(nc *nats.Conn, js jetstream.JetStream, workerID string, log zerolog.Logger) (stop func(), err error) {
	sub, err := nc.QueueSubscribe(advisorySubject, "bcsync-safety-net", func(m *nats.Msg) {
		var a maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
			log.Warn().Err(err).Msg("unreadable max-deliveries advisory")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rescue(ctx, js, a, workerID); err != nil {
			log.Error().Err(err).Uint64("stream_seq", a.StreamSeq).Msg("could not move a job that reached MaxDeliver to the dead-letter stream; it stays in BCSYNC_JOBS")
			return
		}
		log.Warn().Uint64("stream_seq", a.StreamSeq).Str("consumer", a.Consumer).Uint64("deliveries", a.Deliveries).
			Msg("job reached MaxDeliver unsettled: moved to the dead-letter stream")
	})
	if err != nil {
		return nil, fmt.Errorf("worker: subscribe to max-deliveries advisories: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// rescue copies the job at a.StreamSeq to the DLQ, then deletes it.
func rescue(ctx context.Context, js jetstream.JetStream, a maxDeliveriesAdvisory, workerID string) error {
	s, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return err
	}
	raw, err := s.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // settled meanwhile (the loop dead-lettered it after all)
	}
	if err != nil {
		return err
	}
	job, _ := messages.Decode(raw.Data)
	dl := newDeadLetter(raw.Subject, raw.Header, raw.Data, messages.StreamJobs, raw.Sequence, job, "")
	dl.ErrorClass = string(ClassMaxDeliveries)
	dl.Reason = fmt.Sprintf("delivered %d times without being settled: a worker died or lost NATS on its last delivery", a.Deliveries)
	dl.Attempts, dl.WorkerID, dl.FirstFailure = int(a.Deliveries), workerID, raw.Time.UTC()
	if err := storeDeadLetter(ctx, js, dl); err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete job after dead-lettering it: %w", err)
	}
	return nil
}
