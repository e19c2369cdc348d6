package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/jobs"
)

// maxDeliveriesAdvisory is the part of JetStream's max-deliveries advisory
// ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>) used here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// maxAdvisoryWorkers bounds how many advisories a replica handles at once.
const maxAdvisoryWorkers = 4

// WatchExhausted turns JetStream's max-deliveries advisories into dead
// letters. A job normally ends on its last delivery (settle terminates it
// with a dead letter); the advisory covers the case where the replica
// holding that last delivery died or froze, so no replica could. The
// advisories are kept in a stream (jobs.EnsureExhausted) and taken
// from its durable consumer exhausted: the server emits one when the last
// delivery's lock runs out, connected replicas or not, and it waits there
// for the next replica, which holds it (the ack wait) until the dead letter
// is written; a failure gives it back for another try. The dead letter's
// message ID makes a second handling harmless.
//
// Anyone allowed to publish on the advisory subject could forge one, so an
// advisory is acted on only when it names this stream and consumer, claims
// at least the consumer's MaxDeliver as the server reports it, and names a
// job the consumer has delivered (see confirm).
func (c *Consumer) WatchExhausted(ctx context.Context, js jetstream.JetStream, exhausted jetstream.Consumer, stream, durable string) (stop func(), err error) {
	workers := make(chan struct{}, maxAdvisoryWorkers)
	cc, err := exhausted.Consume(func(m jetstream.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data(), &adv); err != nil {
			c.log.Warn("unreadable max-deliveries advisory", "err", err)
			_ = m.Term()
			return
		}
		if adv.Stream != stream || adv.Consumer != durable {
			c.log.Warn("ignored a max-deliveries advisory that names another stream or consumer", "stream", adv.Stream, "consumer", adv.Consumer)
			_ = m.Ack()
			return
		}
		select { // the callback waits while every worker is busy
		case workers <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-workers }()
			if err := c.onExhausted(ctx, js, durable, adv); err != nil {
				c.log.Warn("max-deliveries advisory not handled yet; it is given back", "stream_seq", adv.StreamSeq, "err", err)
				_ = m.NakWithDelay(exhaustedRetry)
				return
			}
			_ = m.Ack()
		}()
	}, jetstream.PullMaxMessages(maxAdvisoryWorkers))
	if err != nil {
		return nil, fmt.Errorf("take max-deliveries advisories from %q: %w", exhausted.CachedInfo().Stream, err)
	}
	return cc.Stop, nil
}

// exhaustedRetry is how long an advisory that could not be handled waits
// before it is delivered again.
const exhaustedRetry = 5 * time.Second

// confirm checks an advisory against what the server says of the consumer
// and the stream: the delivery count it claims reaches the consumer's
// MaxDeliver, and its sequence is one the consumer has delivered and the
// stream still holds on a job subject. JetStream offers no look-up of one
// message's delivery count, so this is as far as it can be checked.
func (c *Consumer) confirm(ctx context.Context, js jetstream.JetStream, durable string, adv maxDeliveriesAdvisory) (*jetstream.RawStreamMsg, error) {
	cons, err := js.Consumer(ctx, adv.Stream, durable)
	if err != nil {
		return nil, fmt.Errorf("read consumer %q: %w", durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read consumer %q: %w", durable, err)
	}
	if max := info.Config.MaxDeliver; max <= 0 || adv.Deliveries < uint64(max) {
		return nil, fmt.Errorf("%w: it claims %d deliveries, the consumer's MaxDeliver is %d", errNotConfirmed, adv.Deliveries, max)
	}
	if adv.StreamSeq == 0 || adv.StreamSeq > info.Delivered.Stream {
		return nil, fmt.Errorf("%w: stream sequence %d was never delivered (the consumer has delivered up to %d)", errNotConfirmed, adv.StreamSeq, info.Delivered.Stream)
	}
	stream, err := js.Stream(ctx, adv.Stream)
	if err != nil {
		return nil, fmt.Errorf("read stream %q: %w", adv.Stream, err)
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		return nil, fmt.Errorf("read message %d: %w", adv.StreamSeq, err)
	}
	if jobs.DeadSubject(raw.Subject) == jobs.DeadPrefix+".malformed" {
		return nil, fmt.Errorf("%w: message %d is on %q, not a job subject", errNotConfirmed, adv.StreamSeq, raw.Subject)
	}
	return raw, nil
}

var errNotConfirmed = errors.New("advisory not confirmed")

// onExhausted writes the dead letter of the job an advisory names. It is
// nil when that is done or the advisory is not to be acted on; an error
// means try again.
func (c *Consumer) onExhausted(ctx context.Context, js jetstream.JetStream, durable string, adv maxDeliveriesAdvisory) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ExhaustedTimeout)
	defer cancel()
	log := c.log.With("stream_seq", adv.StreamSeq, "attempt", adv.Deliveries)
	raw, err := c.confirm(ctx, js, durable, adv)
	if errors.Is(err, errNotConfirmed) {
		log.Warn("ignored a max-deliveries advisory", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("max deliveries reached, but the consumer or message cannot be read for the dead letter: %w", err)
	}
	j, decodeErr := jobs.Decode(raw.Data)
	cause := fmt.Errorf("retries exhausted: %d deliveries ended without a result (the replica holding the last one died or froze)", adv.Deliveries)
	code := "exhausted"
	if decodeErr != nil {
		cause, code, j = decodeErr, "malformed", jobs.Job{}
	}
	d := Delivery{Job: j, Attempt: adv.Deliveries, Subject: raw.Subject, StreamSeq: adv.StreamSeq, CorrelationID: raw.Header.Get(jetstream.MsgIDHeader)}
	if err := c.finish(ctx, d, raw.Data, code, cause, false); err != nil {
		return err
	}
	c.opts.TestSeams.observe(Outcome{Delivery: d, Result: Terminated, Err: cause})
	return nil
}

// ExhaustedTimeout bounds one handling of an advisory, within the ack
// wait of the advisories' consumer.
const ExhaustedTimeout = 20 * time.Second
