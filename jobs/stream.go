package jobs

// The JetStream side of the job message: the job stream and its durable
// pull consumer (whose ack wait is the job lock), and the dead-letter
// stream.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config says how the job stream and its durable consumer are set up.
type Config struct {
	Stream   string // default "INSTANCES"
	Consumer string // durable pull consumer; default "instancemgr"
	Replicas int    // 1 by default, 3 for a cluster
	// AckWait is the lock a replica holds on a job while it heartbeats.
	AckWait time.Duration
	// MaxDeliver bounds how often one job is delivered.
	MaxDeliver int
	// BackOff is the ack wait of each successive delivery. JetStream sets the
	// ack wait of the first delivery to BackOff[0], so the first value is
	// always AckWait; later values space out redeliveries of a job whose
	// holder died.
	BackOff         []time.Duration
	MaxAckPending   int
	DuplicateWindow time.Duration
	// MaxAge is how long finished jobs stay in the stream for inspection and
	// replay.
	MaxAge time.Duration
}

// The names of the job stream and its durable consumer by default.
const (
	DefaultStream   = "INSTANCES"
	DefaultConsumer = "instancemgr"
)

// WithDefaults fills every zero field with its default.
func (c Config) WithDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if len(c.BackOff) == 0 {
		c.BackOff = DefaultBackOff(c.AckWait)
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 256
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.MaxAge == 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	return c
}

// DefaultBackOff doubles from the ack wait up to ten minutes.
func DefaultBackOff(ackWait time.Duration) []time.Duration {
	b := []time.Duration{ackWait}
	for d := 2 * ackWait; len(b) < 5; d *= 2 {
		b = append(b, min(d, 10*time.Minute))
	}
	return b
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas: %d is not between 1 and 5", c.Replicas))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ackWait: %s is shorter than 1s", c.AckWait))
	}
	if c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("maxDeliver: %d is not positive", c.MaxDeliver))
	}
	if len(c.BackOff) > 0 && c.BackOff[0] != c.AckWait {
		errs = append(errs, fmt.Errorf("backoff: the first value %s must equal ackWait %s (JetStream uses it as the first lock)", c.BackOff[0], c.AckWait))
	}
	if len(c.BackOff) > c.MaxDeliver {
		errs = append(errs, fmt.Errorf("backoff: %d values for maxDeliver %d", len(c.BackOff), c.MaxDeliver))
	}
	for i, d := range c.BackOff {
		if d < c.AckWait {
			errs = append(errs, fmt.Errorf("backoff[%d]: %s is shorter than ackWait %s", i, d, c.AckWait))
		}
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("maxAckPending: %d is not positive", c.MaxAckPending))
	}
	if c.DuplicateWindow <= 0 || c.DuplicateWindow > c.MaxAge {
		errs = append(errs, fmt.Errorf("duplicateWindow: %s must be positive and at most maxAge %s", c.DuplicateWindow, c.MaxAge))
	}
	return errors.Join(errs...)
}

// Subjects are the subjects the job stream captures.
func Subjects() []string {
	return []string{
		SubjectPrefix + "." + string(OpCreate) + ".>",
		SubjectPrefix + "." + string(OpRename) + ".>",
		SubjectPrefix + "." + string(OpDelete) + ".>",
	}
}

// EnsureStream creates or updates the job stream. It is idempotent.
//
// Retention is by limits, not work queue: an acknowledged job stays in the
// stream until MaxAge, so an operator can inspect and replay it, and the
// bridge's "no message on this subject yet" check keeps refusing a second
// copy of a finished job.
func EnsureStream(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Stream, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "instancemgr jobs: create, rename and delete of Ed-Fi ODS instances",
		Subjects:    Subjects(),
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      c.MaxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  c.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update stream %q: %w", c.Stream, err)
	}
	return s, nil
}

// EnsureConsumer creates or updates the durable pull consumer. It is
// idempotent.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "instancemgr consumer replicas; the ack wait is the job lock",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		BackOff:       c.BackOff,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %q on stream %q: %w", c.Consumer, c.Stream, err)
	}
	return cons, nil
}

// Ensure sets up the stream and the consumer.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	if _, err := EnsureStream(ctx, js, c); err != nil {
		return nil, err
	}
	return EnsureConsumer(ctx, js, c)
}
