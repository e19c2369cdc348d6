package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/jobs"
)

// StreamJobs reads jobs from the job stream, and where each stands from the
// durable consumer's ack floor, read once: a job above it may still be
// delivered. It only reads.
type StreamJobs struct {
	stream   jetstream.Stream
	ackFloor uint64
}

// NewStreamJobs opens the job stream and reads its durable consumer.
func NewStreamJobs(ctx context.Context, js jetstream.JetStream, c jobs.Config) (*StreamJobs, error) {
	c = c.WithDefaults()
	s, err := js.Stream(ctx, c.Stream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", c.Stream, err)
	}
	cons, err := js.Consumer(ctx, c.Stream, c.Consumer)
	if err != nil {
		return nil, fmt.Errorf("open consumer %s on %s: %w", c.Consumer, c.Stream, err)
	}
	return &StreamJobs{stream: s, ackFloor: cons.CachedInfo().AckFloor.Stream}, nil
}

// Last implements Jobs.
func (s *StreamJobs) Last(ctx context.Context, subject string) (JobState, bool, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return JobState{}, false, nil
	}
	if err != nil {
		return JobState{}, false, fmt.Errorf("look up %s: %w", subject, err)
	}
	return JobState{Seq: m.Sequence, Published: m.Time, Live: m.Sequence > s.ackFloor}, true, nil
}
