package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadStream is the stream that keeps dead letters.
const DeadStream = "INSTANCES_DEAD"

// EnsureDeadStream creates or updates the dead-letter stream: file storage,
// limits retention, kept for maxAge (at least 90 days by default).
func EnsureDeadStream(ctx context.Context, js jetstream.JetStream, replicas int, maxAge time.Duration) error {
	if maxAge <= 0 {
		maxAge = 90 * 24 * time.Hour
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadStream,
		Description: "instancemgr jobs that ended without success, with the reason",
		Subjects:    []string{DeadPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		MaxAge:      maxAge,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("create or update stream %q: %w", DeadStream, err)
	}
	return nil
}

// PublishDead stores a dead letter on DeadSubject(d.Subject) and returns
// once JetStream has it. The message ID is the original's stream sequence,
// so a dead letter written twice for the same delivery is kept once.
func PublishDead(ctx context.Context, js jetstream.JetStream, d DeadLetter) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: DeadSubject(d.Subject), Data: data, Header: nats.Header{}}
	id := "dead." + strconv.FormatUint(d.StreamSequence, 10) + "." + strconv.FormatUint(d.Attempts, 10)
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", msg.Subject, err)
	}
	return nil
}
