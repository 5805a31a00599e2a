package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bcsync/bcsync/broker"
	"github.com/bcsync/bcsync/messages"
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

// SafetyNet moves jobs that reached MaxDeliver without being settled (a
// worker died between its last delivery and its dead letter) to BCSYNC_DLQ,
// then deletes them from BCSYNC_JOBS, where nobody would deliver them again.
// It reads JetStream's advisories from broker.StreamAdvisories through one
// durable consumer that every worker shares, so each advisory is handled
// once, and one announced while no worker ran is handled by the next one
// to start. A letter the loop already stored is not stored twice. The
// returned function stops it.
//
// failures, when not nil (the broker.BucketRecords bucket), gives the jobs'
// first failure times, as the loop records them.
func SafetyNet(ctx context.Context, js jetstream.JetStream, failures jetstream.KeyValue, workerID string, log zerolog.Logger) (stop func(), err error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, broker.StreamAdvisories, jetstream.ConsumerConfig{
		Durable:     "bcsync-safety-net",
		Description: "bcsync workers' safety net",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: safety net consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var a maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data(), &a); err != nil || a.StreamSeq == 0 {
			log.Warn().Err(err).Msg("unreadable max-deliveries advisory: dropped")
			_ = m.Term()
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rescue(rctx, js, failureTimes{kv: failures, log: log}, a, workerID); err != nil {
			log.Error().Err(err).Uint64("stream_seq", a.StreamSeq).Msg("could not move a job that reached MaxDeliver to the dead-letter stream; trying again shortly")
			_ = m.NakWithDelay(5 * time.Second)
			return
		}
		_ = m.Ack()
		log.Warn().Uint64("stream_seq", a.StreamSeq).Str("consumer", a.Consumer).Uint64("deliveries", a.Deliveries).
			Msg("job reached MaxDeliver unsettled: moved to the dead-letter stream")
	})
	if err != nil {
		return nil, fmt.Errorf("worker: safety net: %w", err)
	}
	return cc.Stop, nil
}

// rescue copies the job at a.StreamSeq to the DLQ, then deletes it.
func rescue(ctx context.Context, js jetstream.JetStream, failures failureTimes, a maxDeliveriesAdvisory, workerID string) error {
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
	dl.Attempts, dl.WorkerID = int(a.Deliveries), workerID
	dl.FirstFailure = firstFailure(ctx, failures, raw.Header, raw.Sequence, a.Deliveries, raw.Time)
	if err := storeDeadLetter(ctx, js, dl); err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete job after dead-lettering it: %w", err)
	}
	failures.settled(ctx, a.StreamSeq)
	return nil
}
