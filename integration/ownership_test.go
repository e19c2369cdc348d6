package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// holder returns who holds a database name on the test server, "" for
// nobody.
func (e *env) holder(database string) string {
	e.t.Helper()
	var tenant string
	var id int
	err := e.pg.QueryRow(context.Background(), `SELECT tenant, instance_id FROM instancemgr.reservations WHERE database_name = $1`, database).Scan(&tenant, &id)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s/%d", tenant, id)
}

// publish puts a job on the stream by hand, as a second bridge, a replayed
// dead letter or `nats pub` would.
func (e *env) publish(subject string, j jobs.Job) {
	e.t.Helper()
	data, err := json.Marshal(j)
	if err != nil {
		e.t.Fatal(err)
	}
	_, js := testenv.JetStream(e.t, e.natsURL)
	if _, err := js.Publish(context.Background(), subject, data); err != nil {
		e.t.Fatal(err)
	}
}

// A database that exists before the request, made by someone else, is
// never adopted: the create ends as a conflict, nothing is registered, and
// the database is left as it was, unreserved.
func TestCreateNeverAdoptsAForeignDatabase(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{allowDelete: true}, neverAdoptsAForeignDatabase)
}

func neverAdoptsAForeignDatabase(t *testing.T, e *env) {
	foreign := e.prefix + "_Prod2024"
	testenv.CreateDatabase(t, e.pg, foreign)
	if _, err := testenv.Connect(t, foreign).Exec(context.Background(), `CREATE TABLE precious (v int); INSERT INTO precious VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Prod2024")
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "conflict" || !strings.Contains(dls[0].Reason, foreign) || !strings.Contains(dls[0].Reason, "did not make it") {
		t.Fatalf("dead letter %+v", dls[0])
	}
	if n, _ := e.calls(id, "completed"); e.status("", id) != e.endedCreate() || n != 0 {
		t.Fatalf("the Admin API heard of the foreign database: %s, completed %d times", e.status("", id), n)
	}
	if n := e.count(`SELECT (SELECT count(*) FROM dbo.odsinstances) + (SELECT count(*) FROM instancemgr.instances)`); n != 0 {
		t.Fatalf("%d registration or ledger rows for a foreign database", n)
	}
	if h := e.holder(foreign); h != "" {
		t.Fatalf("the foreign database's name stays reserved for %s", h)
	}
	var v int
	if err := testenv.Connect(t, foreign).QueryRow(context.Background(), `SELECT v FROM precious`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("the foreign database changed: %d, %v", v, err)
	}
}

// Names that map to one database are refused for the second request with
// a reason that names the first, never shared: a space and an underscore,
// two tenants whose names run into each other, and the same again with
// names that differ only in letter case.
func TestCollidingNamesAreRefused(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{tenants: []string{"t1", "t1_x"}, namePattern: "PREFIX_{tenant}_{name}"}, collidingNamesAreRefused)
}

func collidingNamesAreRefused(t *testing.T, e *env) {
	e.startReplica(app.ConsumerDeps{})
	b := e.newBridge()
	pairs := [][2][2]string{ // {tenant, name} twice
		{{"t1", "Foo Bar"}, {"t1", "Foo_Bar"}},
		{{"t1", "x_y"}, {"t1_x", "y"}},
		{{"t1", "X_z"}, {"t1_x", "z"}}, // and differing in letter case only
	}
	refusedAtTheDoor := 0
	for i, p := range pairs {
		first := e.create(p[0][0], p[0][1])
		testenv.Eventually(t, time.Minute, fmt.Sprintf("%v Completed", p[0]), func() bool {
			_, _ = b.Poll(context.Background())
			return e.status(p[0][0], first) == adminapi.StatusCompleted
		})
		if e.manage && p[0][0] == p[1][0] {
			// The newest line's POST checks the database name under a lock
			// in the tenant's EdFi_Admin: the collision is refused at the
			// door, as Ed-Fi's duplicate, and nothing reaches a consumer.
			resp := e.manageCall(e.door(), p[1][0], http.MethodPost, "/v2/odsInstances/manage", `{"name":"`+p[1][1]+`","databaseTemplate":"Minimal"}`)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%v after %v: POST answered %d, want Ed-Fi's duplicate 400", p[1], p[0], resp.StatusCode)
			}
			refusedAtTheDoor++
			continue
		}
		second := e.create(p[1][0], p[1][1])
		if _, err := b.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		dls := e.waitDeadLetters(i + 1 - refusedAtTheDoor)
		last := dls[len(dls)-1]
		owner := fmt.Sprintf("tenant %q instance %d", p[0][0], first)
		if last.Code != "conflict" || !strings.Contains(last.Reason, owner) || !strings.HasSuffix(last.Subject, "."+p[1][0]+"."+jobs.InstanceToken(e.cfg.Line(), second)) {
			t.Fatalf("%v after %v: dead letter %+v; want a conflict naming %s", p[1], p[0], last, owner)
		}
		if st := e.status(p[1][0], second); st != e.endedCreate() {
			t.Fatalf("%v: status %s", p[1], st)
		}
	}
	e.waitSettled()
	if dbs := e.databases(); len(dbs) != len(pairs) {
		t.Fatalf("databases %v, want one per pair", dbs)
	}
	if n := e.countIn("t1", `SELECT count(*) FROM dbo.odsinstances`) + e.countIn("t1_x", `SELECT count(*) FROM dbo.odsinstances`); n != len(pairs) {
		t.Fatalf("%d registrations, want one per pair", n)
	}
}

// A ledger entry for the same instance that names another database (a dev
// run whose simulator started its ids again, a reinstalled Admin API) is a
// conflict naming both, not "already registered": no database is made.
func TestLedgerOfAnotherDatabaseIsAConflict(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{}, ledgerOfAnotherDatabaseIsAConflict)
}

func ledgerOfAnotherDatabaseIsAConflict(t *testing.T, e *env) {
	reg, err := postgres.NewRegistry(context.Background(), testenv.ConnString(t, e.prefix+"_admin"), nil) // makes the ledger
	if err != nil {
		t.Fatal(err)
	}
	reg.Close()
	e.startReplica(app.ConsumerDeps{})
	old := e.prefix + "_Old_District"
	// The entry is the flavor's own line's: another line's instance 1 is
	// another instance (TestUpgradeFromAdminConsoleToManage).
	if _, err := e.admin.Exec(context.Background(), `INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name, line) VALUES ('default', 1, 999, $1, 'Old District', $2)`, old, e.cfg.Line().String()); err != nil {
		t.Fatal(err)
	}
	e.startBridge()
	id := e.create("", "New District")
	if id != 1 {
		t.Fatalf("id %d, want 1", id)
	}
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "conflict" || !strings.Contains(dls[0].Reason, old) || !strings.Contains(dls[0].Reason, e.prefix+"_New_District") {
		t.Fatalf("dead letter %+v; want a conflict naming both databases", dls[0])
	}
	if dbs := e.databases(); len(dbs) != 0 {
		t.Fatalf("databases %v made for a conflicting request", dbs)
	}
	if st := e.status("", id); st != e.endedCreate() {
		t.Fatalf("status %s", st)
	}
}

// A replica paused after its rename DDL, whose lock expired, wakes after
// the same rename was finished by another replica and a newer rename
// settled too: it must leave the ledger and registration at the newest.
func TestStaleRenameNeverOverwritesANewerOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ackWait: time.Second})
	e.startBridge()
	first := e.startReplica(app.ConsumerDeps{})
	id := e.create("", "One")
	e.waitStatus(id, adminapi.StatusCompleted)
	first.stop()

	paused, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	e.startReplica(app.ConsumerDeps{TestSeams: consumer.TestSeams{DisableHeartbeat: true,
		AfterDatabase: func(ctx context.Context, d consumer.Delivery) error {
			if d.Job.Operation != jobs.OpRename || !once.CompareAndSwap(false, true) {
				return nil
			}
			close(paused)
			<-release // the lock expires meanwhile
			return nil
		},
	}})
	e.rename("", id, "Two")
	<-paused
	e.startReplica(app.ConsumerDeps{})
	e.waitRenamed(id, 1)
	e.rename("", id, "Three")
	e.waitRenamed(id, 2)
	close(release)
	testenv.Eventually(t, time.Minute, "the stale delivery to settle", func() bool {
		for {
			select {
			case o := <-e.outcomes:
				if o.Delivery.Job.Operation == jobs.OpRename && o.Delivery.Job.Generation == 0 && o.Delivery.Attempt == 1 {
					return true
				}
			default:
				return false
			}
		}
	})
	e.waitSettled()
	e.checkRegistered("default", id, "Three", e.prefix+"_Three")
	var gen int
	var db string
	if err := e.admin.QueryRow(context.Background(), `SELECT generation, database_name FROM instancemgr.instances`).Scan(&gen, &db); err != nil || gen != 2 || db != e.prefix+"_Three" {
		t.Fatalf("ledger at generation %d on %q (%v), want 2 on %q", gen, db, err, e.prefix+"_Three")
	}
	for _, gone := range []string{"One", "Two"} {
		if e.databaseExists(e.prefix+"_"+gone) || e.holder(e.prefix+"_"+gone) != "" {
			t.Errorf("%q is still there or still reserved", gone)
		}
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// A delete whose commit failed after the Admin API heard "deleted" is
// delivered again with the status already Deleted: it removes what is left
// (rows, ledger, the database, the reservation) without telling the Admin
// API again.
func TestDeleteFinishesAfterItsCommitFailed(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{allowDelete: true}, deleteFinishesAfterItsCommitFailed)
}

func deleteFinishesAfterItsCommitFailed(t *testing.T, e *env) {
	e.startBridge()
	first := e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Leftover")
	e.waitStatus(id, adminapi.StatusCompleted)
	first.stop()
	e.remove("", id)
	testenv.Eventually(t, time.Minute, "the delete job to be published", func() bool { return e.streamMessages() == 2 })
	// What a delivery leaves when its transaction fails after the Admin
	// API heard it: status Deleted, everything else still in place.
	e.setDeleted(id)
	e.startReplica(app.ConsumerDeps{})
	e.waitSettled()
	if n := e.count(`SELECT (SELECT count(*) FROM dbo.odsinstances) + (SELECT count(*) FROM dbo.odsinstancecontexts) + (SELECT count(*) FROM instancemgr.instances)`); n != 0 {
		t.Fatalf("%d rows left", n)
	}
	if len(e.databases()) != 0 || e.holder(e.prefix+"_Leftover") != "" {
		t.Fatalf("databases %v, reservation %q left", e.databases(), e.holder(e.prefix+"_Leftover"))
	}
	deleted, _ := e.calls(id, "deleted")
	failed, _ := e.calls(id, "deleteFailed")
	if st := e.status("", id); st != adminapi.StatusDeleted || deleted != 0 || failed != 0 {
		t.Fatalf("status %s, deleted called %d and deleteFailed %d times", st, deleted, failed)
	}
}

// setDeleted marks request id of the first tenant deleted in the Admin
// API, as a settling call whose transaction then failed leaves it.
func (e *env) setDeleted(id int) {
	e.t.Helper()
	if e.manage {
		if _, err := e.admin.Exec(context.Background(), `UPDATE adminapi.odsinstancemanages SET status = 'Deleted' WHERE id = $1`, id); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if err := e.sim.SetStatus(id, adminapi.StatusDeleted); err != nil {
		e.t.Fatal(err)
	}
}

// A delete that failed, requested again, is a new job: published again and
// carried out. An old delivery of the failed one is stale and reports no
// failure over the new result.
func TestDeleteRequestedAgainIsANewJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{allowDelete: true})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Twice")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.sim.InjectFault(simulator.Fault{Method: "POST", Path: "/adminconsole/instances/*/deleted", Status: 400, Times: 1})
	e.remove("", id)
	e.waitStatus(id, adminapi.StatusDeleteFailed)
	first := e.waitDeadLetters(1)[0]

	// The operator sets the instance right and asks again.
	if err := e.sim.SetStatus(id, adminapi.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	e.remove("", id)
	e.waitStatus(id, adminapi.StatusDeleted)
	if n := e.streamMessages(); n != 3 {
		t.Fatalf("stream holds %d jobs, want the create and two deletes", n)
	}
	if e.count(`SELECT count(*) FROM dbo.odsinstances`) != 0 || len(e.databases()) != 0 {
		t.Fatal("the second delete left the instance behind")
	}

	// The failed job, replayed, finds a newer request settled.
	var failed jobs.Job
	if err := json.Unmarshal(first.Message, &failed); err != nil {
		t.Fatal(err)
	}
	e.publish(first.Subject, failed)
	e.waitSettled()
	if r, _ := e.sim.Instance(id); r.Status != adminapi.StatusDeleted || r.Calls["deleteFailed"] != 1 {
		t.Fatalf("after a stale delete: status %s, calls %v", r.Status, r.Calls)
	}
}

// With deletion off, a delete job that reaches a consumer anyway (here
// published by hand) drops nothing and ends as a dead letter saying why;
// the Admin API status stays Pending_Delete.
func TestConsumerRefusesDeleteWhenDisabled(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{}, consumerRefusesDeleteWhenDisabled)
}

func consumerRefusesDeleteWhenDisabled(t *testing.T, e *env) {
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Kept")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.remove("", id)
	j := jobs.NewDelete("default", id, "Kept", e.prefix+"_Kept", 0).OnLine(e.cfg.Line())
	e.publish(j.Subject(), j)
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "delete_disabled" || !strings.Contains(dls[0].Reason, "allowDelete") {
		t.Fatalf("dead letter %+v", dls[0])
	}
	if !e.databaseExists(e.prefix+"_Kept") || e.count(`SELECT count(*) FROM dbo.odsinstances`) != 1 {
		t.Fatal("a delete ran with deletion off")
	}
	if n, _ := e.calls(id, "deleteFailed"); e.status("", id) != adminapi.StatusPendingDelete || n != 0 {
		t.Fatalf("status %s, deleteFailed called %d times", e.status("", id), n)
	}
}

// A create delivered again after the instance was renamed (a replayed dead
// letter, a copy published by hand) never makes the old name again.
func TestReplayedCreateAfterRenameMakesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Before")
	e.waitStatus(id, adminapi.StatusCompleted)
	e.rename("", id, "After")
	e.waitRenamed(id, 1)
	e.waitSettled()
	j := jobs.NewCreate("default", id, "Before")
	e.publish(j.Subject(), j)
	e.waitSettled()
	if e.databaseExists(e.prefix + "_Before") {
		t.Fatal("the replayed create made the old name again")
	}
	e.checkRegistered("default", id, "After", e.prefix+"_After")
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// An instance in the ledger of a version without reservations stays the
// system's: a replica imports it as reserved and made, so it can be renamed.
func TestLedgerOfEarlierVersionCountsAsReserved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.startBridge()
	first := e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Legacy")
	e.waitStatus(id, adminapi.StatusCompleted)
	first.stop()
	if _, err := e.pg.Exec(context.Background(), `DELETE FROM instancemgr.reservations WHERE database_name = $1`, e.prefix+"_Legacy"); err != nil {
		t.Fatal(err)
	}
	e.startReplica(app.ConsumerDeps{})
	e.rename("", id, "Upgraded")
	e.waitRenamed(id, 1)
	e.waitSettled()
	e.checkRegistered("default", id, "Upgraded", e.prefix+"_Upgraded")
	if h := e.holder(e.prefix + "_Upgraded"); h != fmt.Sprintf("default/%d", id) {
		t.Fatalf("the new name is held by %q", h)
	}
}

// A statement the database refuses for its data (a context value longer
// than its column, in an EdFi_Admin whose column is narrower than the
// Admin API's validation allows) ends at once, with the SQLSTATE, not
// after every retry; the dead letter goes where the message was delivered.
func TestDataErrorsEndAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxDeliver: 5})
	if _, err := e.admin.Exec(context.Background(), `ALTER TABLE dbo.odsinstancecontexts ALTER COLUMN contextvalue TYPE varchar(3)`); err != nil {
		t.Fatal(err)
	}
	e.startReplica(app.ConsumerDeps{})
	e.startBridge()
	id := e.create("", "Overlong") // its context value is "2025"
	dls := e.waitDeadLetters(1)
	if dls[0].Code != "rejected" || dls[0].Attempts != 1 || !strings.Contains(dls[0].Reason, "SQLSTATE 22001") {
		t.Fatalf("dead letter %+v", dls[0])
	}
	_, js := testenv.JetStream(t, e.natsURL)
	s, err := js.Stream(context.Background(), jobs.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(context.Background(), "instances.dead.>")
	if err != nil || msg.Subject != "instances.dead.create.default."+fmt.Sprint(id) {
		t.Fatalf("dead letter on %v (%v), want the delivered subject's", msg, err)
	}
	if n := e.count(`SELECT count(*) FROM dbo.odsinstances`); n != 0 {
		t.Fatalf("%d rows from a refused registration", n)
	}
}

// countingHandler counts log records whose message starts with prefix.
type countingHandler struct {
	slog.Handler
	prefix string
	n      *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(a), h.prefix, h.n}
}

// Forged max-deliveries advisories (another stream or consumer in the
// body, fewer deliveries than MaxDeliver, a sequence never delivered) are
// ignored: no dead letter, no failure reported, and the job they name runs
// as usual.
func TestForgedAdvisoriesAreIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxDeliver: 5})
	var ignored atomic.Int64
	log := slog.New(countingHandler{e.log.Handler(), "ignored a max-deliveries advisory", &ignored})
	e.startReplica(app.ConsumerDeps{Log: log})
	e.startBridge()
	id := e.create("", "Real")
	e.waitStatus(id, adminapi.StatusCompleted)

	nc, err := nats.Connect(e.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	subject := jobs.AdvisorySubject(e.cfg.NATS.Stream, e.cfg.NATS.Consumer)
	forged := []map[string]any{
		{"stream": "OTHER", "consumer": e.cfg.NATS.Consumer, "stream_seq": 1, "deliveries": 5},
		{"stream": e.cfg.NATS.Stream, "consumer": e.cfg.NATS.Consumer, "stream_seq": 1, "deliveries": 2},
		{"stream": e.cfg.NATS.Stream, "consumer": e.cfg.NATS.Consumer, "stream_seq": 999, "deliveries": 5},
	}
	for _, f := range forged {
		data, _ := json.Marshal(f)
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, "the forged advisories to be ignored", func() bool { return ignored.Load() == int64(len(forged)) })
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters from forged advisories: %+v", dl)
	}
	if r, _ := e.sim.Instance(id); r.Status != adminapi.StatusCompleted {
		t.Fatalf("status %s", r.Status)
	}
}
