package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Timestamp  time.Time `json:"timestamp"`
}

// SafetyNetConfig configures SafetyNet.
type SafetyNetConfig struct {
	// Failures, when set (the broker.BucketRecords bucket), gives the jobs'
	// first failure times, as the loop records them.
	Failures jetstream.KeyValue
	// WorkerID names this worker in the dead letters.
	WorkerID string
	// Log receives a line per job moved.
	Log zerolog.Logger
	// Stats and Metrics, when set, count the jobs moved as dead-lettered,
	// as the loop counts its own.
	Stats   *Stats
	Metrics *Metrics
}

// SafetyNet moves jobs that reached MaxDeliver without being settled (a
// worker died between its last delivery and its dead letter) to BCSYNC_DLQ,
// then deletes them from BCSYNC_JOBS, where nobody would deliver them again.
// It reads JetStream's advisories from broker.StreamAdvisories through one
// durable consumer that every worker shares, so each advisory is handled
// once, and one announced while no worker ran is handled by the next one
// to start. A letter the loop already stored is not stored twice. The
// returned function stops it.
func SafetyNet(ctx context.Context, js jetstream.JetStream, cfg SafetyNetConfig) (stop func(), err error) {
	n := &safetyNet{js: js, cfg: cfg, failures: failureTimes{kv: cfg.Failures, log: cfg.Log}, lost: make(chan struct{}, 1)}
	cc, err := n.start(ctx)
	if err != nil {
		return nil, err
	}
	done, ended := make(chan struct{}), make(chan struct{})
	go n.keep(cc, done, ended)
	return func() { close(done); <-ended }, nil
}

// safetyNetConsumer is the durable consumer of the fleet's safety net.
const safetyNetConsumer = "bcsync-safety-net"

type safetyNet struct {
	js       jetstream.JetStream
	cfg      SafetyNetConfig
	failures failureTimes
	lost     chan struct{} // the consumer is gone: make it again
}

// start creates (or updates) the consumer and consumes it.
func (n *safetyNet) start(ctx context.Context) (jetstream.ConsumeContext, error) {
	cons, err := n.js.CreateOrUpdateConsumer(ctx, broker.StreamAdvisories, jetstream.ConsumerConfig{
		Durable:     safetyNetConsumer,
		Description: "bcsync workers' safety net",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: safety net consumer: %w", err)
	}
	cc, err := cons.Consume(n.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// A deleted consumer shows as a 409, or as missed heartbeats and
		// pulls nobody answers: keep checks which.
		if consumerGone(err) || errors.Is(err, jetstream.ErrNoHeartbeat) {
			select {
			case n.lost <- struct{}{}:
			default:
			}
		}
		n.cfg.Log.Debug().Err(err).Msg("safety net: consuming the advisories")
	}), jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second)) // a deleted consumer noticed in seconds
	if err != nil {
		return nil, fmt.Errorf("worker: safety net: %w", err)
	}
	return cc, nil
}

// keep makes the consumer again whenever it is deleted (an operator, a
// stream made anew), and consumes it again whenever its consumption ended
// by itself (nats.go ends it on a 409 "consumer deleted", even once
// another worker made the consumer again), until done: else jobs that
// reached MaxDeliver would stay in the job stream, unsettled, with no
// worker to move them.
func (n *safetyNet) keep(cc jetstream.ConsumeContext, done <-chan struct{}, ended chan<- struct{}) {
	defer close(ended)
	defer func() { cc.Stop() }()
	for {
		select {
		case <-done:
			return
		case <-cc.Closed():
			n.cfg.Log.Warn().Str("consumer", safetyNetConsumer).Msg("safety net: its consumption ended; starting it again")
		case <-n.lost:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := n.js.Consumer(ctx, broker.StreamAdvisories, safetyNetConsumer)
			cancel()
			if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				continue // there (or NATS unreachable: the client reconnects)
			}
			n.cfg.Log.Warn().Str("consumer", safetyNetConsumer).Msg("safety net: its consumer was deleted; making it again")
		}
		cc.Stop()
		for attempt := 1; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			next, err := n.start(ctx)
			cancel()
			if err == nil {
				cc = next
				break
			}
			delay := Backoff{Initial: time.Second, Max: 30 * time.Second}.Delay(attempt, 0)
			n.cfg.Log.Error().Err(err).Dur("retry_in", delay).Msg("safety net: could not make its consumer again")
			select {
			case <-done:
				return
			case <-time.After(delay):
			}
		}
	}
}

// handle moves the job of one max-deliveries advisory to the DLQ.
func (n *safetyNet) handle(m jetstream.Msg) {
	log, cfg := n.cfg.Log, n.cfg
	var a maxDeliveriesAdvisory
	if err := json.Unmarshal(m.Data(), &a); err != nil || a.StreamSeq == 0 {
		log.Warn().Err(err).Msg("unreadable max-deliveries advisory: dropped")
		_ = m.Term()
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dl, err := rescue(rctx, n.js, n.failures, a, cfg.WorkerID)
	if err != nil {
		log.Error().Err(err).Uint64("stream_seq", a.StreamSeq).Msg("could not move a job that reached MaxDeliver to the dead-letter stream; trying again shortly")
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	_ = m.Ack()
	if dl == nil {
		return // settled meanwhile
	}
	if cfg.Stats != nil {
		cfg.Stats.DeadLettered.Add(1)
	}
	cfg.Metrics.job(dl.Subscription, dl.Type, "dead_lettered", 0)
	ev := log.Warn().Uint64("stream_seq", a.StreamSeq).Str("consumer", a.Consumer).Int("attempt", dl.Attempts).
		Str("subscription", dl.Subscription).Str("type", string(dl.Type)).Str("key", dl.Key)
	if dl.JobID != "" {
		ev = ev.Str("job_id", dl.JobID)
	}
	if op := jobOp(dl.Body); op != "" {
		ev = ev.Str("op", op)
	}
	ev.Msg("job reached MaxDeliver unsettled: moved to the dead-letter stream")
}

// jobOp is the op of an encoded job, "" when it does not decode.
func jobOp(body []byte) string {
	if j, err := messages.Decode(body); err == nil {
		return string(j.Op)
	}
	return ""
}

// rescue copies the job at a.StreamSeq to the DLQ, then deletes it, and
// returns the letter; nil when the job was settled meanwhile.
func rescue(ctx context.Context, js jetstream.JetStream, failures failureTimes, a maxDeliveriesAdvisory, workerID string) (*messages.DeadLetter, error) {
	s, err := js.Stream(ctx, messages.StreamJobs)
	if err != nil {
		return nil, err
	}
	raw, err := s.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil // settled meanwhile (the loop dead-lettered it after all)
	}
	if err != nil {
		return nil, err
	}
	if !a.Timestamp.IsZero() && raw.Time.After(a.Timestamp) {
		// Stored after the advisory was raised: another job at the same
		// sequence (the job stream made anew since), not the one named.
		return nil, nil
	}
	job, _ := messages.Decode(raw.Data)
	dl := newDeadLetter(raw.Subject, raw.Header, raw.Data, messages.StreamJobs, raw.Sequence, job, "")
	dl.ErrorClass = string(ClassMaxDeliveries)
	dl.Reason = fmt.Sprintf("delivered %d times without being settled: a worker died or lost NATS on its last delivery", a.Deliveries)
	// A requeued copy carries its originals' deliveries, as the loop counts.
	prior, _ := strconv.Atoi(raw.Header.Get(HeaderDeliveries))
	dl.Attempts, dl.WorkerID = max(prior, 0)+int(a.Deliveries), workerID
	dl.FirstFailure = firstFailure(ctx, failures, raw.Header, raw.Sequence, a.Deliveries, raw.Time)
	if err := storeDeadLetter(ctx, js, dl); err != nil {
		return nil, err
	}
	if err := s.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("delete job after dead-lettering it: %w", err)
	}
	failures.settled(ctx, a.StreamSeq)
	return dl, nil
}
