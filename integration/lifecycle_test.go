package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// request is what the Admin Console sends for an instance of tenant ("" for
// the first one).
func (e *env) request(tenant, name string) adminapi.InstanceRequest {
	if tenant == "" {
		tenant = e.firstTenant
	}
	return adminapi.InstanceRequest{TenantID: e.sim.TenantID(tenant), TenantName: tenant, Name: name, InstanceType: "enterprise",
		OdsInstanceContexts:    []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{{DerivativeType: "ReadReplica"}}}
}

// create asks for instance name of tenant ("" for the first) the way the
// flavor's Admin Console does, and returns the request's id.
func (e *env) create(tenant, name string) int {
	e.t.Helper()
	if e.manage {
		return e.manageRequestAt(e.door(), tenant, name, "Minimal")
	}
	inst, err := e.console.CreateOdsInstance(context.Background(), tenant, e.request(tenant, name))
	if err != nil {
		e.t.Fatalf("request %q in %s: %v", name, tenant, err)
	}
	return inst.ID
}

func (e *env) rename(tenant string, id int, name string) {
	e.t.Helper()
	if err := e.console.UpdateOdsInstance(context.Background(), tenant, id, e.request(tenant, name)); err != nil {
		e.t.Fatalf("rename %d to %q: %v", id, name, err)
	}
}

func (e *env) remove(tenant string, id int) {
	e.t.Helper()
	if e.manage {
		e.manageDeleteAt(e.door(), tenant, id)
		return
	}
	if err := e.console.DeleteOdsInstance(context.Background(), tenant, id); err != nil {
		e.t.Fatalf("delete %d: %v", id, err)
	}
}

// waitRenamed waits until instance id is Completed after its nth renamed
// call.
func (e *env) waitRenamed(id, n int) {
	e.t.Helper()
	testenv.Eventually(e.t, time.Minute, fmt.Sprintf("instance %d renamed %d times", id, n), func() bool {
		r, _ := e.sim.Instance(id)
		return r.Status == adminapi.StatusCompleted && r.Calls["renamed"] == n
	})
}

// checkRegistered asserts that exactly one instance is registered in the
// tenant's EdFi_Admin, under name, pointing at database, and that the Admin
// API holds the same: the connection string (adminconsole), or the
// request Created naming the row and the database (manage, whose
// connection strings are stored encrypted and whose requests carry no
// derivatives).
func (e *env) checkRegistered(tenant string, id int, name, database string) {
	e.t.Helper()
	var gotName, cs string
	var odsID int
	if err := e.admins[tenant].QueryRow(context.Background(), `SELECT odsinstanceid, name, connectionstring FROM dbo.odsinstances`).Scan(&odsID, &gotName, &cs); err != nil {
		e.t.Fatalf("%s: read dbo.odsinstances: %v", tenant, err)
	}
	if n := e.countIn(tenant, `SELECT count(*) FROM dbo.odsinstances`); n != 1 {
		e.t.Fatalf("%s: %d instances registered, want 1", tenant, n)
	}
	plain := cs
	if e.manage {
		var err error
		if plain, err = e.key.Decrypt(cs); err != nil {
			e.t.Fatalf("%s: stored connection string does not decrypt: %v", tenant, err)
		}
	}
	conn, err := connstr.ParsePostgres(plain)
	if err != nil {
		e.t.Fatalf("%s: stored connection string: %v", tenant, err)
	}
	if gotName != name || conn.Database != database {
		e.t.Fatalf("%s: registered %q -> %q, want %q -> %q", tenant, gotName, conn.Database, name, database)
	}
	if e.manage {
		var rowID int
		var status, db string
		if err := e.admins[tenant].QueryRow(context.Background(), `SELECT status, odsinstanceid, databasename FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status, &rowID, &db); err != nil ||
			status != "Created" || rowID != odsID || db != database {
			e.t.Fatalf("%s: request %d is %s naming row %d and database %q (%v); want Created, row %d, %q", tenant, id, status, rowID, db, err, odsID, database)
		}
	} else {
		if n := e.countIn(tenant, `SELECT count(*) FROM dbo.odsinstancederivatives d JOIN dbo.odsinstances i ON i.odsinstanceid = d.odsinstance_odsinstanceid WHERE d.connectionstring = i.connectionstring`); n != 1 {
			e.t.Fatalf("%s: the derivative does not follow the instance's connection string", tenant)
		}
		rec, _ := e.sim.Instance(id)
		if rec.ConnectionString != cs || rec.Status != adminapi.StatusCompleted {
			e.t.Fatalf("%s: Admin API has %s %q, EdFi_Admin %q", tenant, rec.Status, rec.ConnectionString, cs)
		}
	}
	if !e.databaseExists(database) {
		e.t.Fatalf("%s: database %q does not exist", tenant, database)
	}
}

// The whole lifecycle, for two tenants on two EdFi_Admin databases at once,
// with the same instance name in both: each tenant's registration and
// databases stay its own.
func TestLifecyclePerTenant(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{tenants: []string{"t1", "t2"}, namePattern: "PREFIX_{tenant}_{name}", allowDelete: true}, lifecycle)
}

// lifecycle creates, renames (where the flavor has renames) and deletes.
func lifecycle(t *testing.T, e *env) {
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	e.startReplica(app.ConsumerDeps{})
	db := func(tenant, name string) string { return e.prefix + "_" + tenant + "_" + name }

	ids := map[string]int{"t1": e.create("t1", "Alpha"), "t2": e.create("t2", "Alpha")}
	for tenant, id := range ids {
		testenv.Eventually(t, time.Minute, fmt.Sprintf("%s: request %d Completed", tenant, id), func() bool { return e.status(tenant, id) == adminapi.StatusCompleted })
		e.waitSettled()
		e.checkRegistered(tenant, id, "Alpha", db(tenant, "Alpha"))
	}

	steps := []map[string]string{{"t1": "Beta", "t2": "Gamma"}, {"t1": "Delta", "t2": "Alpha"}}
	if e.manage {
		steps = nil // the newest Admin API has no rename of a managed instance
	}
	previous := map[string]string{"t1": "Alpha", "t2": "Alpha"}
	for _, step := range steps {
		for tenant, name := range step {
			e.rename(tenant, ids[tenant], name)
		}
		for tenant, name := range step {
			e.waitStatus(ids[tenant], adminapi.StatusCompleted)
			testenv.Eventually(t, time.Minute, "the rename to finish", func() bool {
				r, _ := e.sim.Instance(ids[tenant])
				return r.Calls["renamed"] > 0 && !e.databaseExists(db(tenant, previous[tenant]))
			})
			e.waitSettled()
			e.checkRegistered(tenant, ids[tenant], name, db(tenant, name))
			previous[tenant] = name
		}
	}
	for tenant, id := range ids {
		renamed, counted := e.calls(id, "renamed")
		if completed, _ := e.calls(id, "completed"); counted && (renamed != 2 || completed != 1) {
			t.Errorf("%s: completed %d and renamed %d times, want once and twice", tenant, completed, renamed)
		}
	}

	for tenant, id := range ids {
		e.remove(tenant, id)
	}
	for tenant, id := range ids {
		testenv.Eventually(t, time.Minute, fmt.Sprintf("%s: request %d Deleted", tenant, id), func() bool { return e.status(tenant, id) == adminapi.StatusDeleted })
		e.waitSettled()
		if e.databaseExists(db(tenant, previous[tenant])) {
			t.Errorf("%s: database %q survived the delete", tenant, db(tenant, previous[tenant]))
		}
		for _, table := range []string{"dbo.odsinstances", "dbo.odsinstancecontexts", "dbo.odsinstancederivatives", "instancemgr.instances"} {
			if n := e.countIn(tenant, `SELECT count(*) FROM `+table); n != 0 {
				t.Errorf("%s: %d rows left in %s", tenant, n, table)
			}
		}
	}
	if dbs := e.databases(); len(dbs) != 0 {
		t.Errorf("databases left: %v", dbs)
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Errorf("dead letters in a clean lifecycle: %+v", dl)
	}
	e.waitSettled()
}

// A replica dies between the database change and the ack, for a rename and
// for a delete: the redelivery finishes the job, with one effect.
func TestRenameAndDeleteRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"rename", "delete"} {
		t.Run(op, func(t *testing.T) {
			o := envOptions{ackWait: time.Second, allowDelete: true}
			if op == "rename" { // the newest Admin API has no rename of a managed instance
				redeliveredAfterCrash(t, newEnv(t, o), op)
				return
			}
			flavors(t, o, func(t *testing.T, e *env) { redeliveredAfterCrash(t, e, op) })
		})
	}
}

func redeliveredAfterCrash(t *testing.T, e *env, op string) {
	e.startBridge()
	first := e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Original")
	e.waitStatus(id, adminapi.StatusCompleted)
	first.stop()

	victim, crashed := e.startCrashingReplica()
	if op == "rename" {
		e.rename("", id, "Renamed")
	} else {
		e.remove("", id)
	}
	e.waitCrash(crashed)
	if e.manage && op == "delete" && e.manageStatus(id) != "DeleteInProgress" {
		t.Fatalf("after the drop the request is %s, want DeleteInProgress (claimed)", e.manageStatus(id))
	}
	victim.stop()
	e.startReplica(app.ConsumerDeps{})

	if op == "rename" {
		e.waitStatus(id, adminapi.StatusCompleted)
		e.checkRegistered("default", id, "Renamed", e.prefix+"_Renamed")
		if e.databaseExists(e.prefix + "_Original") {
			t.Error("the old database is still there")
		}
		if n, _ := e.calls(id, "renamed"); n != 1 {
			t.Errorf("renamed called %d times, want 1", n)
		}
	} else {
		e.waitStatus(id, adminapi.StatusDeleted)
		n, counted := e.calls(id, "deleted")
		if (counted && n != 1) || e.count(`SELECT count(*) FROM dbo.odsinstances`) != 0 || len(e.databases()) != 0 {
			t.Errorf("after the redelivered delete: deleted calls %d, rows %d, databases %v",
				n, e.count(`SELECT count(*) FROM dbo.odsinstances`), e.databases())
		}
	}
	e.waitSettled()
}

// With deletion off, a delete request is not published, however often the
// bridge polls; the database and registration stay.
func TestDeleteDisabled(t *testing.T) {
	t.Parallel()
	flavors(t, envOptions{}, deleteDisabled)
}

func deleteDisabled(t *testing.T, e *env) {
	e.startReplica(app.ConsumerDeps{})
	b := e.newBridge()
	id := e.create("", "Keep")
	testenv.Eventually(t, time.Minute, "the create to complete", func() bool {
		_, _ = b.Poll(context.Background())
		return e.status("", id) == adminapi.StatusCompleted
	})
	e.waitSettled()
	e.remove("", id)
	for range 3 {
		st, err := b.Poll(context.Background())
		if err != nil || st.DeleteSkipped != 1 || st.Published != 0 {
			t.Fatalf("poll with deletion off: %+v, %v", st, err)
		}
	}
	if n := e.streamMessages(); n != 1 {
		t.Fatalf("stream holds %d jobs, want only the create", n)
	}
	if st := e.status("", id); st != adminapi.StatusPendingDelete {
		t.Fatalf("status %s", st)
	}
	if !e.databaseExists(e.prefix+"_Keep") || e.count(`SELECT count(*) FROM dbo.odsinstances`) != 1 {
		t.Fatal("the database or its registration went away with deletion off")
	}
}

// With an encryption key, EdFi_Admin holds the connection string in the
// ODS/API's encrypted format, which decrypts to what the Admin API was told;
// a rename re-encrypts the new one.
func TestEncryptedConnectionStrings(t *testing.T) {
	t.Parallel()
	keyB64 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	e := newEnv(t, envOptions{encryptKey: keyB64})
	key, err := odscrypt.ParseKey(keyB64)
	if err != nil {
		t.Fatal(err)
	}
	e.startBridge()
	e.startReplica(app.ConsumerDeps{})
	id := e.create("", "Secret")
	e.waitStatus(id, adminapi.StatusCompleted)
	check := func(database string) {
		t.Helper()
		var stored, derived string
		if err := e.admin.QueryRow(context.Background(), `SELECT i.connectionstring, d.connectionstring FROM dbo.odsinstances i JOIN dbo.odsinstancederivatives d ON d.odsinstance_odsinstanceid = i.odsinstanceid`).Scan(&stored, &derived); err != nil {
			t.Fatal(err)
		}
		if !odscrypt.IsEncrypted(stored) || !odscrypt.IsEncrypted(derived) {
			t.Fatalf("stored in plain text: %q", stored)
		}
		plain, err := key.Decrypt(stored)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := e.sim.Instance(id)
		conn, _ := connstr.ParsePostgres(plain)
		if plain != rec.ConnectionString || conn.Database != database {
			t.Fatalf("decrypted %q; Admin API has %q; want database %q", plain, rec.ConnectionString, database)
		}
	}
	check(e.prefix + "_Secret")
	e.rename("", id, "Hidden")
	e.waitRenamed(id, 1)
	e.waitSettled()
	check(e.prefix + "_Hidden")
}
