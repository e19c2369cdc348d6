package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

var natsLine = regexp.MustCompile(`NATS \(embedded\)\s+(nats://\S+)`)

// jobsCmd runs `instancemgr jobs args...` and returns what it printed.
func jobsCmd(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(append([]string{"jobs"}, args...), &out, &errOut)
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

func mustJobs(t *testing.T, args ...string) string {
	t.Helper()
	out, err := jobsCmd(args...)
	if err != nil {
		t.Fatalf("jobs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// The operator's path through a dead letter, on the real system: a create
// that met a database somebody else made ends as a conflict; the tools list
// and show it, refuse to replay it while the tool cannot see the cause
// fixed, and once the operator has removed the foreign database, a forced
// replay puts the very job back and it completes. A second replay is
// refused: the job is already back.
func TestJobsToolsListShowAndReplayADeadLetter(t *testing.T) {
	t.Parallel()
	pg, prefix, args := devWorld(t, "error")
	simURL, _, banner, _ := startDevBanner(t, args)
	m := natsLine.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("the banner names no NATS URL:\n%s", banner)
	}
	natsURL := m[1]
	api := console(t, simURL)
	ctx := context.Background()

	// Somebody else's database under the name the request will get.
	foreign := prefix + "_Taken"
	testenv.CreateDatabase(t, pg, foreign)
	taken, err := api.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Taken", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	fine, err := api.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Fine", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	var rows []deadRow
	testenv.Eventually(t, time.Minute, "the conflict's dead letter", func() bool {
		rows = nil
		for line := range strings.Lines(mustJobs(t, "dead", "list", "-json", "-server", natsURL)) {
			var r deadRow
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("jobs dead list -json printed %q: %v", line, err)
			}
			rows = append(rows, r)
		}
		return len(rows) > 0
	})
	d := rows[0]
	if len(rows) != 1 || d.Code != "conflict" || d.Op != "create" || d.Tenant != "default" || d.Instance != taken.ID || d.Attempts != 1 || !strings.Contains(d.Reason, foreign) {
		t.Fatalf("dead letters %+v; want one conflict for instance %d naming %s", rows, taken.ID, foreign)
	}
	seq := strconv.FormatUint(d.Seq, 10)

	table := mustJobs(t, "dead", "list", "-server", natsURL)
	if !regexp.MustCompile(`(?m)^SEQ\s+AGE\s+OP\s+TENANT\s+INSTANCE\s+CODE\s+ATTEMPTS\s+REASON\n` + seq + `\s+\d+s\s+create\s+default\s+` + strconv.Itoa(taken.ID) + `\s+conflict\s+1\s+`).MatchString(table) {
		t.Fatalf("jobs dead list:\n%s", table)
	}
	shown := mustJobs(t, "dead", "show", seq, "-server", natsURL)
	for _, want := range []string{"dead letter " + seq, "code:      conflict after 1 attempt(s)", foreign, `"name": "Taken"`} {
		if !strings.Contains(shown, want) {
			t.Fatalf("jobs dead show lacks %q:\n%s", want, shown)
		}
	}

	// Where each instance's jobs stand.
	testenv.Eventually(t, time.Minute, "Fine completed", func() bool {
		w, err := api.Instance(ctx, "", fine.ID)
		return err == nil && w.Status == adminapi.StatusCompleted
	})
	testenv.Eventually(t, 10*time.Second, "Fine's job done", func() bool {
		out := mustJobs(t, "show", "default", strconv.Itoa(fine.ID), "-server", natsURL)
		return regexp.MustCompile(`INSTANCES\s+\d+\s+\d+s\s+instances\.create\.default\.` + strconv.Itoa(fine.ID) + `\s+done`).MatchString(out)
	})
	history := mustJobs(t, "show", "default", strconv.Itoa(taken.ID), "-server", natsURL)
	if !regexp.MustCompile(`instances\.create\.default\.` + strconv.Itoa(taken.ID) + `\s+dead\s+dead letter ` + seq + `: conflict`).MatchString(history) {
		t.Fatalf("jobs show for the conflict:\n%s", history)
	}

	// Not replayed while the cause may stand; nothing is stored.
	out, err := jobsCmd("dead", "replay", seq, "-server", natsURL)
	if err == nil || !strings.Contains(err.Error(), "code conflict") {
		t.Fatalf("replay of a conflict: %v\n%s", err, out)
	}
	if again := mustJobs(t, "show", "default", strconv.Itoa(taken.ID), "-server", natsURL); strings.Count(again, "instances.create.") != 1 {
		t.Fatalf("a refused replay stored a job:\n%s", again)
	}

	// The operator removes the foreign database, then forces the replay.
	if _, err := pg.Exec(ctx, `DROP DATABASE "`+foreign+`"`); err != nil {
		t.Fatal(err)
	}
	out = mustJobs(t, "dead", "replay", "-force", seq, "-server", natsURL)
	if !regexp.MustCompile(`replayed dead letter ` + seq + `: stored as job stream sequence \d+ on instances\.create\.default\.` + strconv.Itoa(taken.ID)).MatchString(out) {
		t.Fatalf("forced replay said:\n%s", out)
	}
	testenv.Eventually(t, time.Minute, "the replayed create completed", func() bool {
		w, err := api.Instance(ctx, "", taken.ID)
		return err == nil && w.Status == adminapi.StatusCompleted
	})
	var exists bool
	if err := pg.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, foreign).Scan(&exists); err != nil || !exists {
		t.Fatalf("the replayed create made no database %s: %v", foreign, err)
	}
	history = mustJobs(t, "show", "default", strconv.Itoa(taken.ID), "-server", natsURL)
	if !regexp.MustCompile(`\s(done|delivered)\s+replay of dead letter ` + seq).MatchString(history) {
		t.Fatalf("jobs show after the replay:\n%s", history)
	}
	out, err = jobsCmd("dead", "replay", seq, "-server", natsURL)
	if err == nil || !strings.Contains(err.Error(), "already put back") {
		t.Fatalf("a second replay: %v\n%s", err, out)
	}
}

// NATS is reached as the roles reach it, or as the nats CLI does.
func TestJobsReachNATSLikeTheRolesAndTheNatsCLI(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	body := `
adminApi: {baseUrl: "http://127.0.0.1:1", clientId: w, clientSecret: s}
nats: {url: "nats://from-config:4222", stream: JOBS, consumer: workers}
provisioning: {allowDelete: true}
tenants:
  district9: {master: "host=h;database=postgres", admin: "host=h;database=EdFi_Admin", ods: "host=h;database={0}"}
`
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args    []string
		environ []string
		url     string
		stream  string
		creds   string
	}{
		{nil, nil, "nats://127.0.0.1:4222", "INSTANCES", ""},
		{nil, []string{"NATS_URL=nats://cli:4222", "NATS_CREDS=/c.creds"}, "nats://cli:4222", "INSTANCES", "/c.creds"},
		{nil, []string{"NATS_URL=nats://cli:4222", "INSTANCEMGR_NATS_URL=nats://ours:4222"}, "nats://ours:4222", "INSTANCES", ""},
		{[]string{"-server", "nats://flag:4222"}, []string{"NATS_URL=nats://cli:4222"}, "nats://flag:4222", "INSTANCES", ""},
		{[]string{"-config", cfgFile}, []string{"NATS_URL=nats://cli:4222"}, "nats://from-config:4222", "JOBS", ""},
		{[]string{"-config", cfgFile}, []string{"INSTANCEMGR_NATS_URL=nats://ours:4222"}, "nats://ours:4222", "JOBS", ""},
		{[]string{"-config", cfgFile, "-server", "nats://flag:4222", "-creds", "/f.creds"}, nil, "nats://flag:4222", "JOBS", "/f.creds"},
	} {
		f := newJobsFlags(&bytes.Buffer{})
		if _, err := f.parse(tc.args); err != nil {
			t.Fatal(err)
		}
		n, sc, settings, err := f.natsConfig(tc.environ)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.environ, err)
		}
		if n.URL != tc.url || sc.Stream != tc.stream || n.CredsFile != tc.creds {
			t.Errorf("%v %v: url %q stream %q creds %q; want %q %q %q", tc.args, tc.environ, n.URL, sc.Stream, n.CredsFile, tc.url, tc.stream, tc.creds)
		}
		if withConfig := len(tc.args) > 0 && tc.args[0] == "-config"; withConfig != (settings != nil) ||
			withConfig && (!settings.AllowDelete || fmt.Sprint(settings.Tenants) != "[district9]") {
			t.Errorf("%v: replay settings %+v", tc.args, settings)
		}
	}
}

// Flags may follow the arguments, as with the nats CLI; a wrong argument
// is refused before NATS is dialled.
func TestJobsArguments(t *testing.T) {
	f := newJobsFlags(&bytes.Buffer{})
	pos, err := f.parse([]string{"dead", "replay", "7", "--force", "-server", "nats://x:1"})
	if err != nil || fmt.Sprint(pos) != "[dead replay 7]" || !*f.force || *f.server != "nats://x:1" {
		t.Fatalf("parse: %v %v force=%v server=%q", pos, err, *f.force, *f.server)
	}
	for _, args := range [][]string{
		{"dead", "show", "x"},
		{"dead", "replay", "0"},
		{"show", "default", "-3"},
		{"show", "default"},
		{"dead", "purge", "1"},
	} {
		out, err := jobsCmd(append(args, "-server", "nats://127.0.0.1:1")...)
		if err == nil || strings.Contains(out, "connect to NATS") {
			t.Errorf("jobs %v: %v\n%s", args, err, out)
		}
	}
}

// The jobs commands need no more than the NATS permissions the runbook
// gives operators: listing, showing and replaying work as that user, and a
// replay stored once stays once.
func TestJobsWorkWithTheRunbooksOperatorPermissions(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	operator := itest.RunbookOperator(t, string(doc))
	system := &server.User{Username: "system", Password: "system-" + testenv.Prefix()}
	srv, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Users: []*server.User{system, operator}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	as := func(u *server.User) string { return itest.UserURL(srv.ClientURL(), u) }
	ctx := context.Background()
	_, js := testenv.JetStream(t, as(system))
	sc := jobs.Config{}.WithDefaults()
	if _, err := jobs.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	if err := jobs.EnsureDeadStream(ctx, js, 1, 0); err != nil {
		t.Fatal(err)
	}
	// A create the bridge published, whose last delivery failed with an
	// error that heals (the Admin API was down): its dead letter.
	j := jobs.NewCreate("district 9", 7, "Prod")
	body, err := jobs.Encode(j)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, j.Subject(), body, jetstream.WithMsgID(j.ID))
	if err != nil {
		t.Fatal(err)
	}
	dl := jobs.NewDeadLetter(body, j.Subject(), ack.Sequence, 10, j.ID, "exhausted", "retries exhausted after 10 deliveries: the Admin API answered 503")
	if err := jobs.PublishDead(ctx, js, dl); err != nil {
		t.Fatal(err)
	}

	op := as(operator)
	if out := mustJobs(t, "dead", "list", "-server", op); !regexp.MustCompile(`(?m)^1\s+\d+s\s+create\s+district 9\s+7\s+exhausted\s+10\s+retries exhausted`).MatchString(out) {
		t.Fatalf("jobs dead list:\n%s", out)
	}
	if out := mustJobs(t, "dead", "show", "1", "-server", op); !strings.Contains(out, "the Admin API answered 503") || !strings.Contains(out, `"name": "Prod"`) {
		t.Fatalf("jobs dead show:\n%s", out)
	}
	if out := mustJobs(t, "show", "district 9", "7", "-server", op); !regexp.MustCompile(`INSTANCES\s+1\s+\d+s\s+instances\.create\.district%209\.7\s+dead\s+dead letter 1: exhausted`).MatchString(out) {
		t.Fatalf("jobs show:\n%s", out)
	}
	out := mustJobs(t, "dead", "replay", "1", "-server", op)
	if !strings.Contains(out, "replayed dead letter 1: stored as job stream sequence 2 on instances.create.district%209.7") {
		t.Fatalf("jobs dead replay:\n%s", out)
	}
	s, err := js.Stream(ctx, sc.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != j.Subject() || string(m.Data) != string(body) || m.Header.Get(jetstream.MsgIDHeader) != "replay.1" || m.Header.Get(jobs.ReplayHeader) != "1" {
		t.Fatalf("the replayed job: %s %q %v", m.Subject, m.Data, m.Header)
	}
	if _, err := jobsCmd("dead", "replay", "1", "-server", op); err == nil || !strings.Contains(err.Error(), "already put back: stream sequence 2") {
		t.Fatalf("a second replay: %v", err)
	}
	// Forced within the duplicate window: JetStream keeps the one copy.
	if out := mustJobs(t, "dead", "replay", "-force", "1", "-server", op); !strings.Contains(out, "was already replayed as job stream sequence 2") {
		t.Fatalf("a forced second replay:\n%s", out)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 2 {
		t.Fatalf("the job stream holds %v messages (%v), want the job and one replay", info.State.Msgs, err)
	}
}

// jobs show takes the instance as its subjects name it: 7 is adminconsole's
// instance 7, m7 the manage line's request 7, and each shows only its own
// messages; a manage dead letter lists with its line.
func TestJobsShowTellsTheLinesApart(t *testing.T) {
	natsURL := testenv.NATS(t)
	ctx := context.Background()
	_, js := testenv.JetStream(t, natsURL)
	sc := jobs.Config{}.WithDefaults()
	if _, err := jobs.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	if err := jobs.EnsureDeadStream(ctx, js, 1, 0); err != nil {
		t.Fatal(err)
	}
	for _, j := range []jobs.Job{jobs.NewCreate("default", 7, "Old"), jobs.NewCreate("default", 7, "New").OnLine(provisioning.LineManage)} {
		body, err := jobs.Encode(j)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.Publish(ctx, j.Subject(), body, jetstream.WithMsgID(j.ID))
		if err != nil {
			t.Fatalf("publish %s: %v", j.Subject(), err)
		}
		if j.Line == provisioning.LineManage {
			if err := jobs.PublishDead(ctx, js, jobs.NewDeadLetter(body, j.Subject(), ack.Sequence, 1, j.ID, "conflict", "for the test")); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := mustJobs(t, "show", "default", "7", "-server", natsURL)
	if !strings.Contains(old, "instances.create.default.7") || strings.Contains(old, ".m7") {
		t.Fatalf("jobs show default 7:\n%s", old)
	}
	manage := mustJobs(t, "show", "default", "m7", "-server", natsURL)
	if !strings.Contains(manage, "instances.create.default.m7") || strings.Contains(manage, "instances.create.default.7 ") {
		t.Fatalf("jobs show default m7:\n%s", manage)
	}
	var row struct {
		Instance int    `json:"instanceId"`
		Line     string `json:"line"`
	}
	if err := json.Unmarshal([]byte(mustJobs(t, "dead", "list", "-json", "-server", natsURL)), &row); err != nil || row.Instance != 7 || row.Line != "manage" {
		t.Fatalf("dead list row %+v, %v", row, err)
	}
	for _, bad := range []string{"x7", "m", "m-7", "07"} {
		if _, err := jobsCmd("show", "default", bad, "-server", natsURL); err == nil {
			t.Errorf("jobs show default %s was taken", bad)
		}
	}
}
