package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

func codes(dls []jobs.DeadLetter) map[string]int {
	m := map[string]int{}
	for _, d := range dls {
		m[d.Code]++
	}
	return m
}

// Broken messages and hostile names end as dead letters with their reason,
// are never redelivered, and the replica goes on serving good jobs.
func TestMalformedAndHostileInputEndInDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.startReplica(app.ConsumerDeps{})
	_, js := testenv.JetStream(t, e.natsURL)
	ctx := context.Background()
	for _, body := range []string{
		`not json at all`,
		`{"version":7,"jobId":"create.default.1","operation":"create","tenant":"default","instanceId":1,"name":"x"}`,
		`{"version":1,"jobId":"explode.default.1","operation":"explode","tenant":"default","instanceId":1,"name":"x"}`,
		`{"version":1,"operation":"create"}`,
	} {
		if _, err := js.Publish(ctx, "instances.create.default.900", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	hostile := []string{`x"; DROP DATABASE postgres; --`, "a;b", "Dіstrict", "tab\there", strings.Repeat("L", 58)}
	for _, name := range hostile {
		e.create("", name)
	}
	e.startBridge()
	good := e.create("", "Good")
	e.waitStatus(good, adminapi.StatusCompleted)

	dls := e.waitDeadLetters(4 + len(hostile))
	if c := codes(dls); c["malformed"] != 4 || c["invalid_name"] != len(hostile) || len(dls) != 4+len(hostile) {
		t.Fatalf("dead letters by code %v, want 4 malformed and %d invalid names", c, len(hostile))
	}
	for _, d := range dls {
		if d.Reason == "" || d.Attempts != 1 || d.Subject == "" || (d.Message == nil && d.Raw == nil) {
			t.Errorf("dead letter lacks its reason, attempt count, subject or original: %+v", d)
		}
	}
	if !e.databaseExists("postgres") {
		t.Fatal("postgres is gone")
	}
	if dbs := e.databases(); len(dbs) != 1 || dbs[0] != e.prefix+"_Good" {
		t.Fatalf("databases %v, want only the good one", dbs)
	}
	// Terminated, not waiting to come back.
	e.waitSettled()
	if info := e.consumerInfo(); info.NumRedelivered != 0 {
		t.Fatalf("%d messages were redelivered", info.NumRedelivered)
	}
	// A create has no failed status in Admin API 2.2.2: the request stays
	// Pending, and the bridge does not publish it again.
	for _, r := range e.sim.Instances() {
		if r.Name != "Good" && r.Status != adminapi.StatusPending {
			t.Errorf("%q: status %s", r.Name, r.Status)
		}
	}
	if n := e.streamMessages(); n != uint64(4+len(hostile)+1) {
		t.Errorf("stream holds %d messages: a refused create was published again", n)
	}
}

// A rename to a name the rule refuses ends with renameFailed and a dead
// letter; the database keeps its name and the next rename is a new job.
func TestHostileRenameFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Fine")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.rename("", id, `Fine"; DROP DATABASE postgres; --`)
	e.waitStatus(id, adminapi.StatusRenameFailed)
	if dls := e.waitDeadLetters(1); dls[0].Code != "invalid_name" {
		t.Fatalf("dead letter %+v", dls[0])
	}
	e.checkRegisteredStatus("default", "Fine", e.prefix+"_Fine")

	e.rename("", id, "Better")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.checkRegistered("default", id, "Better", e.prefix+"_Better")
}

func (e *env) checkRegisteredStatus(tenant, name, database string) {
	e.t.Helper()
	var got string
	if err := e.admins[tenant].QueryRow(context.Background(), `SELECT name FROM dbo.odsinstances`).Scan(&got); err != nil || got != name {
		e.t.Fatalf("registered %q, %v; want %q", got, err, name)
	}
	if !e.databaseExists(database) {
		e.t.Fatalf("database %q is gone", database)
	}
}

// Guard rails: a ledger that points a delete at the template, or a rename
// at a database the naming rule could not have made, is refused: the job
// ends failed, with a dead letter, and the database is untouched.
func TestGuardRailsRefuseForeignDatabases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{allowDelete: true})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	ctx := context.Background()
	foreign := e.prefix + "x_foreign" // outside the rule "<prefix>_{name}"
	testenv.CreateDatabase(t, e.pg, foreign)

	a, b := e.create("", "A"), e.create("", "B")
	e.waitStatus(a, adminapi.StatusCompleted)
	e.waitStatus(b, adminapi.StatusCompleted)
	if _, err := e.admin.Exec(ctx, `UPDATE instancemgr.instances SET database_name = $1 WHERE instance_id = $2`, e.cfg.Provisioning.Template, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Exec(ctx, `UPDATE instancemgr.instances SET database_name = $1 WHERE instance_id = $2`, foreign, b); err != nil {
		t.Fatal(err)
	}
	e.remove("", a)
	e.rename("", b, "B2")
	e.waitStatus(a, adminapi.StatusDeleteFailed)
	e.waitStatus(b, adminapi.StatusRenameFailed)
	if c := codes(e.waitDeadLetters(2)); c["protected"] != 2 {
		t.Fatalf("dead letters by code %v, want 2 protected", c)
	}
	for _, db := range []string{e.cfg.Provisioning.Template, foreign} {
		if !e.databaseExists(db) {
			t.Errorf("%q was dropped or renamed", db)
		}
	}
	if e.databaseExists(e.prefix + "_B2") {
		t.Error("the foreign database was renamed")
	}
}

// A job for a tenant the configuration does not map is never routed to
// another tenant's server: it ends as a dead letter.
func TestUnmappedTenantIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{tenants: []string{"t1"}, unmapped: []string{"t2"}, namePattern: "PREFIX_{tenant}_{name}"})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	stranger := e.create("t2", "Stranger")
	local := e.create("t1", "Local")
	e.waitStatus(local, adminapi.StatusCompleted)
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "unknown_tenant" || !strings.Contains(dls[0].Reason, `"t2"`) {
		t.Fatalf("dead letter %+v", dls[0])
	}
	if r, _ := e.sim.Instance(stranger); r.Status != adminapi.StatusPending {
		t.Fatalf("t2's instance is %s", r.Status)
	}
	if dbs := e.databases(); len(dbs) != 1 || dbs[0] != e.prefix+"_t1_Local" {
		t.Fatalf("databases %v", dbs)
	}
	if n := e.countIn("t1", `SELECT count(*) FROM dbo.odsinstances`); n != 1 {
		t.Fatalf("t1 has %d registrations", n)
	}
}

// A job that fails on every delivery stops at MaxDeliver and lands in the
// dead letters as exhausted, with its attempt count.
func TestRetriesExhaustedEndInDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxDeliver: 3, maxAttempts: 1, retryDelay: 10e6})
	e.sim.InjectFault(simulator.Fault{Method: "POST", Path: "/adminconsole/instances/*/completed", Status: 503})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Doomed")
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "exhausted" || dls[0].Attempts != 3 {
		t.Fatalf("dead letter %+v", dls[0])
	}
	if r, _ := e.sim.Instance(id); r.Calls["completed"] != 3 || r.Status != adminapi.StatusPending {
		t.Fatalf("completed called %d times, status %s", r.Calls["completed"], r.Status)
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != 0 {
		t.Fatalf("%d rows left by rolled-back registrations", n)
	}
	e.waitSettled()
}

// Both the old and the new database exist: a conflict, reported as
// renameFailed, and nothing is dropped to make room.
func TestRenameConflictDropsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Old")
	e.waitStatus(id, adminapi.StatusCompleted)
	testenv.CreateDatabase(t, e.pg, e.prefix+"_New") // someone's, in the way
	e.rename("", id, "New")
	e.waitStatus(id, adminapi.StatusRenameFailed)
	if dls := e.waitDeadLetters(1); dls[0].Code != "conflict" {
		t.Fatalf("dead letter %+v", dls[0])
	}
	for _, db := range []string{e.prefix + "_Old", e.prefix + "_New"} {
		if !e.databaseExists(db) {
			t.Errorf("%q is gone", db)
		}
	}
	e.checkRegisteredStatus("default", "Old", e.prefix+"_Old")
}

// A rename whose database was renamed but whose registration never
// completes (the Admin API refuses every renamed call until the deliveries
// run out) ends Rename_Failed with a dead letter, and the ledger, the
// registration's connection strings and the reservations name the database
// as it now is, never the old name that is gone; the next rename starts
// from there.
func TestRenameFailedAfterItsDDLFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxDeliver: 2, maxAttempts: 1, retryDelay: 10e6})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	ctx := context.Background()
	id := e.create("", "Before")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.sim.InjectFault(simulator.Fault{Method: "POST", Path: "/adminconsole/instances/*/renamed", Status: 503})
	e.rename("", id, "After")
	e.waitStatus(id, adminapi.StatusRenameFailed)
	if dls := e.waitDeadLetters(1); dls[0].Code != "exhausted" {
		t.Fatalf("dead letter %+v", dls[0])
	}
	e.waitSettled()
	before, after := e.prefix+"_Before", e.prefix+"_After"
	if e.databaseExists(before) || !e.databaseExists(after) {
		t.Fatalf("databases %v, want %q only", e.databases(), after)
	}
	var ledgerDB, ledgerName string
	if err := e.admin.QueryRow(ctx, `SELECT database_name, name FROM instancemgr.instances WHERE instance_id = $1`, id).Scan(&ledgerDB, &ledgerName); err != nil {
		t.Fatal(err)
	}
	if ledgerDB != after || ledgerName != "After" {
		t.Fatalf("ledger %q (%q), want %q", ledgerDB, ledgerName, after)
	}
	var rowName, cs string
	if err := e.admin.QueryRow(ctx, `SELECT name, connectionstring FROM dbo.odsinstances`).Scan(&rowName, &cs); err != nil {
		t.Fatal(err)
	}
	if conn, err := connstr.ParsePostgres(cs); err != nil || conn.Database != after || rowName != "Before" {
		t.Fatalf("registration %q -> %q (%v), want the row as it was, pointing at %q", rowName, conn.Database, err, after)
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstancederivatives WHERE connectionstring = $1`, cs); n != 1 {
		t.Fatalf("%d derivatives point at the database as it is, want 1", n)
	}
	if h := e.holder(before); h != "" {
		t.Errorf("the old name is still held by %s", h)
	}
	if h := e.holder(after); h != fmt.Sprintf("%s/%d", e.firstTenant, id) {
		t.Errorf("the database's name is held by %q", h)
	}

	e.sim.ClearFaults()
	e.rename("", id, "Third")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.waitSettled()
	e.checkRegistered(e.firstTenant, id, "Third", e.prefix+"_Third")
	if e.databaseExists(after) {
		t.Fatalf("%q is still there after the next rename", after)
	}
}

// The replica holding a job's last delivery never settles it (here: it
// hangs without renewing its lock): JetStream's max-deliveries advisory
// still turns the job into a dead letter, so it is not silently stuck.
func TestExhaustedWithoutSettleEndsInDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxDeliver: 2, ackWait: time.Second})
	e.cfg.Consumer.ShutdownGrace = config.Duration(100 * time.Millisecond)
	// Two workers hang on the two deliveries; the third keeps pulling, as
	// the other replicas would when the one holding the job has died
	// (JetStream checks delivery counts while serving pulls).
	e.cfg.Consumer.Concurrency = 3
	hang := func(ctx context.Context, d consumer.Delivery) error { <-ctx.Done(); return ctx.Err() }
	e.startReplica(app.ConsumerDeps{TestSeams: consumer.TestSeams{DisableHeartbeat: true, AfterDatabase: hang}})
	e.startBridge()
	id := e.create("", "Stuck")
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "exhausted" || dls[0].Attempts != 2 || dls[0].JobID == "" {
		t.Fatalf("dead letter %+v", dls[0])
	}
	if r, _ := e.sim.Instance(id); r.Status != adminapi.StatusPending {
		t.Fatalf("status %s", r.Status)
	}
}
