package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/job"
)

// maxDeliveriesAdvisory is the part of JetStream's max-deliveries advisory
// ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>) used here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// WatchExhausted turns JetStream's max-deliveries advisories into dead
// letters. A job normally ends on its last delivery (settle terminates it
// with a dead letter); the advisory covers the case where the replica
// holding that last delivery died or froze, so no replica could. Replicas
// share a queue group, so each advisory is handled once; the dead letter's
// message ID makes a second handling harmless. Advisories are core NATS
// messages: one sent while no replica is connected is missed; the message
// then stays in the stream (limits retention) but is delivered no more.
func (c *Consumer) WatchExhausted(ctx context.Context, js jetstream.JetStream, stream, durable string) (stop func(), err error) {
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", stream, durable)
	sub, err := js.Conn().QueueSubscribe(subject, "instancemgr-"+durable, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			c.log.Warn("unreadable max-deliveries advisory", "err", err)
			return
		}
		go c.onExhausted(ctx, js, adv)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (c *Consumer) onExhausted(ctx context.Context, js jetstream.JetStream, adv maxDeliveriesAdvisory) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	log := c.log.With("stream_seq", adv.StreamSeq, "attempt", adv.Deliveries)
	stream, err := js.Stream(ctx, adv.Stream)
	if err != nil {
		log.Error("max deliveries reached, but the stream cannot be read for the dead letter", "err", err)
		return
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		log.Error("max deliveries reached, but the message cannot be read for the dead letter", "err", err)
		return
	}
	j, decodeErr := job.Decode(raw.Data)
	cause := fmt.Errorf("retries exhausted: %d deliveries ended without a result (the replica holding the last one died or froze)", adv.Deliveries)
	if decodeErr != nil {
		cause = decodeErr
		j = job.Job{}
	}
	d := Delivery{Job: j, Attempt: adv.Deliveries, Subject: raw.Subject}
	if h, ok := c.handlers[j.Operation].(Failer); ok && j.ID != "" {
		if err := h.Fail(ctx, d, cause); err != nil {
			log.Warn("could not report the exhausted job to the Admin API", "err", err)
		}
	}
	if c.opts.DeadLetter == nil {
		return
	}
	dl := job.NewDeadLetter(raw.Data, raw.Subject, adv.StreamSeq, adv.Deliveries, j.ID, "exhausted", cause.Error())
	if decodeErr != nil {
		dl.Code = "malformed"
	}
	for wait := time.Second; ; wait *= 2 {
		err := c.opts.DeadLetter(ctx, j, dl)
		if err == nil {
			break
		}
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			log.Error("could not write the dead letter of an exhausted job; it stays un-acked in the stream", "err", err)
			return
		}
		time.Sleep(wait)
	}
	if m := c.opts.Metrics; m != nil {
		m.DeadLetters.WithLabelValues(string(j.Operation), dl.Code).Inc()
	}
	log.Error("job exhausted its deliveries; dead letter written", "job_id", j.ID, "code", dl.Code)
	if c.opts.Observe != nil {
		c.opts.Observe(Outcome{Delivery: d, Result: Terminated, Err: cause})
	}
}
