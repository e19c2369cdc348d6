package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// runbookReadOnly are the nats commands that only read; every other command
// of the runbook needs a hook below that checks what it did.
var runbookReadOnly = map[string]bool{
	"nats stream info":     true,
	"nats stream get":      true,
	"nats stream subjects": true,
	"nats stream ls":       true,
	"nats consumer info":   true,
	"nats consumer ls":     true,
}

// runbookHook runs around one kind of state-changing command.
type runbookHook struct {
	before, after func(vars map[string]string)
	ran           bool
}

// Every nats command of docs/operations.md, run as the runbook says with the
// nats CLI it names, against the real system: a bridge and a consumer on
// the embedded NATS server and the local PostgreSQL, one instance
// completed and one ended as a dead letter (a conflict with a database made
// by hand). Each command must exit 0 and print the output the runbook
// shows; the replay and the pause are checked by their effect: the replayed
// job is stored and completes once the conflict is resolved, the paused
// consumer delivers nothing until resumed.
func TestRunbookNATSCommands(t *testing.T) {
	t.Parallel()
	docPath := filepath.Join(testenv.RepoRoot(t), "docs", "operations.md")
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := parseRunbook(string(doc))
	if err != nil {
		t.Fatalf("docs/operations.md:\n%v", err)
	}
	natsBin := natsCLI(t)

	// The system connects as a user with every right, the nats CLI as the
	// operator user of the runbook, with its permissions and no more.
	operator := itest.RunbookOperator(t, string(doc))
	system := &server.User{Username: "instancemgr-test", Password: "test-" + testenv.Prefix()}
	srv, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Users: []*server.User{system, operator}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	withUser := func(u *server.User) string { return itest.UserURL(srv.ClientURL(), u) }
	e := newEnv(t, envOptions{natsURL: withUser(system)})
	foreign := e.prefix + "_Prod2024"
	testenv.CreateDatabase(t, e.pg, foreign)
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	done := e.create("", "District 9 - 2025")
	stuck := e.create("", "Prod2024")
	e.waitCompleted([]int{done}, time.Minute)
	dl := e.waitDeadLetters(1)[0]
	if dl.Code != "conflict" {
		t.Fatalf("dead letter %+v, want a conflict", dl)
	}
	e.waitSettled()

	ctx := context.Background()
	_, js := testenv.JetStream(t, e.natsURL)
	dead, err := js.Stream(ctx, jobs.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	deadMsg, err := dead.GetLastMsgForSubject(ctx, jobs.DeadSubject(dl.Subject))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"ID":       strconv.Itoa(stuck),
		"DONE_ID":  strconv.Itoa(done),
		"DATABASE": foreign,
		"SUBJECT":  dl.Subject,
		"DEAD_SEQ": strconv.FormatUint(deadMsg.Sequence, 10),
		"JOB_SEQ":  strconv.FormatUint(dl.StreamSequence, 10),
		"JOB":      string(dl.Message),
	}

	consumerInfo := func() *jetstream.ConsumerInfo {
		return e.consumerInfo()
	}
	hooks := map[string]*runbookHook{
		// Replay: resolve the conflict first, as the runbook says (rename
		// the foreign database out of the way), then the replayed job is
		// stored as published and completes the instance.
		"nats pub": {
			before: func(map[string]string) {
				if _, err := e.pg.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{foreign}.Sanitize()+" RENAME TO "+pgx.Identifier{foreign + "_old"}.Sanitize()); err != nil {
					t.Fatal(err)
				}
			},
			after: func(vars map[string]string) {
				seq, err := strconv.ParseUint(vars["REPLAY_SEQ"], 10, 64)
				if err != nil {
					t.Fatalf("the replay's sequence <REPLAY_SEQ> = %q: %v", vars["REPLAY_SEQ"], err)
				}
				s, err := js.Stream(ctx, e.cfg.NATS.Stream)
				if err != nil {
					t.Fatal(err)
				}
				m, err := s.GetMsg(ctx, seq)
				if err != nil {
					t.Fatalf("the replayed job is not in %s: %v", e.cfg.NATS.Stream, err)
				}
				if m.Subject != dl.Subject || strings.TrimSpace(string(m.Data)) != string(dl.Message) || m.Header.Get(jetstream.MsgIDHeader) != "replay."+vars["DEAD_SEQ"] {
					t.Fatalf("replayed message on %s, id %q: %s; want the dead letter's job on %s, id replay.%s", m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data, dl.Subject, vars["DEAD_SEQ"])
				}
				e.waitCompleted([]int{stuck}, time.Minute)
			},
		},
		// Pause: the consumer reports paused, a replica starting (setup)
		// keeps the pause, and a new job waits in the stream undelivered.
		"nats consumer pause": {
			after: func(vars map[string]string) {
				if !consumerInfo().Paused {
					t.Fatal("the consumer is not paused")
				}
				if _, err := jobs.EnsureConsumer(ctx, js, e.cfg.StreamConfig()); err != nil {
					t.Fatal(err)
				}
				if !consumerInfo().Paused {
					t.Fatal("setting up the consumer again (setup, a replica starting) ended the pause")
				}
				id := e.create("", "District 10 - 2025")
				vars["PAUSED_ID"] = strconv.Itoa(id)
				testenv.Eventually(t, 30*time.Second, "the new job in the stream, undelivered", func() bool {
					i := consumerInfo()
					return i.NumPending == 1 && i.NumAckPending == 0
				})
			},
		},
		"nats consumer resume": {
			after: func(vars map[string]string) {
				if consumerInfo().Paused {
					t.Fatal("the consumer is still paused")
				}
				id, _ := strconv.Atoi(vars["PAUSED_ID"])
				if r, _ := e.sim.Instance(id); r.Status != adminapi.StatusPending {
					t.Fatalf("instance %d is %s before the resume ran; the pause did not hold it", id, r.Status)
				}
				e.waitCompleted([]int{id}, time.Minute)
			},
		},
	}

	home := t.TempDir() // no nats context of the user's
	env := []string{"NATS_URL=" + withUser(operator), "HOME=" + home, "XDG_CONFIG_HOME=" + home, "NO_COLOR=1"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "NATS_") && k != "HOME" && k != "XDG_CONFIG_HOME" {
			env = append(env, kv)
		}
	}
	start := time.Now()
	for _, c := range cmds {
		words := c.Words()
		hook := hooks[words]
		if hook == nil && !runbookReadOnly[words] {
			t.Fatalf("docs/operations.md:%d: %q changes state and the test has no check of what it does: add a hook in %s", c.Line, words, "integration/runbook_test.go")
		}
		if hook != nil && hook.before != nil {
			hook.before(vars)
		}
		args := make([]string, 0, len(c.Args)-1)
		for _, a := range c.Args[1:] {
			v, err := fill(a, vars)
			if err != nil {
				t.Fatalf("docs/operations.md:%d: %v", c.Line, err)
			}
			args = append(args, v)
		}
		var stdin string
		for _, l := range c.Stdin {
			v, err := fill(l, vars)
			if err != nil {
				t.Fatalf("docs/operations.md:%d: %v", c.Line, err)
			}
			stdin += v + "\n"
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cmd := exec.CommandContext(cctx, natsBin, args...)
		cmd.Env, cmd.Stdin = env, strings.NewReader(stdin) // never a terminal
		out, err := cmd.CombinedOutput()
		cancel()
		if strings.Contains(string(out), "Permissions Violation") || strings.Contains(string(out), "permissions violation") {
			t.Fatalf("docs/operations.md:%d: the runbook's operator user may not do `%s`; add the subject to its permissions (## NATS permissions):\n%s", c.Line, c.Text, out)
		}
		if err != nil {
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("docs/operations.md:%d: run %s: %v", c.Line, c.Text, err)
			}
			t.Fatalf("docs/operations.md:%d: `%s` exited %d:\n%s", c.Line, strings.Join(append([]string{"nats"}, args...), " "), exit.ExitCode(), out)
		}
		got, err := checkOutput(c.Expect, string(out), vars)
		if err != nil {
			t.Fatalf("docs/operations.md:%d: `%s`: %v; it printed:\n%s", c.Line, c.Text, err, out)
		}
		for k, v := range got {
			vars[k] = v
		}
		if hook != nil {
			if hook.after != nil {
				hook.after(vars)
			}
			hook.ran = true
		}
	}
	for words, h := range hooks {
		if !h.ran {
			t.Errorf("docs/operations.md runs no %q: the runbook lost a step the test checks", words)
		}
	}
	t.Logf("%d nats commands of docs/operations.md ran and printed what it shows, in %s", len(cmds), time.Since(start).Round(time.Millisecond))
}
