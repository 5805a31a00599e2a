package messages

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher is the part of jetstream.JetStream that Publish needs.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var _ Publisher = (jetstream.JetStream)(nil)

// NewMsg validates the job and builds the message to publish: the job's
// subject, the encoded envelope, and the Nats-Msg-Id and Bcsync-Job-Id
// headers. It fills ID (random) and EnqueuedAt (now) when they are empty;
// keep the returned job if you may retry the publish, so the retry is
// deduplicated.
func NewMsg(job Job) (*nats.Msg, Job, error) {
	if job.V == 0 {
		job.V = Version
	}
	if job.ID == "" {
		job.ID = NewID()
	}
	if job.EnqueuedAt.IsZero() {
		job.EnqueuedAt = time.Now().UTC()
	}
	b, err := job.Encode()
	if err != nil {
		return nil, job, err
	}
	msg := nats.NewMsg(job.Subject())
	msg.Data = b
	msg.Header.Set(HeaderMsgID, job.MsgID())
	msg.Header.Set(HeaderJobID, job.ID)
	return msg, job, nil
}

// Publish validates the job, fills ID and EnqueuedAt when empty, and
// publishes it to StreamJobs, waiting for JetStream's acknowledgement. A job
// published again with the same ID and content is deduplicated (PubAck.Duplicate).
func Publish(ctx context.Context, js Publisher, job Job) (*jetstream.PubAck, Job, error) {
	msg, job, err := NewMsg(job)
	if err != nil {
		return nil, job, err
	}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream(StreamJobs))
	if err != nil {
		return nil, job, fmt.Errorf("messages: publish job %s on %s: %w", job.ID, msg.Subject, err)
	}
	return ack, job, nil
}

// NewID returns a random job id (a version 4 UUID).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
