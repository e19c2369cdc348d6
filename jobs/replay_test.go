package jobs_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// A dead letter is written by whoever may publish on instances.dead.>, so
// its copy of the message is never what a replay sends: the job stream's
// own message at the letter's sequence is, and a letter that names a
// sequence holding another subject's message, or none, replays nothing.
func TestReplaySendsTheStreamsOriginalNeverTheLettersCopy(t *testing.T) {
	_, js := testenv.JetStream(t, testenv.NATS(t))
	ctx := context.Background()
	cfg := jobs.Config{AckWait: time.Minute}.WithDefaults()
	if _, err := jobs.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	publish := func(j jobs.Job) uint64 {
		t.Helper()
		data, err := jobs.Encode(j)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.Publish(ctx, j.Subject(), data)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	orig := jobs.NewCreate("default", 7, "District")
	origSeq := publish(orig)
	otherSeq := publish(jobs.NewCreate("default", 8, "Other"))

	forged := jobs.NewCreate("default", 7, "Evil")
	body, err := jobs.Encode(forged)
	if err != nil {
		t.Fatal(err)
	}
	letter := func(seq uint64) jobs.StoredDead {
		return jobs.StoredDead{Seq: 1, Subject: jobs.DeadSubject(orig.Subject()),
			Letter: jobs.NewDeadLetter(body, orig.Subject(), seq, 1, orig.ID, "exhausted", "tampered")}
	}

	out, err := jobs.Replay(ctx, js, cfg, letter(origSeq))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	got, err := stream.GetMsg(ctx, out.Seq)
	if err != nil {
		t.Fatal(err)
	}
	var replayed jobs.Job
	if err := json.Unmarshal(got.Data, &replayed); err != nil {
		t.Fatal(err)
	}
	if got.Subject != orig.Subject() || replayed.Name != "District" {
		t.Fatalf("replay stored %q on %s; want the stream's original (name District) on %s", replayed.Name, got.Subject, orig.Subject())
	}

	for name, tc := range map[string]struct {
		seq  uint64
		want string
	}{
		"a sequence holding another subject's message": {otherSeq, "holds a message on " + jobs.NewCreate("default", 8, "").Subject()},
		"a sequence holding nothing":                   {otherSeq + 100, "no longer in the stream"},
	} {
		t.Run(name, func(t *testing.T) {
			before, err := stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jobs.Replay(ctx, js, cfg, letter(tc.seq)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("replay: %v; want an error saying %q", err, tc.want)
			}
			after, err := stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after.State.Msgs != before.State.Msgs {
				t.Fatalf("a refused replay stored a message (%d -> %d)", before.State.Msgs, after.State.Msgs)
			}
		})
	}
}
