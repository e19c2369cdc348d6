package simulator_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// registeringEnv is a simulator that writes an EdFi_Admin of its own,
// loaded from the ODS/API fixture, as Admin API 2.2.2 does.
func registeringEnv(t *testing.T) (*env, func(sql string, args ...any) int) {
	t.Helper()
	db := testenv.FreshAdminDatabase(t)
	e := newEnv(t, simulator.Options{Registration: simulator.RegistrationAdminAPI, AdminDatabases: map[string]string{"*": testenv.ConnString(t, db)}})
	t.Cleanup(e.srv.Close)
	admin := testenv.Connect(t, db)
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := admin.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	return e, count
}

// rows counts an instance's registration: instance rows, contexts,
// derivatives, API clients and links.
func rows(count func(string, ...any) int) string {
	return fmt.Sprintf("%d/%d/%d/%d/%d",
		count(`SELECT count(*) FROM dbo.odsinstances`), count(`SELECT count(*) FROM dbo.odsinstancecontexts`),
		count(`SELECT count(*) FROM dbo.odsinstancederivatives`), count(`SELECT count(*) FROM dbo.apiclients`),
		count(`SELECT count(*) FROM dbo.apiclientodsinstances`))
}

// With registration adminapi, completed, the renaming PUT, renamed and
// deleted make the writes the contract says Admin API 2.2.2 makes.
func TestRegistrationAsAdminAPI23(t *testing.T) {
	t.Parallel()
	e, count := registeringEnv(t)
	id := e.create(t)
	if got := rows(count); got != "0/0/0/0/0" {
		t.Fatalf("rows before completed: %s", got)
	}

	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
	if got := rows(count); got != "1/1/1/1/1" {
		t.Fatalf("rows after completed (instances/contexts/derivatives/clients/links): %s", got)
	}
	w := worker(t, e, id)
	if w.Status != adminapi.StatusCompleted || w.OdsInstanceID == nil || count(`SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = $1 AND connectionstring = $2`, *w.OdsInstanceID, pgConn) != 1 {
		t.Fatalf("worker view %+v does not name the row it made", w)
	}
	if w.ClientID == "" || w.ClientSecret == "" || count(`SELECT count(*) FROM dbo.apiclients WHERE key = $1 AND secret = $2 AND NOT secretishashed`, w.ClientID, w.ClientSecret) != 1 {
		t.Fatalf("the instance's credentials %q are not its API client's", w.ClientID)
	}
	if !strings.HasSuffix(w.OAuthURL, "/api/oauth/token") || !strings.HasPrefix(w.ResourceURL, e.srv.URL+"/api/") {
		t.Fatalf("URLs %q %q do not come from the discovery URL", w.OAuthURL, w.ResourceURL)
	}
	if n := count(`SELECT count(*) FROM dbo.odsinstancederivatives WHERE connectionstring = ''`); n != 1 {
		t.Fatal("a derivative's connection string is not empty")
	}
	e.expect(t, 204, "POST", path(id, "completed"), conn(sqlConn)) // already Completed: nothing
	if got := rows(count); got != "1/1/1/1/1" || count(`SELECT count(*) FROM dbo.odsinstances WHERE connectionstring = $1`, pgConn) != 1 {
		t.Fatalf("a repeated completed changed the rows: %s", got)
	}

	rec, _ := e.srv.Instance(id)
	req := request(rec.Name + " renamed")
	e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), req)
	if got := rows(count); got != "0/0/0/0/0" {
		t.Fatalf("rows after the renaming PUT: %s", got)
	}
	if w := worker(t, e, id); w.Status != adminapi.StatusPendingRename || w.OdsInstanceID == nil || *w.OdsInstanceID != 0 {
		t.Fatalf("after the renaming PUT: %+v (odsInstanceId is reset to 0)", w)
	}
	e.expect(t, 204, "POST", path(id, "renamed"), conn(sqlConn))
	if got := rows(count); got != "1/1/1/1/1" || count(`SELECT count(*) FROM dbo.odsinstances WHERE name = $1 AND connectionstring = $2`, req.Name, sqlConn) != 1 {
		t.Fatalf("rows after renamed: %s", got)
	}
	if again := worker(t, e, id); again.ClientID == w.ClientID {
		t.Fatal("renamed kept the old API client")
	}
	e.expect(t, 204, "POST", path(id, "renamed"), conn(pgConn)) // already Completed
	if got := rows(count); got != "1/1/1/1/1" {
		t.Fatalf("a repeated renamed changed the rows: %s", got)
	}

	e.expect(t, 202, "DELETE", fmt.Sprintf("/adminconsole/odsInstances/%d", id), nil)
	e.expect(t, 204, "POST", path(id, "deleted"), nil)
	e.expect(t, 204, "POST", path(id, "deleted"), nil)
	if got := rows(count); got != "0/0/0/0/0" {
		t.Fatalf("rows after deleted: %s", got)
	}
	if count(`SELECT count(*) FROM dbo.applications`) != 1 || count(`SELECT count(*) FROM dbo.vendors`) != 1 {
		t.Fatal("the Admin Console's application and vendor are made once and kept")
	}
}

// When EdFi_Admin cannot be written, completed fails and changes nothing;
// renamed and deleted fail and move the status to Rename_Failed and
// Delete_Failed.
func TestRegistrationFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, simulator.Options{Registration: simulator.RegistrationAdminAPI, AdminDatabases: map[string]string{"*": testenv.ConnString(t, "instancemgr_no_such_database")}})
	t.Cleanup(e.srv.Close)
	id := e.create(t)
	e.expect(t, http.StatusInternalServerError, "POST", path(id, "completed"), conn(pgConn))
	e.wantStatus(t, id, adminapi.StatusPending)

	for _, c := range []struct{ status, call, want string }{
		{adminapi.StatusPendingRename, "renamed", adminapi.StatusRenameFailed},
		{adminapi.StatusPendingDelete, "deleted", adminapi.StatusDeleteFailed},
	} {
		if err := e.srv.SetStatus(id, c.status); err != nil {
			t.Fatal(err)
		}
		body := any(nil)
		if c.call == "renamed" {
			body = conn(pgConn)
		}
		e.expect(t, http.StatusInternalServerError, "POST", path(id, c.call), body)
		e.wantStatus(t, id, c.want)
	}
}

func TestRegistrationOptionsAreChecked(t *testing.T) {
	t.Parallel()
	for _, o := range []simulator.Options{
		{Registration: simulator.RegistrationAdminAPI},
		{Registration: "both"},
		{Engine: "Oracle"},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// The longest name follows the Admin API's engine: 58 on PostgreSQL, 100 on
// SQL Server.
func TestNameLengthByEngine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, simulator.Options{Engine: simulator.EngineSQLServer})
	e.expect(t, 201, "POST", "/adminconsole/odsInstances", request(strings.Repeat("n", 100)))
	e.expect(t, 400, "POST", "/adminconsole/odsInstances", request(strings.Repeat("m", 101)))
}

// worker reads instance id as the worker sees it.
func worker(t *testing.T, e *env, id int) adminapi.WorkerInstance {
	t.Helper()
	var w adminapi.WorkerInstance
	decode(t, e.expect(t, 200, "GET", fmt.Sprintf("/adminconsole/instances/%d", id), nil), &w)
	return w
}

// tenantName is stored and reported as the console sent it, and decides
// nothing: the instance belongs to the tenant of tenantId.
func TestTenantNameIsStoredAsGiven(t *testing.T) {
	t.Parallel()
	e := newEnv(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	req := request("Elsewhere")
	req.TenantID, req.TenantName = 2, "No Such Tenant"
	var inst adminapi.OdsInstance
	decode(t, e.expect(t, 201, "POST", "/adminconsole/odsInstances", req), &inst)
	if inst.TenantID != 2 {
		t.Fatalf("tenantId %d, want 2", inst.TenantID)
	}
	if w := worker(t, e, inst.ID); w.TenantID != 2 || w.TenantName != "No Such Tenant" {
		t.Fatalf("worker view %+v", w)
	}
}

// A Deleted instance is put back as Admin API 2.2.2 registers an existing
// database: completed, which checks for Completed alone, inserts its rows
// again from the contexts and derivatives the delete left on the request,
// with a new API client; a PUT while it is Deleted renames it first.
func TestCompletedRegistersADeletedInstanceAgain(t *testing.T) {
	t.Parallel()
	e, count := registeringEnv(t)
	registered := func(t *testing.T, id int, name, instanceType, cs string) adminapi.WorkerInstance {
		t.Helper()
		w := worker(t, e, id)
		if w.Status != adminapi.StatusCompleted || w.OdsInstanceID == nil || w.ClientID == "" {
			t.Fatalf("after completed: %+v", w)
		}
		ods := *w.OdsInstanceID
		for sql, args := range map[string][]any{
			`SELECT count(*) FROM dbo.odsinstances WHERE odsinstanceid = $1 AND name = $2 AND instancetype = $3 AND connectionstring = $4`: {ods, name, instanceType, cs},
			`SELECT count(*) FROM dbo.odsinstancederivatives WHERE odsinstance_odsinstanceid = $1 AND derivativetype = 'ReadReplica'`:      {ods},
			`SELECT count(*) FROM dbo.apiclients c JOIN dbo.apiclientodsinstances l ON l.apiclient_apiclientid = c.apiclientid
				WHERE l.odsinstance_odsinstanceid = $1 AND c.key = $2 AND c.secret = $3`: {ods, w.ClientID, w.ClientSecret},
		} {
			if n := count(sql, args...); n != 1 {
				t.Fatalf("%d rows, want 1: %s %v", n, sql, args)
			}
		}
		return w
	}

	t.Run("as it was", func(t *testing.T) {
		id := e.instanceIn(t, adminapi.StatusDeleted)
		gone := worker(t, e, id)
		rec, _ := e.srv.Instance(id)
		e.expect(t, 204, "POST", path(id, "completed"), conn(sqlConn))
		w := registered(t, id, rec.Name, "enterprise", sqlConn)
		if *w.OdsInstanceID == *gone.OdsInstanceID || w.ClientID == gone.ClientID {
			t.Fatalf("registered again as %+v, the deleted registration was %+v", w, gone)
		}
		if n := count(`SELECT count(*) FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = $1 AND contextkey = 'schoolYearFromRoute' AND contextvalue = '2025'`, *w.OdsInstanceID); n != 1 {
			t.Fatalf("%d context rows, want the request's one", n)
		}
		e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn)) // Completed now: nothing
		if again := worker(t, e, id); *again.OdsInstanceID != *w.OdsInstanceID || again.ClientID != w.ClientID || rows(count) != "1/1/1/1/1" {
			t.Fatalf("a repeated completed changed the instance: %+v", again)
		}
		e.expect(t, 202, "DELETE", fmt.Sprintf("/adminconsole/odsInstances/%d", id), nil)
		e.expect(t, 204, "POST", path(id, "deleted"), nil)
	})
	if got := rows(count); got != "0/0/0/0/0" {
		t.Fatalf("rows after the first instance went again: %s", got)
	}

	t.Run("renamed while Deleted", func(t *testing.T) {
		id := e.instanceIn(t, adminapi.StatusDeleted)
		rec, _ := e.srv.Instance(id)
		req := request(rec.Name + " restored")
		req.InstanceType = "district"
		req.OdsInstanceContexts = []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2026"}, {ContextKey: "district", ContextValue: "9"}}
		e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), req)
		e.wantStatus(t, id, adminapi.StatusDeleted)
		if w := worker(t, e, id); w.InstanceName != req.Name || w.OdsInstanceID == nil || *w.OdsInstanceID != 0 {
			t.Fatalf("after the PUT: %+v (odsInstanceId is reset to 0)", w)
		}
		if got := rows(count); got != "0/0/0/0/0" {
			t.Fatalf("the PUT of a Deleted instance wrote rows: %s", got)
		}
		e.expect(t, 204, "POST", path(id, "completed"), conn(sqlConn))
		w := registered(t, id, req.Name, "district", sqlConn)
		if n := count(`SELECT count(*) FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = $1 AND (contextkey, contextvalue) IN (('schoolYearFromRoute', '2026'), ('district', '9'))`, *w.OdsInstanceID); n != 2 {
			t.Fatalf("%d context rows, want the PUT's two", n)
		}
		if got := rows(count); got != "1/2/1/1/1" {
			t.Fatalf("rows after completed (instances/contexts/derivatives/clients/links): %s", got)
		}
	})

	// Its rows are still there under the same name and type, and
	// EdFi_Admin's unique index on them refuses the second row: a 500 that
	// changes nothing, as 2.2.2's transaction does.
	t.Run("from Pending_Delete", func(t *testing.T) {
		id := e.instanceIn(t, adminapi.StatusPendingDelete)
		before, want := worker(t, e, id), rows(count)
		e.expect(t, http.StatusInternalServerError, "POST", path(id, "completed"), conn(sqlConn))
		e.wantStatus(t, id, adminapi.StatusPendingDelete)
		if w := worker(t, e, id); *w.OdsInstanceID != *before.OdsInstanceID || w.ClientID != before.ClientID || rows(count) != want {
			t.Fatalf("a refused completed changed the instance (%+v) or the rows (%s, were %s)", w, rows(count), want)
		}
	})
}
