package integration

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/reconcile"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// Each kind of difference, made for real by the system and by hand, is
// reported once with its command; reconcile without -fix changes nothing
// anywhere; -fix releases only the reservation that cannot hold data, and
// a second run no longer reports it.
func TestReconcileReportsEachDifferenceAndFixesOnlyWhatIsSafe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{allowDelete: true})
	ctx := context.Background()
	db := func(n int) string { return fmt.Sprintf("%s_District_%d_-_2025", e.prefix, n) }

	// Instance 5's create will fail after its database is made: a dbo row
	// of its name and type that instancemgr did not register.
	if _, err := e.admin.Exec(ctx, `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ('District 5 - 2025', 'enterprise', 'x')`); err != nil {
		t.Fatal(err)
	}
	b := e.newBridge()
	r := e.startReplica(app.ConsumerDeps{})
	e.requestInstances(5)
	if _, err := b.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitCompleted([]int{1, 2, 3, 4}, time.Minute)
	dead := e.waitDeadLetters(1)
	if dead[0].Code != "conflict" || !e.databaseExists(db(5)) {
		t.Fatalf("instance 5 did not fail after its database: %+v, exists %v", dead[0], e.databaseExists(db(5)))
	}
	e.waitSettled()
	r.stop()

	// 6: pending, published, and no consumer to run it.
	inst6, err := e.console.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "District 6 - 2025", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	// 7: Completed by something other than instancemgr.
	inst7, err := e.console.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "District 7 - 2025", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetStatus(inst7.ID, adminapi.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	// 1: its dbo row removed by someone.
	var row1 int
	if err := e.admin.QueryRow(ctx, `SELECT ods_instance_id FROM instancemgr.instances WHERE instance_id = 1`).Scan(&row1); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`DELETE FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.odsinstancederivatives WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.odsinstances WHERE odsinstanceid = $1`,
	} {
		if _, err := e.admin.Exec(ctx, stmt, row1); err != nil {
			t.Fatal(err)
		}
	}
	// 2: its database dropped by someone.
	if _, err := e.pg.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db(2)}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	// 3: Deleted in the Admin API while the ledger keeps it.
	if err := e.sim.SetStatus(3, adminapi.StatusDeleted); err != nil {
		t.Fatal(err)
	}
	// A database of the pattern that instancemgr never reserved.
	foreign := e.prefix + "_Foreign_One"
	testenv.CreateDatabase(t, e.pg, foreign)
	// 4: two reservations with no database: one merely reserved (safe to
	// release), one that says the system made it.
	eng, err := postgres.NewEngine(ctx, e.world.Master.PgxConnString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	owner4 := provisioning.Owner{Tenant: "default", InstanceID: 4}
	leftover, goneMade := e.prefix+"_Leftover", e.prefix+"_Gone_Made"
	for _, n := range []string{leftover, goneMade} {
		if _, _, err := eng.Reserve(ctx, n, owner4); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.SetState(ctx, goneMade, owner4, provisioning.StateMade, ""); err != nil {
		t.Fatal(err)
	}

	deadSeq := func() uint64 {
		_, js := testenv.JetStream(t, e.natsURL)
		all, err := jobs.ListDead(ctx, js)
		if err != nil || len(all) != 1 {
			t.Fatalf("dead letters: %v, %v", all, err)
		}
		return all[0].Seq
	}()
	type key struct {
		id       int
		kind     reconcile.Kind
		database string
	}
	want := []key{
		{0, reconcile.ForeignDatabase, foreign},
		{1, reconcile.MissingRegistration, db(1)},
		{2, reconcile.MissingDatabase, db(2)},
		{3, reconcile.OrphanRegistration, db(3)},
		{4, reconcile.StaleReservation, goneMade},
		{4, reconcile.StaleReservation, leftover},
		{5, reconcile.DeadRequest, ""},
		{5, reconcile.OrphanDatabase, db(5)},
		{inst6.ID, reconcile.StuckRequest, ""},
		{inst7.ID, reconcile.UntrackedInstance, ""},
	}
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	run := func(fix bool) []reconcile.Difference {
		t.Helper()
		rep, err := app.Reconcile(ctx, e.cfg, app.ReconcileOptions{PendingAfter: time.Hour, Now: later, Fix: fix}, e.log)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.Tenants, []string{"default"}) {
			t.Fatalf("tenants %v", rep.Tenants)
		}
		return rep.Differences
	}
	keys := func(diffs []reconcile.Difference) []key {
		var out []key
		for _, d := range diffs {
			if d.Tenant != "default" || d.Detail == "" {
				t.Errorf("difference without tenant or detail: %+v", d)
			}
			out = append(out, key{d.InstanceID, d.Kind, d.Database})
		}
		slices.SortFunc(out, func(a, b key) int {
			return strings.Compare(fmt.Sprintf("%04d %s %s", a.id, a.kind, a.database), fmt.Sprintf("%04d %s %s", b.id, b.kind, b.database))
		})
		return out
	}
	find := func(diffs []reconcile.Difference, id int, kind reconcile.Kind, database string) reconcile.Difference {
		t.Helper()
		for _, d := range diffs {
			if d.InstanceID == id && d.Kind == kind && (database == "" || d.Database == database) {
				return d
			}
		}
		t.Fatalf("no %s for instance %d in %+v", kind, id, diffs)
		return reconcile.Difference{}
	}

	before := e.reconcileState(t)
	got := run(false)
	if !slices.Equal(keys(got), want) {
		t.Fatalf("differences:\n%v\nwant\n%v\nall: %+v", keys(got), want, got)
	}
	if after := e.reconcileState(t); after != before {
		t.Fatalf("reconcile without -fix changed something:\nbefore %s\nafter  %s", before, after)
	}
	replay := fmt.Sprintf("instancemgr jobs dead replay %d", deadSeq)
	for _, d := range []reconcile.Difference{find(got, 5, reconcile.DeadRequest, ""), find(got, 5, reconcile.OrphanDatabase, "")} {
		if !strings.Contains(d.Command, replay) || !strings.Contains(d.Command, fmt.Sprintf("instancemgr jobs dead show %d", deadSeq)) {
			t.Errorf("%s of instance 5 does not suggest the dead letter's commands: %q", d.Kind, d.Command)
		}
	}
	if d := find(got, 4, reconcile.StaleReservation, leftover); !d.Fixable || !strings.Contains(d.Command, "reconcile -fix") {
		t.Errorf("the unused reservation is not offered to -fix: %+v", d)
	}
	for _, d := range got {
		if d.Fixable && d.Database != leftover {
			t.Errorf("offered to -fix, but not safe: %+v", d)
		}
		if d.Command == "" {
			t.Errorf("no command for %+v", d)
		}
	}

	fixed := run(true)
	for _, d := range fixed {
		if d.Fixed != (d.Database == leftover) {
			t.Errorf("-fix: %+v", d)
		}
	}
	if _, ok, err := eng.Reservation(ctx, leftover); err != nil || ok {
		t.Fatalf("the unused reservation is still there: %v, %v", ok, err)
	}
	if _, ok, err := eng.Reservation(ctx, goneMade); err != nil || !ok {
		t.Fatalf("the reservation of a made database was released: %v, %v", ok, err)
	}
	for _, n := range []string{foreign, db(5), db(1), db(3)} {
		if !e.databaseExists(n) {
			t.Errorf("-fix removed database %s", n)
		}
	}
	again := run(false)
	if !slices.Equal(keys(again), slices.DeleteFunc(slices.Clone(want), func(k key) bool { return k.database == leftover })) {
		t.Fatalf("after -fix:\n%v", keys(again))
	}
}

// reconcileState is everything reconcile reads, in one string: what must
// not change without -fix.
func (e *env) reconcileState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	fmt.Fprintf(&b, "databases %v; ", e.world.Databases(t))
	q := func(pool interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}, sql string, args ...any) {
		rows, err := pool.Query(ctx, sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%v; ", vals)
	}
	q(e.pg, `SELECT database_name || ':' || tenant || ':' || instance_id || ':' || state || ':' || updated_at FROM instancemgr.reservations WHERE starts_with(database_name, $1) ORDER BY 1`, e.prefix)
	q(e.admin, `SELECT tenant || ':' || instance_id || ':' || coalesce(ods_instance_id, 0) || ':' || database_name || ':' || generation || ':' || updated_at FROM instancemgr.instances ORDER BY 1`)
	q(e.admin, `SELECT odsinstanceid || ':' || name FROM dbo.odsinstances ORDER BY 1`)
	for _, i := range e.sim.Instances() {
		fmt.Fprintf(&b, "instance %d %s %v; ", i.ID, i.Status, i.Calls)
	}
	fmt.Fprintf(&b, "jobs %d, dead %d", e.streamMessages(), len(e.deadLetters()))
	return b.String()
}

// Under the manage flavor reconcile reads the manage rows, the requests of
// that line: a created instance agrees everywhere, and its database
// dropped by hand is a missing database for that very request. (It read
// the /adminconsole/ list, which that line does not have, and found every
// instance's ledger entry an orphan.)
func TestReconcileReadsTheManageRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true, pattern: true})
	ctx := context.Background()
	e.startReplica(app.ConsumerDeps{})
	e.startBridge()
	id := e.manageRequest(e.prefix+" Kept", "Minimal")
	e.waitManage(id, "Created")
	e.waitSettled()
	rep, err := app.Reconcile(ctx, e.cfg, app.ReconcileOptions{PendingAfter: time.Hour}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 0 {
		t.Fatalf("a created manage instance: differences %+v, want none", rep.Differences)
	}
	database := e.ledgerEntries()["manage/"+strconv.Itoa(id)].database
	if _, err := e.pg.Exec(ctx, "DROP DATABASE "+pgx.Identifier{database}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	rep, err = app.Reconcile(ctx, e.cfg, app.ReconcileOptions{PendingAfter: time.Hour}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 1 || rep.Differences[0].Kind != reconcile.MissingDatabase || rep.Differences[0].InstanceID != id {
		t.Fatalf("after the database was dropped by hand: differences %+v, want one missing database for request %d", rep.Differences, id)
	}
}
