package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

const jobsUsage = `usage:
  instancemgr jobs dead list   [flags]            every dead letter: reason, code, attempts, age
  instancemgr jobs dead show   [flags] SEQ        one dead letter with its original job
  instancemgr jobs dead replay [flags] SEQ        put the original job back (-force: even when
                                                  the reason says its cause is not fixed)
  instancemgr jobs show        [flags] TENANT ID  every message of one instance, and its state
                                                  (ID as in its subjects: 7, or m7 for the
                                                  manage line's request 7)

NATS is reached with -config (or INSTANCEMGR_CONFIG) as the roles reach it,
or, as the nats CLI does, with -server / NATS_URL (also INSTANCEMGR_NATS_URL)
and -creds / NATS_CREDS, NATS_USER, NATS_PASSWORD, NATS_CA. -server wins over
the configuration's URL.

flags:
`

// jobsFlags are the flags every jobs command takes.
type jobsFlags struct {
	fs      *flag.FlagSet
	config  *string
	server  *string
	creds   *string
	json    *bool
	force   *bool
	timeout *time.Duration
}

func newJobsFlags(stderr io.Writer) *jobsFlags {
	fs := newFlagSet("jobs", stderr)
	f := &jobsFlags{fs: fs}
	f.config = fs.String("config", os.Getenv("INSTANCEMGR_CONFIG"), "the roles' YAML configuration (or INSTANCEMGR_CONFIG)")
	f.server = fs.String("server", "", "NATS URL (or NATS_URL, INSTANCEMGR_NATS_URL; default nats://127.0.0.1:4222)")
	f.creds = fs.String("creds", "", "NATS credentials file (or NATS_CREDS)")
	f.json = fs.Bool("json", false, "print JSON, one object per line")
	f.force = fs.Bool("force", false, "replay even when the dead letter's reason says its cause is not fixed")
	f.timeout = fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), jobsUsage)
		fs.PrintDefaults()
	}
	return f
}

// parse accepts flags before, between and after the positional arguments
// (the nats CLI's habit: "replay 7 --force"), and returns the positionals.
func (f *jobsFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		args = f.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// natsConfig is how the command reaches NATS: the configuration when one
// is given, else as the nats CLI would, with -server winning over both. It
// also returns the stream settings and, with a configuration, what
// CheckReplay needs from it.
func (f *jobsFlags) natsConfig(environ []string) (config.NATS, jobs.Config, *jobs.ReplaySettings, error) {
	var n config.NATS
	var sc jobs.Config
	var settings *jobs.ReplaySettings
	if *f.config != "" {
		cfg, err := config.LoadEnviron(*f.config, environ)
		if err != nil {
			return n, sc, nil, err
		}
		n, sc = cfg.NATS, cfg.StreamConfig()
		settings = &jobs.ReplaySettings{AllowDelete: cfg.Provisioning.AllowDelete}
		for name := range cfg.Tenants {
			settings.Tenants = append(settings.Tenants, name)
		}
	} else {
		env := map[string]string{}
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
		n.URL = firstSet(env["INSTANCEMGR_NATS_URL"], env["NATS_URL"], nats.DefaultURL)
		n.CredsFile = firstSet(env["INSTANCEMGR_NATS_CREDS_FILE"], env["NATS_CREDS"])
		n.User, n.Password = env["NATS_USER"], env["NATS_PASSWORD"]
		n.TLS.CAFile = env["NATS_CA"]
	}
	if *f.server != "" {
		n.URL = *f.server
	}
	if *f.creds != "" {
		n.CredsFile, n.NKeyFile, n.User, n.Password, n.Token = *f.creds, "", "", "", ""
	}
	return n, sc.WithDefaults(), settings, nil
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newJobsFlags(stderr)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	var cmd func(ctx context.Context, js jetstream.JetStream, sc jobs.Config, settings *jobs.ReplaySettings) error
	switch {
	case len(pos) == 3 && pos[0] == "dead" && pos[1] == "list":
		return errors.New("jobs dead list takes no argument")
	case len(pos) == 2 && pos[0] == "dead" && pos[1] == "list":
		cmd = func(ctx context.Context, js jetstream.JetStream, _ jobs.Config, _ *jobs.ReplaySettings) error {
			return deadList(ctx, js, *f.json, stdout)
		}
	case len(pos) == 3 && pos[0] == "dead" && (pos[1] == "show" || pos[1] == "replay"):
		seq, err := strconv.ParseUint(pos[2], 10, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("%q is not a dead letter's sequence (a positive number, as jobs dead list shows)", pos[2])
		}
		if pos[1] == "show" {
			cmd = func(ctx context.Context, js jetstream.JetStream, _ jobs.Config, _ *jobs.ReplaySettings) error {
				return deadShow(ctx, js, seq, stdout)
			}
		} else {
			cmd = func(ctx context.Context, js jetstream.JetStream, sc jobs.Config, s *jobs.ReplaySettings) error {
				return deadReplay(ctx, js, sc, s, seq, *f.force, stdout)
			}
		}
	case len(pos) == 3 && pos[0] == "show":
		line, id, err := jobs.ParseInstanceToken(pos[2])
		if err != nil {
			return err
		}
		tenant := pos[1]
		cmd = func(ctx context.Context, js jetstream.JetStream, sc jobs.Config, _ *jobs.ReplaySettings) error {
			return jobShow(ctx, js, sc, tenant, line, id, *f.json, stdout)
		}
	default:
		f.fs.Usage()
		return fmt.Errorf("jobs: unknown command %q", strings.Join(pos, " "))
	}
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	defer cancel()
	n, sc, settings, err := f.natsConfig(os.Environ())
	if err != nil {
		return err
	}
	nc, js, err := app.DialNATS(n, "instancemgr jobs")
	if err != nil {
		return err
	}
	defer nc.Close()
	return cmd(ctx, js, sc, settings)
}

// deadRow is one dead letter as jobs dead list prints it.
type deadRow struct {
	Seq      uint64    `json:"seq"`
	Stored   time.Time `json:"stored"`
	Op       string    `json:"op"`
	Tenant   string    `json:"tenant"`
	Instance int       `json:"instanceId"`
	// Line is the instance's Admin API line; absent for adminconsole.
	Line     provisioning.Line `json:"line,omitempty"`
	Code     string            `json:"code"`
	Attempts uint64            `json:"attempts"`
	Reason   string            `json:"reason"`
	Subject  string            `json:"subject"`
}

func newDeadRow(d jobs.StoredDead) deadRow {
	r := deadRow{Seq: d.Seq, Stored: d.Stored, Code: d.Letter.Code, Attempts: d.Letter.Attempts, Reason: d.Letter.Reason, Subject: d.Subject}
	// The job's own fields when it decodes; the subject's tokens otherwise.
	if j, err := jobs.Decode(d.Body()); err == nil {
		r.Op, r.Tenant, r.Instance, r.Line = string(j.Operation), j.Tenant, j.InstanceID, j.Line
	} else if s, ok := d.JobSubject(); ok {
		tok := strings.Split(s, ".")
		if len(tok) >= 4 {
			r.Op, r.Tenant = tok[1], tok[2]
			r.Line, r.Instance, _ = jobs.ParseInstanceToken(tok[3])
		}
	}
	return r
}

func deadList(ctx context.Context, js jetstream.JetStream, asJSON bool, w io.Writer) error {
	dead, err := jobs.ListDead(ctx, js)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		for _, d := range dead {
			if err := enc.Encode(newDeadRow(d)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(dead) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAGE\tOP\tTENANT\tINSTANCE\tCODE\tATTEMPTS\tREASON")
	now := time.Now()
	for _, d := range dead {
		r := newDeadRow(d)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", r.Seq, age(now.Sub(r.Stored)), r.Op, r.Tenant, r.Instance, r.Code, r.Attempts, oneLine(r.Reason, 80))
	}
	return tw.Flush()
}

func deadShow(ctx context.Context, js jetstream.JetStream, seq uint64, w io.Writer) error {
	d, err := jobs.GetDead(ctx, js, seq)
	if err != nil {
		return err
	}
	r := newDeadRow(d)
	fmt.Fprintf(w, "dead letter %d, stored %s (%s ago) on %s\n", d.Seq, d.Stored.UTC().Format(time.RFC3339), age(time.Since(d.Stored)), d.Subject)
	fmt.Fprintf(w, "job:       %s %s tenant %q instance %s (job id %s)\n", r.Op, d.Letter.Subject, r.Tenant, jobs.InstanceToken(r.Line, r.Instance), d.Letter.JobID)
	fmt.Fprintf(w, "code:      %s after %d attempt(s), failed at %s\n", d.Letter.Code, d.Letter.Attempts, d.Letter.FailedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "job seq:   %d in the job stream\n", d.Letter.StreamSequence)
	fmt.Fprintf(w, "reason:    %s\n", d.Letter.Reason)
	fmt.Fprintln(w, "message:")
	if len(d.Letter.Message) > 0 {
		var pretty strings.Builder
		if err := indentJSON(&pretty, d.Letter.Message); err == nil {
			fmt.Fprintln(w, pretty.String())
			return nil
		}
	}
	fmt.Fprintf(w, "%q\n", d.Body())
	return nil
}

func indentJSON(b *strings.Builder, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	out, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	b.WriteString("  ")
	b.Write(out)
	return nil
}

func deadReplay(ctx context.Context, js jetstream.JetStream, sc jobs.Config, s *jobs.ReplaySettings, seq uint64, force bool, w io.Writer) error {
	d, err := jobs.GetDead(ctx, js, seq)
	if err != nil {
		return err
	}
	subject, ok := d.JobSubject()
	if !ok {
		return fmt.Errorf("dead letter %d is on %s: the message never named a job subject, so there is nothing to replay", seq, d.Subject)
	}
	r := newDeadRow(d)
	h, err := jobs.History(ctx, js, sc, r.Tenant, r.Line, r.Instance)
	if err != nil {
		return err
	}
	if why := jobs.CheckReplay(d, h, s); why != nil {
		if !force {
			return fmt.Errorf("not replayed: %w\n(fix the cause, then replay with -force if the tool cannot see the fix)", why)
		}
		fmt.Fprintf(w, "replaying despite: %v\n", why)
	}
	out, err := jobs.Replay(ctx, js, sc, d)
	if err != nil {
		return err
	}
	if out.Duplicate {
		fmt.Fprintf(w, "dead letter %d was already replayed as job stream sequence %d on %s; nothing new stored\n", seq, out.Seq, subject)
		return nil
	}
	fmt.Fprintf(w, "replayed dead letter %d: stored as job stream sequence %d on %s\n", seq, out.Seq, out.Subject)
	return nil
}

// showRow is one message of jobs show.
type showRow struct {
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"`
	Stored  time.Time `json:"stored"`
	Subject string    `json:"subject"`
	State   string    `json:"state"`
	Note    string    `json:"note,omitempty"`
}

func jobShow(ctx context.Context, js jetstream.JetStream, sc jobs.Config, tenant string, line provisioning.Line, id int, asJSON bool, w io.Writer) error {
	h, err := jobs.History(ctx, js, sc, tenant, line, id)
	if err != nil {
		return err
	}
	var rows []showRow
	for _, m := range h.Jobs {
		row := showRow{Stream: sc.Stream, Seq: m.Seq, Stored: m.Time, Subject: m.Subject, State: string(m.State)}
		if of := m.Header.Get(jobs.ReplayHeader); of != "" {
			row.Note = "replay of dead letter " + of
		}
		if m.Dead != nil {
			row.Note = strings.TrimPrefix(row.Note+"; ", "; ") + fmt.Sprintf("dead letter %d: %s", m.Dead.Seq, oneLine(m.Dead.Letter.Code+": "+m.Dead.Letter.Reason, 80))
		}
		rows = append(rows, row)
	}
	for _, d := range h.Dead {
		rows = append(rows, showRow{Stream: jobs.DeadStream, Seq: d.Seq, Stored: d.Stored, Subject: d.Subject, State: string(jobs.StateDead),
			Note: oneLine(d.Letter.Code+": "+d.Letter.Reason, 80) + fmt.Sprintf(" (job seq %d no longer stored)", d.Letter.StreamSequence)})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "no messages for tenant %q instance %d\n", tenant, id)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSEQ\tAGE\tSUBJECT\tSTATE\tNOTE")
	now := time.Now()
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Stream, r.Seq, age(now.Sub(r.Stored)), r.Subject, r.State, r.Note)
	}
	return tw.Flush()
}

// age is a duration as a person reads it: 45s, 12m, 3h, 9d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// oneLine makes s fit one table cell: newlines and tabs become spaces, and
// it is cut at max characters.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}
