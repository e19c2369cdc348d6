package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Stored is one message as a stream keeps it.
type Stored struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Data    []byte
	Header  nats.Header
}

// StoredDead is a dead letter as INSTANCES_DEAD keeps it.
type StoredDead struct {
	Seq    uint64
	Stored time.Time
	// Subject is the dead letter's own subject (instances.dead.…).
	Subject string
	Letter  DeadLetter
}

// JobSubject is the subject the dead letter's job was delivered on, read
// from the dead letter's own subject, which the consumer derived from the
// delivery; the body's Subject field is only what someone wrote. ok is false
// for instances.dead.malformed, which has no job subject.
func (d StoredDead) JobSubject() (subject string, ok bool) {
	rest, found := strings.CutPrefix(d.Subject, DeadPrefix+".")
	if !found || rest == "malformed" {
		return "", false
	}
	return SubjectPrefix + "." + rest, true
}

// Body is the original job message.
func (d StoredDead) Body() []byte {
	if len(d.Letter.Message) > 0 {
		return d.Letter.Message
	}
	return d.Letter.Raw
}

// ReadAll returns every message of stream on one of subjects (all of them
// when none is given), oldest first. It asks for each message by "next on
// this subject from this sequence", the stream's message-get API: it leaves
// nothing behind on the server and needs only the permission that
// nats stream get needs ($JS.API.STREAM.MSG.GET.<stream>), the one
// docs/operations.md gives operators.
func ReadAll(ctx context.Context, js jetstream.JetStream, stream string, subjects ...string) ([]Stored, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream, err)
	}
	if len(subjects) == 0 {
		subjects = []string{">"}
	}
	bySeq := map[uint64]Stored{}
	for _, subject := range subjects {
		for seq := uint64(1); ; {
			m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read stream %s: %w", stream, err)
			}
			bySeq[m.Sequence] = Stored{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Data: m.Data, Header: m.Header}
			seq = m.Sequence + 1
		}
	}
	out := make([]Stored, 0, len(bySeq))
	for _, m := range bySeq {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Stored) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// ListDead returns every dead letter, oldest first.
func ListDead(ctx context.Context, js jetstream.JetStream) ([]StoredDead, error) {
	return listDead(ctx, js)
}

func listDead(ctx context.Context, js jetstream.JetStream, subjects ...string) ([]StoredDead, error) {
	msgs, err := ReadAll(ctx, js, DeadStream, subjects...)
	if err != nil {
		return nil, err
	}
	out := make([]StoredDead, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decodeDead(m.Seq, m.Subject, m.Time, m.Data))
	}
	return out, nil
}

// decodeDead reads a dead letter; a body that is not one still shows, with
// the reason saying so, so that a listing never hides a stored message.
func decodeDead(seq uint64, subject string, stored time.Time, data []byte) StoredDead {
	d := StoredDead{Seq: seq, Subject: subject, Stored: stored}
	if err := json.Unmarshal(data, &d.Letter); err != nil {
		d.Letter = DeadLetter{Code: "unreadable", Reason: "the dead letter is not JSON: " + err.Error(), Raw: data}
	}
	return d
}

// GetDead returns the dead letter stored at seq.
func GetDead(ctx context.Context, js jetstream.JetStream, seq uint64) (StoredDead, error) {
	s, err := js.Stream(ctx, DeadStream)
	if err != nil {
		return StoredDead{}, fmt.Errorf("open stream %s: %w", DeadStream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return StoredDead{}, fmt.Errorf("no dead letter %d in %s (expired after the stream's max age, or never written)", seq, DeadStream)
	}
	if err != nil {
		return StoredDead{}, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	return decodeDead(m.Sequence, m.Subject, m.Time, m.Data), nil
}

// InstanceFilters are the subjects of every message about one instance of
// line: its jobs (with or without a generation) in the job stream, and
// their dead letters.
func InstanceFilters(tenant string, line provisioning.Line, instanceID int) (jobs, dead []string) {
	tail := SubjectToken(tenant) + "." + InstanceToken(line, instanceID)
	jobs = []string{SubjectPrefix + ".*." + tail, SubjectPrefix + ".*." + tail + ".>"}
	dead = []string{DeadPrefix + ".*." + tail, DeadPrefix + ".*." + tail + ".>"}
	return jobs, dead
}

// JobState is where a job message stands with the durable consumer.
type JobState string

// The states a job message can be in.
const (
	// StateDone: acknowledged or terminated (the consumer's ack floor is
	// past it) and no dead letter names it.
	StateDone JobState = "done"
	// StateDead: ended without success; a dead letter names it.
	StateDead JobState = "dead"
	// StateDelivered: handed to a replica and not yet below the ack
	// floor: running, waiting for a retry, or finished while an older job
	// is still running.
	StateDelivered JobState = "delivered"
	// StateWaiting: not yet delivered to any replica.
	StateWaiting JobState = "waiting"
)

// JobMessage is one message of an instance's jobs and where it stands.
type JobMessage struct {
	Stored
	State JobState
	// Dead is the dead letter that names this message, if any.
	Dead *StoredDead
}

// InstanceHistory is every message about one instance.
type InstanceHistory struct {
	Jobs []JobMessage
	// Dead are dead letters of the instance whose job message is no longer
	// in the job stream (expired) or that name none.
	Dead []StoredDead
}

// History returns every message of one instance of line in the job stream c.Stream,
// with its state with the durable consumer c.Consumer, and the dead letters
// that go with them.
func History(ctx context.Context, js jetstream.JetStream, c Config, tenant string, line provisioning.Line, instanceID int) (InstanceHistory, error) {
	c = c.WithDefaults()
	jobSubjects, deadSubjects := InstanceFilters(tenant, line, instanceID)
	msgs, err := ReadAll(ctx, js, c.Stream, jobSubjects...)
	if err != nil {
		return InstanceHistory{}, err
	}
	dead, err := listDead(ctx, js, deadSubjects...)
	if err != nil {
		return InstanceHistory{}, err
	}
	cons, err := js.Consumer(ctx, c.Stream, c.Consumer)
	if err != nil {
		return InstanceHistory{}, fmt.Errorf("open consumer %s on %s: %w", c.Consumer, c.Stream, err)
	}
	info := cons.CachedInfo()
	bySeq := map[uint64]*StoredDead{}
	for i := range dead {
		bySeq[dead[i].Letter.StreamSequence] = &dead[i]
	}
	var h InstanceHistory
	named := map[uint64]bool{}
	for _, m := range msgs {
		jm := JobMessage{Stored: m}
		switch d := bySeq[m.Seq]; {
		case d != nil:
			jm.State, jm.Dead = StateDead, d
			named[d.Seq] = true
		case m.Seq <= info.AckFloor.Stream:
			jm.State = StateDone
		case m.Seq <= info.Delivered.Stream:
			jm.State = StateDelivered
		default:
			jm.State = StateWaiting
		}
		h.Jobs = append(h.Jobs, jm)
	}
	for _, d := range dead {
		if !named[d.Seq] {
			h.Dead = append(h.Dead, d)
		}
	}
	return h, nil
}

// Replayed is where a replayed job was stored.
type Replayed struct {
	Subject string
	Seq     uint64
	// Duplicate is true when JetStream already had this replay (the same
	// dead letter replayed twice within the duplicate window) and stored
	// nothing new.
	Duplicate bool
}

// ReplayHeader names, on a replayed job, the dead letter it came from.
const ReplayHeader = "Instancemgr-Replay-Of"

// Replay publishes the dead letter's original job again on the subject it
// was delivered on, and returns once the job stream has stored it. What it
// publishes is the job stream's own copy of the original (by the stream
// sequence the letter names), never the letter's copy of it, which anyone
// who can publish a dead letter could have written; a letter whose
// sequence does not hold a message on its subject is refused. The message
// ID is replay.<dead letter's sequence>, so replaying one dead letter twice
// within the duplicate window stores it once.
func Replay(ctx context.Context, js jetstream.JetStream, c Config, d StoredDead) (Replayed, error) {
	c = c.WithDefaults()
	subject, ok := d.JobSubject()
	if !ok {
		return Replayed{}, fmt.Errorf("dead letter %d is on %s: it has no job subject to replay to", d.Seq, d.Subject)
	}
	stream, err := js.Stream(ctx, c.Stream)
	if err != nil {
		return Replayed{}, fmt.Errorf("open stream %q: %w", c.Stream, err)
	}
	orig, err := stream.GetMsg(ctx, d.Letter.StreamSequence)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return Replayed{}, fmt.Errorf("dead letter %d: the original job (stream %s sequence %d) is no longer in the stream (older than its maximum age); the bridge publishes a request that is still pending again by itself", d.Seq, c.Stream, d.Letter.StreamSequence)
	case err != nil:
		return Replayed{}, fmt.Errorf("read the original job, stream %s sequence %d: %w", c.Stream, d.Letter.StreamSequence, err)
	case orig.Subject != subject:
		return Replayed{}, fmt.Errorf("dead letter %d names stream sequence %d on %s, but that sequence holds a message on %s: the letter is not that message's; nothing replayed", d.Seq, d.Letter.StreamSequence, subject, orig.Subject)
	}
	// The same ID docs/operations.md gives a replay by plain nats pub, so
	// the two ways together still store one job within the window.
	id := "replay." + strconv.FormatUint(d.Seq, 10)
	msg := &nats.Msg{Subject: subject, Data: orig.Data, Header: nats.Header{}}
	msg.Header.Set(ReplayHeader, strconv.FormatUint(d.Seq, 10))
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(c.Stream))
	if err != nil {
		return Replayed{}, fmt.Errorf("publish to %s: %w", subject, err)
	}
	return Replayed{Subject: subject, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// ReplaySettings is what the configuration says now, for the codes whose
// cause it fixes; nil when the tool runs without one.
type ReplaySettings struct {
	Tenants     []string
	AllowDelete bool
}

// CheckReplay says why replaying d would fail again, or nil. A replay is
// refused when the dead letter's code says the message itself is the cause
// (replaying cannot help), when it names a cause only a person can fix
// (which the tool cannot verify), when the configuration that would fix it
// still says the same, or when the job was already put back. --force
// overrides each of these; the consumer still checks everything on
// delivery, so a forced replay can only fail again, never do harm.
func CheckReplay(d StoredDead, h InstanceHistory, s *ReplaySettings) error {
	if _, ok := d.JobSubject(); !ok {
		return fmt.Errorf("dead letter %d is on %s: the message never named a job subject, so there is nothing to replay", d.Seq, d.Subject)
	}
	for _, m := range h.Jobs {
		if m.Seq > d.Letter.StreamSequence && m.Subject == d.Letter.Subject && m.State != StateDead {
			return fmt.Errorf("the job was already put back: stream sequence %d on %s is %s", m.Seq, m.Subject, m.State)
		}
	}
	code := d.Letter.Code
	switch code {
	case "exhausted", "failed", "transient":
		return nil // a cause that can heal: an outage, a busy template
	case "malformed", "invalid_name", "unreadable":
		return fmt.Errorf("code %s: the message itself is the cause, and a replay sends the same message; fix the request in the Admin Console instead", code)
	case "foreign":
		return fmt.Errorf("code %s: the message is not its request's job (another subject, name, database or generation, or an operation that Admin API line lacks), and a replay sends the same message; find who published it. A request still pending gets its own job from the bridge", code)
	case "unknown_tenant":
		j, _ := Decode(d.Body())
		if s != nil && j.Tenant != "" && slices.Contains(s.Tenants, j.Tenant) {
			return nil
		}
		if s == nil {
			return fmt.Errorf("code %s: tenant not configured; without -config this tool cannot see whether it is now", code)
		}
		return fmt.Errorf("code %s: tenant %q is still not in the configuration", code, j.Tenant)
	case "delete_disabled":
		if s != nil && s.AllowDelete {
			return nil
		}
		if s == nil {
			return fmt.Errorf("code %s: without -config this tool cannot see whether provisioning.allowDelete is now on", code)
		}
		return fmt.Errorf("code %s: provisioning.allowDelete is still off", code)
	}
	return fmt.Errorf("code %s: %s; only a person can fix that (see docs/operations.md), and this tool cannot verify it", code, d.Letter.Reason)
}
