package simulator_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
)

// Every worker call from every status: the answer and the status after it.
func TestWorkerCallsByStatus(t *testing.T) {
	const (
		P  = adminapi.StatusPending
		IP = adminapi.StatusInProgress
		C  = adminapi.StatusCompleted
		PR = adminapi.StatusPendingRename
		RF = adminapi.StatusRenameFailed
		PD = adminapi.StatusPendingDelete
		D  = adminapi.StatusDeleted
		DF = adminapi.StatusDeleteFailed
		E  = adminapi.StatusError
	)
	type outcome struct {
		code   int
		status string // "" = unchanged
	}
	ok := func(to string) outcome { return outcome{204, to} }
	refused := outcome{409, ""}
	matrix := map[string]map[string]outcome{
		"completed": {
			P: ok(C), IP: ok(C), E: ok(C), C: ok(C), // Admin API 2.2.2 checks for Completed alone
			PR: ok(C), RF: ok(C), PD: ok(C), D: ok(C), DF: ok(C),
		},
		"renamed": {
			PR: ok(C), C: ok(C),
			P: refused, IP: refused, E: refused, RF: refused, PD: refused, D: refused, DF: refused,
		},
		"renameFailed": {
			PR: ok(RF), RF: ok(RF),
			P: refused, IP: refused, E: refused, C: refused, PD: refused, D: refused, DF: refused,
		},
		"deleted": {
			P: ok(D), IP: ok(D), E: ok(D), C: ok(D), PR: ok(D), RF: ok(D), PD: ok(D), D: ok(D), DF: ok(D),
		},
		"deleteFailed": {
			P: ok(DF), IP: ok(DF), E: ok(DF), C: ok(DF), PR: ok(DF), RF: ok(DF), PD: ok(DF), D: ok(DF), DF: ok(DF),
		},
	}
	e := newEnv(t, simulator.Options{})
	for _, action := range []string{"completed", "renamed", "renameFailed", "deleted", "deleteFailed"} {
		for _, from := range allStatuses {
			want, found := matrix[action][from]
			if !found {
				t.Fatalf("matrix lacks %s from %s", action, from)
			}
			t.Run(action+" from "+from, func(t *testing.T) {
				id := e.instanceIn(t, from)
				before, _ := e.srv.Instance(id)
				var body any
				if action == "completed" || action == "renamed" {
					body = conn(sqlConn)
				}
				r := e.expect(t, want.code, "POST", path(id, action), body)
				wantStatus := want.status
				if wantStatus == "" {
					wantStatus = from
				}
				e.wantStatus(t, id, wantStatus)
				after, _ := e.srv.Instance(id)
				if after.Calls[action] != before.Calls[action]+1 {
					t.Errorf("calls[%s] %d -> %d", action, before.Calls[action], after.Calls[action])
				}
				if want.code == 409 {
					if p := problemOf(t, r); p.Status != 409 || p.Title == "" {
						t.Errorf("409 body %s", r.body)
					}
					if after.ConnectionString != before.ConnectionString {
						t.Error("a refused call stored its connection string")
					}
				}
				if body != nil && want.code == 204 && after.ConnectionString != sqlConn {
					t.Errorf("connection string %q, want the last one received", after.ConnectionString)
				}
				if wantStatus == C && after.OdsInstanceID == nil {
					t.Error("Completed without an odsInstanceId")
				}
			})
		}
	}
}

func TestWorkerCallRefusals(t *testing.T) {
	e := newEnv(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	id := e.create(t)
	tests := []struct {
		name    string
		path    string
		body    any
		opts    []option
		want    int
		wantKey string // validation error key
	}{
		{"completed: unknown id", path(999, "completed"), conn(pgConn), nil, 404, ""},
		{"completed: id not a number", "/adminconsole/instances/seven/completed", conn(pgConn), nil, 400, ""},
		{"completed: instance of another tenant", path(id, "completed"), conn(pgConn), []option{header("Tenant", "tenant2")}, 404, ""},
		{"completed: empty connection string", path(id, "completed"), conn(""), nil, 400, "ConnectionString"},
		{"completed: no connectionString", path(id, "completed"), `{}`, nil, 400, "ConnectionString"},
		{"completed: null body", path(id, "completed"), `null`, nil, 400, "ConnectionString"},
		{"completed: not a connection string", path(id, "completed"), conn("EdFi_Ods_x"), nil, 400, "ConnectionString"},
		{"completed: no database", path(id, "completed"), conn("host=db;username=u"), nil, 400, "ConnectionString"},
		{"completed: encrypted value", path(id, "completed"), conn("aGVsbG8=.d29ybGQ=.eA=="), nil, 400, "ConnectionString"},
		{"completed: validation before lookup", path(999, "completed"), conn(""), nil, 400, "ConnectionString"},
		{"completed: invalid JSON", path(id, "completed"), `{"connectionString":`, nil, 400, ""},
		{"completed: no body", path(id, "completed"), nil, []option{contentType("application/json")}, 400, ""},
		{"completed: not JSON", path(id, "completed"), `{}`, []option{contentType("text/plain")}, 415, ""},
		{"renamed: unknown id", path(999, "renamed"), conn(pgConn), nil, 404, ""},
		{"renamed: invalid connection string", path(id, "renamed"), conn("nonsense"), nil, 400, "ConnectionString"},
		{"renameFailed: unknown id", path(999, "renameFailed"), nil, nil, 404, ""},
		{"deleted: unknown id", path(999, "deleted"), nil, nil, 404, ""},
		{"deleteFailed: unknown id", path(999, "deleteFailed"), nil, nil, 404, ""},
		{"deleteFailed: id 0", path(0, "deleteFailed"), nil, nil, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.expect(t, tt.want, "POST", tt.path, tt.body, tt.opts...)
			e.wantStatus(t, id, adminapi.StatusPending)
			if tt.wantKey == "" {
				return
			}
			p := problemOf(t, r)
			if p.Title != "Validation failed" || len(p.Errors[tt.wantKey]) != 1 {
				t.Fatalf("problem %s, want a validation error for %s", r.body, tt.wantKey)
			}
		})
	}
	if rec, _ := e.srv.Instance(id); rec.OdsInstanceID != nil {
		t.Fatalf("odsInstanceId %d assigned by refused calls", *rec.OdsInstanceID)
	}
}

// odsInstanceId is null until Completed, then assigned once for good.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	worker := func(t *testing.T, id int) adminapi.WorkerInstance {
		t.Helper()
		var w adminapi.WorkerInstance
		r := e.expect(t, 200, "GET", fmt.Sprintf("/adminconsole/instances/%d", id), nil)
		decode(t, r, &w)
		if w.OdsInstanceID == nil && !strings.Contains(string(r.body), `"odsInstanceId":null`) {
			t.Fatalf("odsInstanceId missing instead of null: %s", r.body)
		}
		return w
	}
	e.create(t) // another instance, so that ids differ from odsInstanceIds
	id := e.create(t)
	w := worker(t, id)
	want := adminapi.WorkerInstance{ID: id, TenantID: 1, TenantName: "default", InstanceName: "District 2 - 2025", Status: adminapi.StatusPending}
	if w != want {
		t.Fatalf("worker view %+v, want %+v", w, want)
	}

	e.expect(t, 400, "POST", path(id, "completed"), conn("postgres://u:p@db:5432/EdFi_Ods_x?sslmode=disable"))
	e.expect(t, 204, "POST", path(id, "completed"), conn("host=db;port=5432;username=u;password=p;database=EdFi_Ods_x;SSL Mode=Disable"))
	w = worker(t, id)
	if w.Status != adminapi.StatusCompleted || w.OdsInstanceID == nil || *w.OdsInstanceID != 1 {
		t.Fatalf("after completed: %+v", w)
	}
	odsID := *w.OdsInstanceID
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn)) // idempotent
	e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), request("District 2 - 2026"))
	w = worker(t, id)
	if w.Status != adminapi.StatusPendingRename || w.InstanceName != "District 2 - 2026" {
		t.Fatalf("after PUT: %+v", w)
	}
	e.expect(t, 204, "POST", path(id, "renamed"), conn(sqlConn))
	e.expect(t, 204, "POST", path(id, "renamed"), conn(sqlConn)) // idempotent
	e.expect(t, 202, "DELETE", fmt.Sprintf("/adminconsole/odsInstances/%d", id), nil)
	e.expect(t, 204, "POST", path(id, "deleteFailed"), nil)
	e.expect(t, 204, "POST", path(id, "deleteFailed"), nil)
	e.expect(t, 204, "POST", path(id, "deleted"), nil)
	e.expect(t, 204, "POST", path(id, "deleted"), nil)
	w = worker(t, id)
	if w.Status != adminapi.StatusDeleted || w.OdsInstanceID == nil || *w.OdsInstanceID != odsID {
		t.Fatalf("after deleted: %+v, odsInstanceId should stay %d", w, odsID)
	}
	rec, _ := e.srv.Instance(id)
	wantCalls := map[string]int{"completed": 3, "renamed": 2, "deleteFailed": 2, "deleted": 2} // the refused URL counts too
	if rec.ConnectionString != sqlConn || fmt.Sprint(rec.Calls) != fmt.Sprint(wantCalls) {
		t.Fatalf("record %+v", rec)
	}
	// A Deleted instance keeps its name: a new request may not reuse it.
	e.expect(t, 400, "POST", "/adminconsole/odsInstances", request("District 2 - 2026"))
}

func TestListWorkerInstances(t *testing.T) {
	e := newEnv(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	list := func(t *testing.T, query string, opts ...option) []int {
		t.Helper()
		r := e.expect(t, 200, "GET", "/adminconsole/instances"+query, nil, opts...)
		var ws []adminapi.WorkerInstance
		decode(t, r, &ws)
		ids := []int{}
		for _, w := range ws {
			ids = append(ids, w.ID)
		}
		return ids
	}
	if r := e.expect(t, 200, "GET", "/adminconsole/instances?status=Pending", nil); string(r.body) != "[]" {
		t.Fatalf("nothing yet: %s, want []", r.body)
	}
	p1 := e.create(t)
	c1 := e.instanceIn(t, adminapi.StatusCompleted)
	pd1 := e.instanceIn(t, adminapi.StatusPendingDelete)
	p2 := e.createIn(t, 2, "tenant2")

	tests := []struct {
		name  string
		query string
		opts  []option
		want  []int
	}{
		{"everything", "", nil, []int{p1, c1, pd1, p2}},
		{"Pending", "?status=Pending", nil, []int{p1, p2}},
		{"pending", "?status=pending", nil, []int{p1, p2}},
		{"PENDING_DELETE", "?status=PENDING_DELETE", nil, []int{pd1}},
		{"Pending_Delete", "?status=Pending_Delete", nil, []int{pd1}},
		{"parameter names in another case", "?Status=pending&TenantName=tenant2", nil, []int{p2}},
		{"nothing matches", "?status=Deleted", nil, []int{}},
		{"unknown status", "?status=Exploded", nil, []int{}},
		{"tenantName", "?tenantName=tenant1", nil, []int{p1, c1, pd1}},
		{"tenantName in another case", "?tenantName=TENANT2", nil, []int{p2}},
		{"unknown tenantName", "?tenantName=tenant9", nil, []int{}},
		{"status and tenantName", "?status=pending&tenantName=tenant1", nil, []int{p1}},
		{"Tenant header", "", []option{header("Tenant", "tenant2")}, []int{p2}},
		{"Tenant header and another tenantName", "?tenantName=tenant1", []option{header("Tenant", "tenant2")}, []int{}},
		{"trailing slash", "/?status=Completed", nil, []int{c1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := list(t, tt.query, tt.opts...); !slices.Equal(got, tt.want) {
				t.Fatalf("ids %v, want %v", got, tt.want)
			}
		})
	}
	e.expect(t, 400, "GET", "/adminconsole/instances", nil, header("Tenant", "tenant9"))

	// The JSON carries every field of the contract.
	r := e.expect(t, 200, "GET", fmt.Sprintf("/adminconsole/instances/%d", p2), nil)
	for _, field := range []string{`"id":`, `"tenantId":2`, `"tenantName":"tenant2"`, `"odsInstanceId":null`, `"instanceName":`,
		`"resourceUrl":""`, `"oAuthUrl":""`, `"clientId":""`, `"clientSecret":""`, `"status":"Pending"`} {
		if !strings.Contains(string(r.body), field) {
			t.Errorf("worker instance %s lacks %s", r.body, field)
		}
	}
	e.expect(t, 404, "GET", "/adminconsole/instances/999", nil)
	e.expect(t, 404, "GET", fmt.Sprintf("/adminconsole/instances/%d", p2), nil, header("Tenant", "tenant1"))
	e.expect(t, 400, "GET", "/adminconsole/instances/x", nil)
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	id := e.instanceIn(t, adminapi.StatusPendingRename)
	tests := []struct {
		name, method, path string
		body               any
		want               int
		wantAllow          string
	}{
		{"renamefailed in lower case", "POST", fmt.Sprintf("/adminconsole/instances/%d/renamefailed", id), nil, 204, ""},
		{"RENAMEFAILED, idempotent", "POST", fmt.Sprintf("/ADMINCONSOLE/INSTANCES/%d/RENAMEFAILED", id), nil, 204, ""},
		{"mixed case list", "GET", "/AdminConsole/Instances", nil, 200, ""},
		{"odsinstances", "GET", "/adminconsole/odsinstances", nil, 200, ""},
		{"v2 in upper case", "GET", "/V2/ODSINSTANCES", nil, 200, ""},
		{"tenants with a trailing slash", "GET", "/adminconsole/tenants/", nil, 200, ""},
		{"unknown path", "GET", "/adminconsole/nothing", nil, 404, ""},
		{"unknown action", "POST", fmt.Sprintf("/adminconsole/instances/%d/exploded", id), nil, 404, ""},
		{"extra segment", "POST", fmt.Sprintf("/adminconsole/instances/%d/deleted/now", id), nil, 404, ""},
		{"no v2 item route", "GET", "/v2/odsInstances/1", nil, 404, ""},
		{"root", "GET", "/", nil, 404, ""},
		{"unknown simulator path", "GET", "/_simulator/nothing", nil, 404, ""},
		{"GET token", "GET", "/connect/token", nil, 405, "POST"},
		{"PATCH an instance request", "PATCH", "/adminconsole/odsInstances/1", nil, 405, "GET, PUT, DELETE"},
		{"DELETE the list", "DELETE", "/adminconsole/odsInstances", nil, 405, "GET, POST"},
		{"GET completed", "GET", fmt.Sprintf("/adminconsole/instances/%d/completed", id), nil, 405, "POST"},
		{"PUT a worker instance", "PUT", "/adminconsole/instances/1", nil, 405, "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.expect(t, tt.want, tt.method, tt.path, tt.body)
			if got := r.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow %q, want %q", got, tt.wantAllow)
			}
		})
	}
	e.wantStatus(t, id, adminapi.StatusRenameFailed)
	rec, _ := e.srv.Instance(id)
	if rec.Calls["renameFailed"] != 2 {
		t.Fatalf("calls %v, want renameFailed counted under its contract name", rec.Calls)
	}
	// Routing answers before authentication.
	e.expect(t, 404, "GET", "/adminconsole/nothing", nil, noAuth())
	e.expect(t, 405, "GET", "/connect/register", nil, noAuth())
	e.expect(t, 401, "GET", "/adminconsole/instances/x", nil, noAuth())
}

// Many clients at once, as the bridge and several consumer replicas would be.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, simulator.Options{FaultSeed: 7})
	e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/instances/*", Status: http.StatusServiceUnavailable, Share: 0.2})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			inst, err := e.srv.CreateInstance("", request(fmt.Sprintf("Concurrent %d", i)))
			if err != nil {
				errs <- err
				return
			}
			for {
				r, err := e.send(t.Context(), "POST", path(inst.ID, "completed"), conn(pgConn))
				if err != nil {
					errs <- err
					return
				}
				if r.status == 204 {
					break
				}
				if r.status != 503 {
					errs <- fmt.Errorf("completed %d: %s", inst.ID, r)
					return
				}
			}
			if _, err := e.send(t.Context(), "GET", "/adminconsole/instances?status=completed", nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ods := map[int]bool{}
	for _, rec := range e.srv.Instances() {
		if rec.Status != adminapi.StatusCompleted || rec.OdsInstanceID == nil || ods[*rec.OdsInstanceID] {
			t.Fatalf("record %+v", rec)
		}
		ods[*rec.OdsInstanceID] = true
	}
	if len(ods) != n {
		t.Fatalf("%d completed, want %d", len(ods), n)
	}
}

// The timeline says when a request was made, first read by a worker, and
// first completed, in that order; later reads and completions move nothing.
func TestTimeline(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	before := time.Now()
	id := e.create(t)
	rec, _ := e.srv.Instance(id)
	if rec.Timeline.Requested.Before(before) || !rec.Timeline.FirstWorkerRead.IsZero() || !rec.Timeline.Completed.IsZero() {
		t.Fatalf("after the request: %+v", rec.Timeline)
	}
	e.expect(t, 200, "GET", fmt.Sprintf("/adminconsole/instances/%d", id), nil)
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
	first, _ := e.srv.Instance(id)
	tl := first.Timeline
	if tl.FirstWorkerRead.Before(tl.Requested) || tl.Completed.Before(tl.FirstWorkerRead) {
		t.Fatalf("timeline out of order: %+v", tl)
	}
	e.expect(t, 200, "GET", fmt.Sprintf("/adminconsole/instances/%d", id), nil)
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
	if again, _ := e.srv.Instance(id); again.Timeline != tl {
		t.Fatalf("a second read and completion moved the timeline: %+v, was %+v", again.Timeline, tl)
	}
}

// Without RegistrationAdminAPI too, completed puts a Deleted instance back
// with a new odsInstanceId, under the name a PUT gave it while Deleted, and
// GET /v2/odsInstances lists it again.
func TestCompletedPutsADeletedInstanceBack(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	id := e.instanceIn(t, adminapi.StatusDeleted)
	gone, _ := e.srv.Instance(id)
	req := request(gone.Name + " restored")
	e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), req)
	e.wantStatus(t, id, adminapi.StatusDeleted)
	var list []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if decode(t, e.expect(t, 200, "GET", "/v2/odsInstances", nil), &list); len(list) != 0 {
		t.Fatalf("a Deleted instance is registered: %+v", list)
	}
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
	back, _ := e.srv.Instance(id)
	if back.Status != adminapi.StatusCompleted || back.Name != req.Name || back.OdsInstanceID == nil || *back.OdsInstanceID == *gone.OdsInstanceID {
		t.Fatalf("put back as %+v, was %+v", back, gone)
	}
	if decode(t, e.expect(t, 200, "GET", "/v2/odsInstances", nil), &list); len(list) != 1 || list[0].ID != *back.OdsInstanceID || list[0].Name != req.Name {
		t.Fatalf("registered %+v, want odsInstanceId %d named %q", list, *back.OdsInstanceID, req.Name)
	}
}
