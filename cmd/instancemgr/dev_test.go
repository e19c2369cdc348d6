package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

var (
	simulatorLine = regexp.MustCompile(`Admin API simulator\s+(http://\S+)`)
	probesLine    = regexp.MustCompile(`probes, metrics\s+(http://\S+)/healthz`)
)

// startDev runs `instancemgr dev` with args until stop is called, and
// returns the simulator's and the probes' URLs from its banner.
func startDev(t *testing.T, args []string) (simURL, probesURL string, stop func()) {
	t.Helper()
	simURL, probesURL, _, stop = startDevBanner(t, args)
	return simURL, probesURL, stop
}

// startDevBanner is startDev that also returns the whole banner.
func startDevBanner(t *testing.T, args []string) (simURL, probesURL, banner string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- runDev(ctx, args, out, errOut) }()
	testenv.Eventually(t, time.Minute, "dev's banner", func() bool {
		select {
		case err := <-done:
			t.Fatalf("dev stopped: %v\n%s", err, errOut.String())
		default:
		}
		return simulatorLine.MatchString(out.String())
	})
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev: %v\n%s", err, errOut.String())
		}
	}
	t.Cleanup(stop)
	banner = out.String()
	p := probesLine.FindStringSubmatch(banner)
	if p == nil {
		t.Fatalf("the banner names no probes:\n%s", banner)
	}
	return simulatorLine.FindStringSubmatch(banner)[1], p[1], banner, stop
}

// devWorld is a test's own PostgreSQL names (dropped when it ends) and
// the dev arguments that use them: any free ports, a 200 ms poll, one
// replica, logging at level.
func devWorld(t *testing.T, level string) (pg *pgxpool.Pool, prefix string, args []string) {
	t.Helper()
	pg = testenv.Postgres(t)
	prefix = testenv.Prefix()
	testenv.DropDatabasesWithPrefix(t, pg, prefix)
	return pg, prefix, []string{
		"-postgres", testenv.PostgresURL(), "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-data-dir", t.TempDir(),
		"-template", prefix + "_template", "-admin-database", prefix + "_admin", "-name-pattern", prefix + "_{name}",
		"-poll-interval", "200ms", "-replicas", "1", "-log-level", level,
	}
}

// console registers a client the way the banner says, and returns an Admin
// API client for it.
func console(t *testing.T, simURL string) *adminapi.Client {
	t.Helper()
	resp, err := http.PostForm(simURL+"/connect/register", url.Values{"ClientId": {"console"}, "ClientSecret": {"s3cret-Value"}, "DisplayName": {"console"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("register the console client: status %d", resp.StatusCode)
	}
	c, err := adminapi.New(adminapi.Config{BaseURL: simURL, TokenURL: simURL + "/connect/token", ClientID: "console", ClientSecret: "s3cret-Value"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Running dev again on the same PostgreSQL and data directory goes on
// where the last run stopped: each run's new instance gets an id of its own
// and is registered to its own database, never to a previous run's row.
func TestDevRestartedKeepsEachInstanceOnItsOwnDatabase(t *testing.T) {
	t.Parallel()
	pg, prefix, args := devWorld(t, "warn")
	ctx := context.Background()
	want := map[int]string{} // instance id -> its database
	for run := 1; run <= 3; run++ {
		simURL, probesURL, stop := startDev(t, args)
		api := console(t, simURL)
		name := fmt.Sprintf("District %d - 2025", run)
		inst, err := api.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: name, InstanceType: "enterprise"})
		if err != nil {
			t.Fatalf("run %d: request %q: %v", run, name, err)
		}
		if _, taken := want[inst.ID]; taken {
			t.Fatalf("run %d: the simulator gave id %d again", run, inst.ID)
		}
		want[inst.ID] = prefix + "_" + strings.ReplaceAll(name, " ", "_")
		testenv.Eventually(t, time.Minute, fmt.Sprintf("run %d: %q Completed", run, name), func() bool {
			w, err := api.Instance(ctx, "", inst.ID)
			return err == nil && w.Status == adminapi.StatusCompleted
		})
		// A dev that has just done a job is alive and ready.
		for _, probe := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, probesURL+probe); code != http.StatusOK {
				t.Fatalf("run %d: %s answered %d: %s", run, probe, code, body)
			}
		}
		// What a container healthcheck runs.
		if err := runHealthcheck(ctx, []string{"-url", probesURL + "/readyz"}, io.Discard, io.Discard); err != nil {
			t.Fatalf("run %d: healthcheck: %v", run, err)
		}
		// No job measures copy strategies: nothing says a decision.
		if _, metrics := get(t, probesURL+"/metrics"); strings.Contains(metrics, "instancemgr_copy_strategy_chosen") {
			t.Fatalf("run %d: /metrics still reports a copy strategy decision", run)
		}
		// The run's one copy, timed apart from the protocol around it.
		if _, metrics := get(t, probesURL+"/metrics"); !regexp.MustCompile(`(?m)^instancemgr_copy_seconds_count\{server="[^"]+",strategy="default"\} 1$`).MatchString(metrics) {
			t.Fatalf("run %d: /metrics does not count the run's one copy:\n%s", run, grepLines(metrics, "instancemgr_copy_seconds"))
		}
		stop()

		// Each instance the Admin API knows points at the registration of
		// its own database, and there is one registration per instance.
		admin := testenv.Connect(t, prefix+"_admin")
		var rows int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM dbo.odsinstances`).Scan(&rows); err != nil || rows != run {
			t.Fatalf("run %d: %d registrations, %v; want %d", run, rows, err, run)
		}
		for id, db := range want {
			var cs string
			if err := admin.QueryRow(ctx, `SELECT i.connectionstring FROM instancemgr.instances l JOIN dbo.odsinstances i ON i.odsinstanceid = l.ods_instance_id WHERE l.instance_id = $1`, id).Scan(&cs); err != nil {
				t.Fatalf("run %d: instance %d: %v", run, id, err)
			}
			if c, err := connstr.ParsePostgres(cs); err != nil || c.Database != db {
				t.Fatalf("run %d: instance %d is registered on %q (%v), want %q", run, id, c.Database, err, db)
			}
			var exists bool
			if err := pg.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists); err != nil || !exists {
				t.Fatalf("run %d: database %q missing: %v", run, db, err)
			}
		}
	}
}

// dev -registration adminapi runs create, rename and delete end to end
// with the simulator writing EdFi_Admin as Admin API 2.2.2 does: one row per
// live instance at every step.
func TestDevWithAdminAPIRegistration(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	prefix := testenv.Prefix()
	testenv.DropDatabasesWithPrefix(t, pg, prefix)
	simURL, _, _ := startDev(t, []string{
		"-postgres", testenv.PostgresURL(), "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-data-dir", t.TempDir(), "-registration", "adminapi",
		"-template", prefix + "_template", "-admin-database", prefix + "_admin", "-name-pattern", prefix + "_{name}",
		"-poll-interval", "200ms", "-replicas", "1", "-log-level", "warn",
	})
	api := console(t, simURL)
	ctx := context.Background()
	admin := testenv.Connect(t, prefix+"_admin")
	rowsNamed := func(name string) (n, total int) {
		t.Helper()
		if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE name = $1), count(*) FROM dbo.odsinstances`, name).Scan(&n, &total); err != nil {
			t.Fatal(err)
		}
		return n, total
	}
	waitFor := func(id int, status string, calls func(adminapi.WorkerInstance) bool) {
		t.Helper()
		testenv.Eventually(t, time.Minute, fmt.Sprintf("instance %d %s", id, status), func() bool {
			w, err := api.Instance(ctx, "", id)
			return err == nil && w.Status == status && calls(w)
		})
	}
	req := adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "First Name", InstanceType: "enterprise"}
	inst, err := api.CreateOdsInstance(ctx, "", req)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(inst.ID, adminapi.StatusCompleted, func(w adminapi.WorkerInstance) bool { return w.ClientID != "" })
	if n, total := rowsNamed("First Name"); n != 1 || total != 1 {
		t.Fatalf("after the create: %d rows named, %d in all", n, total)
	}
	req.Name = "Second Name"
	if err := api.UpdateOdsInstance(ctx, "", inst.ID, req); err != nil {
		t.Fatal(err)
	}
	waitFor(inst.ID, adminapi.StatusCompleted, func(w adminapi.WorkerInstance) bool { return w.OdsInstanceID != nil && *w.OdsInstanceID != 0 })
	if n, total := rowsNamed("Second Name"); n != 1 || total != 1 {
		t.Fatalf("after the rename: %d rows named, %d in all", n, total)
	}
	if err := api.DeleteOdsInstance(ctx, "", inst.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(inst.ID, adminapi.StatusDeleted, func(adminapi.WorkerInstance) bool { return true })
	if _, total := rowsNamed(""); total != 0 {
		t.Fatalf("after the delete: %d rows", total)
	}
	var dbs int
	if err := pg.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE starts_with(datname, $1) AND datname NOT IN ($2, $3)`, prefix, prefix+"_template", prefix+"_admin").Scan(&dbs); err != nil || dbs != 0 {
		t.Fatalf("%d instance databases left, %v", dbs, err)
	}
}

// get returns a GET's status and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// send sends req and returns the answer's status and body.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// grepLines is the lines of s that hold sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A data directory and its EdFi_Admin belong together: the simulator in one
// numbers instances on from its state, and the ledger in the other holds
// what those numbers made. A run with another data directory on the same
// EdFi_Admin (it would number its first instance where the ledger already
// has one: a conflict, and a request pending for ever) stops before
// anything runs, saying which directory the database belongs to; the first
// directory goes on as before.
func TestDevDataDirectoryBelongsToItsEdFiAdmin(t *testing.T) {
	t.Parallel()
	_, prefix, args := devWorld(t, "warn")
	first := ""
	for i, a := range args {
		if a == "-data-dir" {
			first = args[i+1]
		}
	}
	_, _, stop := startDev(t, args)
	stop()

	other := slices.Clone(args)
	second := t.TempDir()
	other[slices.Index(other, "-data-dir")+1] = second
	var out, errOut testenv.SyncBuffer
	// Bounded: a dev that starts anyway runs until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := runDev(ctx, other, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), prefix+"_admin belongs to the data directory "+first) || !strings.Contains(err.Error(), "-data-dir "+first) {
		t.Fatalf("dev with another data directory on the same EdFi_Admin: %v", err)
	}
	if strings.Contains(out.String(), "instancemgr dev is running") {
		t.Fatal("dev started anyway")
	}
	_, _, stop = startDev(t, args)
	stop()
}

// dev -reset starts clean: the instance databases its EdFi_Admin records
// and that EdFi_Admin are dropped, the data directory is emptied, and the
// next instance is numbered 1 again; a database dev did not make (another
// data directory's EdFi_Admin) is never touched.
func TestDevResetStartsClean(t *testing.T) {
	t.Parallel()
	pg, prefix, args := devWorld(t, "warn")
	simURL, _, stop := startDev(t, args)
	ctx := context.Background()
	req := adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Kept", InstanceType: "enterprise"}
	inst, err := console(t, simURL).CreateOdsInstance(ctx, "", req)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the instance made", func() bool {
		var ok bool
		_ = pg.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, prefix+"_Kept").Scan(&ok)
		return ok
	})
	stop()

	// Another data directory's reset leaves this EdFi_Admin alone.
	other := slices.Clone(args)
	other[slices.Index(other, "-data-dir")+1] = t.TempDir()
	if err := runDev(ctx, append(other, "-reset"), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "does not belong to the data directory") {
		t.Fatalf("a reset with another data directory: %v", err)
	}

	simURL, _, stop = startDev(t, append(slices.Clone(args), "-reset"))
	defer stop()
	var exists bool
	if err := pg.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, prefix+"_Kept").Scan(&exists); err != nil || exists {
		t.Fatalf("the instance database is still there after -reset (%v)", err)
	}
	again, err := console(t, simURL).CreateOdsInstance(ctx, "", req)
	if err != nil || again.ID != inst.ID {
		t.Fatalf("after -reset the first instance is %d (%v), want %d again", again.ID, err, inst.ID)
	}
}
