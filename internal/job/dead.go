package job

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

// DeadPrefix starts every dead-letter subject:
// instances.dead.<operation>.<tenant>.<instance id>, or
// instances.dead.malformed for a message that is not a job at all.
const DeadPrefix = SubjectPrefix + ".dead"

// DeadLetter is a job that ended without success, with why.
type DeadLetter struct {
	Reason string `json:"reason"`
	// Code is a short machine-readable class of Reason: malformed,
	// invalid_name, unknown_tenant, conflict, protected, not_found,
	// exhausted, failed.
	Code     string    `json:"code"`
	Attempts uint64    `json:"attempts"`
	FailedAt time.Time `json:"failedAt"`
	// Subject and StreamSequence locate the original in the job stream.
	Subject        string `json:"subject"`
	StreamSequence uint64 `json:"streamSequence"`
	JobID          string `json:"jobId,omitempty"`
	// Message is the original message when it was JSON; Raw holds it
	// otherwise (base64 in JSON).
	Message json.RawMessage `json:"message,omitempty"`
	Raw     []byte          `json:"raw,omitempty"`
}

// DeadSubject is where a dead letter for j goes; j may be zero for a
// message that could not be read.
func DeadSubject(j Job) string {
	if j.ID == "" {
		return DeadPrefix + ".malformed"
	}
	return DeadPrefix + "." + j.ID
}

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

// PublishDead stores a dead letter and returns once JetStream has it. The
// message ID is the original's stream sequence, so a dead letter written
// twice for the same delivery is kept once.
func PublishDead(ctx context.Context, js jetstream.JetStream, j Job, d DeadLetter) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: DeadSubject(j), Data: data, Header: nats.Header{}}
	id := "dead." + strconv.FormatUint(d.StreamSequence, 10) + "." + strconv.FormatUint(d.Attempts, 10)
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish dead letter to %s: %w", msg.Subject, err)
	}
	return nil
}

// NewDeadLetter fills a dead letter from the original message body.
func NewDeadLetter(body []byte, subject string, streamSeq, attempts uint64, jobID, code, reason string) DeadLetter {
	d := DeadLetter{Reason: reason, Code: code, Attempts: attempts, FailedAt: time.Now().UTC(), Subject: subject, StreamSequence: streamSeq, JobID: jobID}
	if json.Valid(body) {
		d.Message = json.RawMessage(body)
	} else {
		d.Raw = body
	}
	return d
}
