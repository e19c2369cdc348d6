package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// The manage flavor's requests are created through instancemgr's write
// routes (the door), authorized by the simulator in the Admin API's
// place, as a reverse proxy sends them in production, and settled by the
// system; these helpers speak those routes.

// door is the URL of instancemgr's write routes over the env's tenants,
// started on first use.
func (e *env) door() string {
	e.t.Helper()
	if e.doorURL == "" {
		ledgers := app.NewLedgers(e.cfg, e.log)
		e.t.Cleanup(ledgers.Close)
		srv, err := app.ManageServer(e.cfg, ledgers, nil, e.log, nil)
		if err != nil {
			e.t.Fatal(err)
		}
		routes := httptest.NewServer(srv)
		e.t.Cleanup(routes.Close)
		e.doorURL = routes.URL
	}
	return e.doorURL
}

// manageRequest asks the door for a managed instance and returns its id.
func (e *env) manageRequest(name, template string) int {
	e.t.Helper()
	return e.manageRequestAt(e.door(), "", name, template)
}

// manageCall sends a manage call to base for tenant ("": no Tenant
// header), with a valid token.
func (e *env) manageCall(base, tenant, method, path, body string) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.sim.Token(e.t))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tenant != "" {
		req.Header.Set("Tenant", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// manageRequestAt asks base's manage route for a managed instance of
// tenant.
func (e *env) manageRequestAt(base, tenant, name, template string) int {
	e.t.Helper()
	resp := e.manageCall(base, tenant, http.MethodPost, "/v2/odsInstances/manage", `{"name":"`+name+`","databaseTemplate":"`+template+`"}`)
	loc := resp.Header.Get("Location")
	id, err := strconv.Atoi(loc[strings.LastIndex(loc, "/")+1:])
	if resp.StatusCode != http.StatusAccepted || err != nil {
		e.t.Fatalf("POST manage: status %d, Location %q", resp.StatusCode, loc)
	}
	return id
}

// manageDeleteAt asks base's manage route to delete request id of tenant.
func (e *env) manageDeleteAt(base, tenant string, id int) {
	e.t.Helper()
	if resp := e.manageCall(base, tenant, http.MethodDelete, "/v2/odsInstances/manage/"+strconv.Itoa(id), ""); resp.StatusCode != http.StatusNoContent {
		e.t.Fatalf("DELETE manage: status %d", resp.StatusCode)
	}
}

func (e *env) manageStatus(id int) string {
	e.t.Helper()
	var status string
	if err := e.admin.QueryRow(context.Background(), `SELECT status FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status); err != nil {
		e.t.Fatal(err)
	}
	return status
}

func (e *env) waitManage(id int, status string) {
	e.t.Helper()
	testenv.Eventually(e.t, time.Minute, "manage request "+strconv.Itoa(id)+" "+status, func() bool { return e.manageStatus(id) == status })
}

// The lifecycle, redelivery and ownership tests run in both flavors
// (flavors, in the harness), with the adminconsole flavor's naming
// pattern; these are the manage flavor's own, with Ed-Fi's naming rule.

// A database the system did not make already has the name Ed-Fi's rule
// gives the request (which Ed-Fi's own job would drop first): the request
// is refused with a dead letter naming the conflict, and the
// database, its data and EdFi_Admin are left as they were.
func TestManageCreateOverAForeignDatabaseIsAConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true})
	name, db := e.prefix+" Taken", "EdFi_Ods_"+e.prefix+"_Taken_Minimal"
	testenv.CreateDatabase(t, e.pg, db)
	e.startReplica(app.ConsumerDeps{})
	e.startBridge()
	id := e.manageRequest(name, "Minimal")
	letters := e.waitDeadLetters(1)
	if letters[0].JobID != "create.default.m"+strconv.Itoa(id) || letters[0].Code != "conflict" {
		t.Errorf("dead letter %+v, want a conflict for request %d", letters[0], id)
	}
	// Ed-Fi's terminal status, and why where Ed-Fi keeps it: the Admin
	// App shows the request failed, not in progress for ever.
	if st := e.manageStatus(id); st != "CreateError" {
		t.Errorf("the request is %s after its job ended; want CreateError", st)
	}
	var why string
	if err := e.admin.QueryRow(context.Background(), `SELECT errormessage FROM adminapi.jobstatuses WHERE jobid = $1 AND status = 'Error'`,
		fmt.Sprintf("instancemgr-create.default.m%d-%d", id, letters[0].StreamSequence)).Scan(&why); err != nil || !strings.Contains(why, db) {
		t.Errorf("adminapi.jobstatuses says %q (%v); want the conflict naming %s", why, err, db)
	}
	if !e.databaseExists(db) || e.count(`SELECT count(*) FROM dbo.odsinstances`) != 0 {
		t.Error("the foreign database was touched, or a registration was written")
	}

	// The operator removes the foreign database and replays the job: the
	// request is taken up again and created.
	if _, err := e.pg.Exec(context.Background(), `DROP DATABASE "`+db+`"`); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.JetStream(t, e.natsURL)
	dead, err := jobs.ListDead(context.Background(), js)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %v, %v", dead, err)
	}
	if _, err := jobs.Replay(context.Background(), js, e.cfg.StreamConfig(), dead[0]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the replayed request Created", func() bool { return e.manageStatus(id) == "Created" })
	e.checkRegistered(e.firstTenant, id, name, db)
}

// A request that Ed-Fi's own CreateInstanceJob has run for is never taken
// up: a dead letter says so, and nothing is made.
func TestManageRequestEdFisJobRanForIsLeftAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true})
	name, db := e.prefix+" Quartz", "EdFi_Ods_"+e.prefix+"_Quartz_Minimal"
	id := e.manageRequest(name, "Minimal")
	if _, err := e.admin.Exec(context.Background(), `INSERT INTO adminapi.jobstatuses (jobid, status) VALUES ($1, 'InProgress')`, "CreateInstanceJob-"+strconv.Itoa(id)+"_NON_CLUSTERED638"); err != nil {
		t.Fatal(err)
	}
	e.startReplica(app.ConsumerDeps{})
	e.startBridge()
	letters := e.waitDeadLetters(1)
	if letters[0].Code != "conflict" || !strings.Contains(letters[0].Reason, "own executor") {
		t.Errorf("dead letter reason %q", letters[0].Reason)
	}
	if e.databaseExists(db) || e.manageStatus(id) != "PendingCreate" || e.count(`SELECT count(*) FROM dbo.odsinstances`) != 0 {
		t.Errorf("something was made or moved: database %v, status %s", e.databaseExists(db), e.manageStatus(id))
	}
}

// In production instancemgr serves the write routes itself, authorized by
// the Admin API (here the simulator, whose own write routes are not used):
// a request POSTed to instancemgr is created and one DELETEd is deleted,
// end to end, with the rows the Admin API's GET then shows.
func TestManageRoutesServedByInstancemgr(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true, allowDelete: true})
	name, db := e.prefix+" Served", "EdFi_Ods_"+e.prefix+"_Served_Minimal"
	ledgers := app.NewLedgers(e.cfg, e.log)
	t.Cleanup(ledgers.Close)
	srv, err := app.ManageServer(e.cfg, ledgers, nil, e.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	routes := httptest.NewServer(srv)
	t.Cleanup(routes.Close)
	// The Admin API's own write routes fail: only instancemgr's can work.
	e.sim.InjectFault(simulator.Fault{Method: http.MethodPost, Path: "/v2/odsInstances/manage", Status: http.StatusServiceUnavailable})
	e.sim.InjectFault(simulator.Fault{Method: http.MethodDelete, Path: "/v2/odsInstances/manage/*", Status: http.StatusServiceUnavailable})
	e.startReplica(app.ConsumerDeps{})
	e.startBridge()

	id := e.manageRequestAt(routes.URL, "", name, "Minimal")
	e.waitManage(id, "Created")
	if !e.databaseExists(db) || e.count(`SELECT count(*) FROM dbo.odsinstances WHERE name = $1`, name) != 1 {
		t.Fatalf("after Created: database there %v, rows %d", e.databaseExists(db), e.count(`SELECT count(*) FROM dbo.odsinstances`))
	}
	e.manageDeleteAt(routes.URL, "", id)
	e.waitManage(id, "Deleted")
	if e.databaseExists(db) || e.count(`SELECT count(*) FROM dbo.odsinstances`) != 0 {
		t.Fatalf("after Deleted: database there %v, rows %d", e.databaseExists(db), e.count(`SELECT count(*) FROM dbo.odsinstances`))
	}
}
