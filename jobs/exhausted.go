package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AdvisorySubject is the subject of JetStream's max-deliveries advisory
// for a durable consumer of a stream.
func AdvisorySubject(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// ExhaustedStream is the stream that keeps the job consumer's
// max-deliveries advisories, and ExhaustedConsumer its durable consumer.
func (c Config) ExhaustedStream() string   { return c.WithDefaults().Stream + "_EXHAUSTED" }
func (c Config) ExhaustedConsumer() string { return c.WithDefaults().Consumer + "-exhausted" }

// ExhaustedAckWait is how long a replica holds an advisory while it writes
// the job's dead letter; one that dies holding it gives it to another
// replica after this long.
const ExhaustedAckWait = 30 * time.Second

// EnsureExhausted creates or updates the stream that keeps the job
// consumer's max-deliveries advisories and the durable consumer the
// replicas take them from. The server emits the advisory when a job's last
// delivery runs out, whether or not any replica is connected then; kept in
// a stream, it waits for the next replica instead of being missed, and the
// consumer's ack wait makes one replica at a time handle it. It is
// idempotent.
func EnsureExhausted(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	c = c.WithDefaults()
	name := c.ExhaustedStream()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "max-deliveries advisories of the instancemgr job consumer, until a replica has written the job's dead letter",
		Subjects:    []string{AdvisorySubject(c.Stream, c.Consumer)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      c.MaxAge,
	}); err != nil {
		return nil, fmt.Errorf("create or update stream %q: %w", name, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable:       c.ExhaustedConsumer(),
		Description:   "instancemgr replicas turning exhausted jobs into dead letters",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ExhaustedAckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %q on stream %q: %w", c.ExhaustedConsumer(), name, err)
	}
	return cons, nil
}
