package simulator_test

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
)

func TestTenants(t *testing.T) {
	tests := []struct {
		name    string
		tenants []string
		want    []string
	}{
		{"single tenant", nil, []string{"default"}},
		{"several tenants", []string{"tenant1", " tenant2 "}, []string{"tenant1", "tenant2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, simulator.Options{Tenants: tt.tenants})
			var got []adminapi.Tenant
			decode(t, e.expect(t, 200, "GET", "/adminconsole/tenants", nil), &got)
			if len(got) != len(tt.want) {
				t.Fatalf("tenants %+v, want %v", got, tt.want)
			}
			for i, tn := range got {
				if tn.TenantID != i+1 || tn.Document.Name != tt.want[i] || tn.Document.EdfiAPIDiscoveryURL != e.srv.URL+"/api/" {
					t.Errorf("tenant %d: %+v", i, tn)
				}
			}
			e.expect(t, 400, "GET", "/adminconsole/tenants", nil, header("Tenant", "nope"))
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts simulator.Options
		want []string // substrings of the error; none = valid
	}{
		{"zero value", simulator.Options{}, nil},
		{"tenants", simulator.Options{Tenants: []string{"a", "b"}}, nil},
		{"every problem at once", simulator.Options{Tenants: []string{"a", "", "A"}, TokenTTL: -1}, []string{"tenant 2", "tenant 3", "negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				simulator.New(tt.opts)
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			simulator.New(tt.opts)
		})
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	e.expect(t, 201, "POST", "/adminconsole/odsInstances", request("Taken"))

	mod := func(f func(*adminapi.InstanceRequest)) adminapi.InstanceRequest {
		r := request(fmt.Sprintf("Valid %d", e.seq.Add(1)))
		f(&r)
		return r
	}
	tests := []struct {
		name     string
		body     any
		opts     []option
		want     int
		wantKeys []string
	}{
		{"valid", mod(func(*adminapi.InstanceRequest) {}), nil, 201, nil},
		{"no contexts, no derivatives", mod(func(r *adminapi.InstanceRequest) {
			r.OdsInstanceContexts, r.OdsInstanceDerivatives = nil, nil
		}), nil, 201, nil},
		{"name of 58 characters", mod(func(r *adminapi.InstanceRequest) { r.Name = strings.Repeat("n", 58) }), nil, 201, nil},
		{"name of 58 accented characters", mod(func(r *adminapi.InstanceRequest) { r.Name = strings.Repeat("é", 58) }), nil, 201, nil},
		{"tenantName of a tenant that does not exist, stored as given", mod(func(r *adminapi.InstanceRequest) { r.TenantName = "tenant9" }), nil, 201, nil},
		{"tenantName of another tenant, stored as given", mod(func(r *adminapi.InstanceRequest) { r.TenantID, r.TenantName = 1, "tenant2" }), nil, 201, nil},
		{"same name in another tenant", mod(func(r *adminapi.InstanceRequest) { r.Name, r.TenantID = "Taken", 2 }), nil, 201, nil},
		{"missing name", mod(func(r *adminapi.InstanceRequest) { r.Name = "" }), nil, 400, []string{"Name"}},
		{"blank name", mod(func(r *adminapi.InstanceRequest) { r.Name = "   " }), nil, 400, []string{"Name"}},
		{"name of 59 characters", mod(func(r *adminapi.InstanceRequest) { r.Name = strings.Repeat("n", 59) }), nil, 400, []string{"Name"}},
		{"name of 30 emoji (60 UTF-16 units)", mod(func(r *adminapi.InstanceRequest) { r.Name = strings.Repeat("😀", 30) }), nil, 400, []string{"Name"}},
		{"no instanceType", mod(func(r *adminapi.InstanceRequest) { r.InstanceType = "" }), nil, 400, []string{"InstanceType"}},
		{"blank instanceType", mod(func(r *adminapi.InstanceRequest) { r.InstanceType = "  " }), nil, 400, []string{"InstanceType"}},
		{"no tenantId", mod(func(r *adminapi.InstanceRequest) { r.TenantID = 0 }), nil, 400, []string{"TenantId"}},
		{"no tenantName", mod(func(r *adminapi.InstanceRequest) { r.TenantName = "" }), nil, 400, []string{"TenantName"}},
		{"tenantName of 251", mod(func(r *adminapi.InstanceRequest) { r.TenantName = strings.Repeat("t", 251) }), nil, 400, []string{"TenantName"}},
		{"name taken", mod(func(r *adminapi.InstanceRequest) { r.Name = "Taken" }), nil, 400, []string{"Name"}},
		{"name taken, other case", mod(func(r *adminapi.InstanceRequest) { r.Name = "TAKEN" }), nil, 400, []string{"Name"}},
		{"instanceType of 101", mod(func(r *adminapi.InstanceRequest) { r.InstanceType = strings.Repeat("t", 101) }), nil, 400, []string{"InstanceType"}},
		{"contextKey of 51", mod(func(r *adminapi.InstanceRequest) { r.OdsInstanceContexts[0].ContextKey = strings.Repeat("k", 51) }), nil, 400, []string{"OdsInstanceContexts[0].ContextKey"}},
		{"empty contextKey", mod(func(r *adminapi.InstanceRequest) { r.OdsInstanceContexts[0].ContextKey = "" }), nil, 400, []string{"OdsInstanceContexts[0].ContextKey"}},
		{"contextValue of 51", mod(func(r *adminapi.InstanceRequest) { r.OdsInstanceContexts[0].ContextValue = strings.Repeat("v", 51) }), nil, 400, []string{"OdsInstanceContexts[0].ContextValue"}},
		{"duplicate contextKey", mod(func(r *adminapi.InstanceRequest) {
			r.OdsInstanceContexts = append(r.OdsInstanceContexts, adminapi.OdsInstanceContext{ContextKey: "schoolYearFromRoute", ContextValue: "2026"})
		}), nil, 400, []string{"OdsInstanceContexts"}},
		{"unknown derivativeType", mod(func(r *adminapi.InstanceRequest) { r.OdsInstanceDerivatives[0].DerivativeType = "Backup" }), nil, 400, []string{"OdsInstanceDerivatives[0].DerivativeType"}},
		{"derivativeType in the wrong case", mod(func(r *adminapi.InstanceRequest) { r.OdsInstanceDerivatives[0].DerivativeType = "readreplica" }), nil, 400, []string{"OdsInstanceDerivatives[0].DerivativeType"}},
		{"duplicate derivativeType", mod(func(r *adminapi.InstanceRequest) {
			r.OdsInstanceDerivatives = append(r.OdsInstanceDerivatives, adminapi.OdsInstanceDerivative{DerivativeType: "ReadReplica"})
		}), nil, 400, []string{"OdsInstanceDerivatives"}},
		{"unknown tenantId", mod(func(r *adminapi.InstanceRequest) { r.TenantID = 3 }), nil, 400, []string{"TenantId"}},
		{"tenantId contradicts the header", mod(func(*adminapi.InstanceRequest) {}), []option{header("Tenant", "tenant2")}, 400, []string{"TenantId"}},
		{"unknown Tenant header", mod(func(*adminapi.InstanceRequest) {}), []option{header("Tenant", "tenant9")}, 400, []string{"Tenant"}},
		{"every problem at once", mod(func(r *adminapi.InstanceRequest) {
			r.Name, r.InstanceType = "", strings.Repeat("t", 101)
			r.OdsInstanceDerivatives[0].DerivativeType = "x"
		}), nil, 400, []string{"Name", "InstanceType", "OdsInstanceDerivatives[0].DerivativeType"}},
		{"invalid JSON", `{"name": "x",`, nil, 400, nil},
		{"two JSON values", `{"name": "x"} {}`, nil, 400, nil},
		{"empty body", "", nil, 400, nil},
		{"wrong JSON type", `{"name": 7}`, nil, 400, nil},
		{"not JSON", `{"name": "x"}`, []option{contentType("text/plain")}, 415, nil},
		{"no content type", `{"name": "x"}`, []option{func(r *http.Request) { r.Header.Del("Content-Type") }}, 415, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.srv.Instances())
			r := e.expect(t, tt.want, "POST", "/adminconsole/odsInstances", tt.body, tt.opts...)
			if tt.want != 201 && len(e.srv.Instances()) != before {
				t.Fatal("a refused request created an instance")
			}
			if tt.wantKeys == nil {
				return
			}
			p := problemOf(t, r)
			var keys []string
			for k := range p.Errors {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := slices.Sorted(slices.Values(tt.wantKeys))
			wantTitle := "Validation failed"
			if slices.Equal(want, []string{"Tenant"}) {
				wantTitle = "Invalid tenant"
			}
			if p.Title != wantTitle || !slices.Equal(keys, want) {
				t.Fatalf("problem %s, want title %q and errors for %v", r.body, wantTitle, want)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	r := e.expect(t, 201, "POST", "/adminconsole/odsInstances", request("District 9 - 2025"))
	if loc := r.header.Get("Location"); loc != "/instances/1" {
		t.Errorf("Location %q, want /instances/1", loc)
	}
	want := adminapi.OdsInstance{
		ID: 1, TenantID: 1, Name: "District 9 - 2025", InstanceType: "enterprise", Status: adminapi.StatusPending,
		OdsInstanceContexts:    []adminapi.OdsInstanceContext{{ID: 1, InstanceID: 1, ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{{ID: 1, InstanceID: 1, DerivativeType: "ReadReplica"}},
	}
	var got adminapi.OdsInstance
	decode(t, r, &got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("created\n%+v\nwant\n%+v", got, want)
	}
	// GET shows the same, with baseUrl null.
	r = e.expect(t, 200, "GET", "/adminconsole/odsInstances/1", nil)
	got = adminapi.OdsInstance{}
	decode(t, r, &got)
	if !reflect.DeepEqual(got, want) || !strings.Contains(string(r.body), `"baseUrl":null`) {
		t.Fatalf("GET %s", r.body)
	}
	// An instance without contexts shows empty arrays, not null.
	req := request("Bare")
	req.OdsInstanceContexts, req.OdsInstanceDerivatives = nil, nil
	r = e.expect(t, 201, "POST", "/adminconsole/odsInstances", req)
	if !strings.Contains(string(r.body), `"odsInstanceContexts":[]`) || !strings.Contains(string(r.body), `"odsInstanceDerivatives":[]`) {
		t.Fatalf("body %s", r.body)
	}
}

func TestCreateInstance(t *testing.T) {
	sim := simulator.New(simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	inst, err := sim.CreateInstance("tenant2", request("A"))
	if err == nil {
		t.Fatal("tenantId 1 with tenant2: no error")
	}
	req := request("A")
	req.TenantID = 2
	if inst, err = sim.CreateInstance("TENANT2", req); err != nil {
		t.Fatal(err)
	}
	if inst.ID != 1 || inst.TenantID != 2 || inst.Status != adminapi.StatusPending {
		t.Fatalf("created %+v", inst)
	}
	rec, ok := sim.Instance(1)
	if !ok || rec.TenantName != "tenant2" || rec.OdsInstanceID != nil || len(rec.Contexts) != 1 {
		t.Fatalf("record %+v", rec)
	}

	tests := []struct {
		name, tenant string
		req          adminapi.InstanceRequest
		wantKey      string
	}{
		{"duplicate name", "tenant2", req, "Name"},
		{"unknown tenant", "tenant9", request("B"), "Tenant"},
		{"no name", "", adminapi.InstanceRequest{}, "Name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.CreateInstance(tt.tenant, tt.req)
			var ae *adminapi.Error
			if !errors.Is(err, adminapi.ErrValidation) || !errors.As(err, &ae) || ae.Problem == nil || len(ae.Problem.Errors[tt.wantKey]) == 0 {
				t.Fatalf("error %v, want a validation error for %s", err, tt.wantKey)
			}
		})
	}
	if n := len(sim.Instances()); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
}

// CreateInstances seeds many requests at once under the rules of one POST:
// names unique in the tenant (case-insensitively, among themselves too),
// all or nothing, each with the status asked for, listed by the worker
// endpoints like any other.
func TestCreateInstances(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	taken, err := sim.CreateInstance("tenant2", withTenant(request("Taken"), 2))
	if err != nil {
		t.Fatal(err)
	}
	batch := func(tenant string, names ...string) []adminapi.InstanceRequest {
		var out []adminapi.InstanceRequest
		for _, n := range names {
			out = append(out, withTenant(request(n), sim.TenantID(tenant)))
		}
		return out
	}
	for _, tt := range []struct {
		name, tenant, status string
		reqs                 []adminapi.InstanceRequest
		wantKey              string
	}{
		{"a name the tenant has", "tenant2", "", batch("tenant2", "A", "TAKEN"), "Name"},
		{"a name twice in the batch", "tenant1", "", batch("tenant1", "A", "B", "a"), "Name"},
		{"an invalid request", "tenant1", "", append(batch("tenant1", "A"), adminapi.InstanceRequest{TenantID: 1, TenantName: "tenant1", Name: "B"}), "InstanceType"},
		{"a tenant that contradicts the header", "tenant1", "", batch("tenant2", "A"), "TenantId"},
		{"an unknown tenant", "tenant9", "", batch("tenant1", "A"), "Tenant"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.CreateInstances(tt.tenant, tt.reqs, tt.status)
			var ae *adminapi.Error
			if !errors.Is(err, adminapi.ErrValidation) || !errors.As(err, &ae) || ae.Problem == nil || len(ae.Problem.Errors[tt.wantKey]) == 0 {
				t.Fatalf("error %v, want a validation error for %s", err, tt.wantKey)
			}
			if n := len(sim.Instances()); n != 1 {
				t.Fatalf("%d instances after a refused batch, want 1", n)
			}
		})
	}
	if _, err := sim.CreateInstances("tenant1", batch("tenant1", "A"), "Exploded"); err == nil {
		t.Fatal("unknown status accepted")
	}

	pending, err := sim.CreateInstances("tenant1", batch("tenant1", "A", "B"), "")
	if err != nil {
		t.Fatal(err)
	}
	done, err := sim.CreateInstances("tenant1", batch("tenant1", "C"), adminapi.StatusCompleted)
	if err != nil {
		t.Fatal(err)
	}
	renames, err := sim.CreateInstances("TENANT2", batch("tenant2", "D", "taken too"), adminapi.StatusPendingRename)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].Status != adminapi.StatusPending || pending[1].ID != pending[0].ID+1 || len(pending[0].OdsInstanceContexts) != 1 {
		t.Fatalf("created %+v", pending)
	}
	if rec, _ := sim.Instance(done[0].ID); rec.Status != adminapi.StatusCompleted || rec.OdsInstanceID == nil {
		t.Fatalf("completed record %+v, want an odsInstanceId", rec)
	}
	// A POST after the batch still sees the batch's names.
	if _, err := sim.CreateInstance("tenant1", withTenant(request("b"), 1)); !errors.Is(err, adminapi.ErrValidation) {
		t.Fatalf("POST of a batch's name: %v, want a validation error", err)
	}

	c, err := adminapi.New(adminapi.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(tenant, status string) []int {
		t.Helper()
		list, err := c.Instances(t.Context(), tenant, status)
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, w := range list {
			out = append(out, w.ID)
		}
		return out
	}
	if got, want := ids("tenant1", ""), []int{pending[0].ID, pending[1].ID, done[0].ID}; !slices.Equal(got, want) {
		t.Fatalf("tenant1 lists %v, want %v", got, want)
	}
	if got, want := ids("tenant2", adminapi.StatusPendingRename), []int{renames[0].ID, renames[1].ID}; !slices.Equal(got, want) {
		t.Fatalf("tenant2's pending renames %v, want %v", got, want)
	}
	if got, want := ids("", adminapi.StatusPending), []int{taken.ID, pending[0].ID, pending[1].ID}; !slices.Equal(got, want) {
		t.Fatalf("pending in every tenant %v, want %v", got, want)
	}
}

func withTenant(req adminapi.InstanceRequest, tenant int) adminapi.InstanceRequest {
	req.TenantID = tenant
	req.TenantName = fmt.Sprintf("tenant%d", tenant)
	return req
}

func TestGetAndListRequests(t *testing.T) {
	e := newEnv(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	if r := e.expect(t, 200, "GET", "/adminconsole/odsInstances", nil); string(r.body) != "[]" {
		t.Fatalf("empty list %s", r.body)
	}
	pending := e.create(t)
	completed := e.instanceIn(t, adminapi.StatusCompleted)
	other := e.createIn(t, 2, "tenant2")

	tests := []struct {
		name    string
		path    string
		opts    []option
		want    int
		wantIDs []int // for lists
	}{
		{"list of the first tenant", "/adminconsole/odsInstances", nil, 200, []int{pending, completed}},
		{"list of tenant2", "/adminconsole/odsInstances", []option{header("Tenant", "tenant2")}, 200, []int{other}},
		{"status filter", "/adminconsole/odsInstances?status=pending", nil, 200, []int{pending}},
		{"status filter, parameter name in another case", "/adminconsole/odsInstances?Status=COMPLETED", nil, 200, []int{completed}},
		{"status filter, nothing matches", "/adminconsole/odsInstances?status=Deleted", nil, 200, []int{}},
		{"get", fmt.Sprintf("/adminconsole/odsInstances/%d", pending), nil, 200, nil},
		{"get in another tenant", fmt.Sprintf("/adminconsole/odsInstances/%d", other), nil, 404, nil},
		{"get with its tenant", fmt.Sprintf("/adminconsole/odsInstances/%d", other), []option{header("Tenant", "TENANT2")}, 200, nil},
		{"get unknown", "/adminconsole/odsInstances/99", nil, 404, nil},
		{"get id 0", "/adminconsole/odsInstances/0", nil, 404, nil},
		{"get id not a number", "/adminconsole/odsInstances/abc", nil, 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.expect(t, tt.want, "GET", tt.path, nil, tt.opts...)
			if tt.wantIDs == nil {
				return
			}
			var list []adminapi.OdsInstance
			decode(t, r, &list)
			ids := []int{}
			for _, in := range list {
				ids = append(ids, in.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Fatalf("ids %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func TestUpdateRequest(t *testing.T) {
	tests := []struct {
		from       string
		rename     bool
		want       int
		wantStatus string
	}{
		{adminapi.StatusPending, true, 204, adminapi.StatusPending},
		{adminapi.StatusInProgress, true, 204, adminapi.StatusInProgress},
		{adminapi.StatusError, true, 204, adminapi.StatusError},
		{adminapi.StatusCompleted, false, 204, adminapi.StatusCompleted},
		{adminapi.StatusCompleted, true, 204, adminapi.StatusPendingRename},
		{adminapi.StatusRenameFailed, true, 204, adminapi.StatusPendingRename},
		{adminapi.StatusRenameFailed, false, 204, adminapi.StatusRenameFailed},
		{adminapi.StatusDeleteFailed, true, 204, adminapi.StatusPendingRename},
		{adminapi.StatusPendingRename, true, 409, adminapi.StatusPendingRename},
		{adminapi.StatusPendingRename, false, 409, adminapi.StatusPendingRename},
		{adminapi.StatusPendingDelete, true, 409, adminapi.StatusPendingDelete},
		{adminapi.StatusPendingDelete, false, 409, adminapi.StatusPendingDelete},
		{adminapi.StatusDeleted, true, 204, adminapi.StatusDeleted},
		{adminapi.StatusDeleted, false, 204, adminapi.StatusDeleted},
	}
	e := newEnv(t, simulator.Options{})
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s rename=%v", tt.from, tt.rename), func(t *testing.T) {
			id := e.instanceIn(t, tt.from)
			before, _ := e.srv.Instance(id)
			req := request(before.Name)
			if tt.rename {
				req.Name += " (new)"
			}
			req.InstanceType = "district"
			req.OdsInstanceContexts = []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2026"}, {ContextKey: "district", ContextValue: "9"}}
			req.OdsInstanceDerivatives = nil
			e.expect(t, tt.want, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), req)
			e.wantStatus(t, id, tt.wantStatus)
			after, _ := e.srv.Instance(id)
			if tt.want != 204 {
				if !reflect.DeepEqual(before, after) {
					t.Fatalf("a refused PUT changed the instance:\n%+v\n%+v", before, after)
				}
				return
			}
			if after.Name != req.Name || after.InstanceType != "district" || len(after.Contexts) != 2 || len(after.Derivatives) != 0 {
				t.Fatalf("after PUT: %+v", after)
			}
			if after.Contexts[1].InstanceID != id || after.Contexts[1].ID == 0 {
				t.Fatalf("contexts %+v", after.Contexts)
			}
		})
	}

	t.Run("refusals", func(t *testing.T) {
		a, b := e.create(t), e.create(t)
		recB, _ := e.srv.Instance(b)
		cases := []struct {
			name string
			id   int
			body any
			opts []option
			want int
		}{
			{"unknown id", 999, request("Whatever"), nil, 404},
			{"id not a number", 0, request("Whatever"), nil, 400},
			{"name of another instance", a, request(recB.Name), nil, 400},
			{"name missing", a, request(""), nil, 400},
			{"invalid JSON", a, `{`, nil, 400},
			{"not JSON", a, `{}`, []option{contentType("text/plain")}, 415},
			{"unknown Tenant header", a, request("X"), []option{header("Tenant", "nope")}, 400},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := fmt.Sprintf("/adminconsole/odsInstances/%d", c.id)
				if c.id == 0 {
					p = "/adminconsole/odsInstances/x"
				}
				e.expect(t, c.want, "PUT", p, c.body, c.opts...)
			})
		}
		// Keeping its own name is not a clash with itself.
		recA, _ := e.srv.Instance(a)
		e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", a), request(recA.Name))
	})
}

func TestDeleteRequest(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	for _, from := range allStatuses {
		t.Run(from, func(t *testing.T) {
			id := e.instanceIn(t, from)
			want, wantStatus := 409, from
			if from == adminapi.StatusCompleted {
				want, wantStatus = 202, adminapi.StatusPendingDelete
			}
			r := e.expect(t, want, "DELETE", fmt.Sprintf("/adminconsole/odsInstances/%d", id), nil)
			e.wantStatus(t, id, wantStatus)
			if want == 409 && problemOf(t, r).Status != 409 {
				t.Fatalf("409 body %s", r.body)
			}
		})
	}
	e.expect(t, 404, "DELETE", "/adminconsole/odsInstances/999", nil)
	e.expect(t, 400, "DELETE", "/adminconsole/odsInstances/x", nil)
}

// GET /v2/odsInstances lists what EdFi_Admin holds: an instance from its
// completion until it is Deleted, under the name it was registered with.
func TestRegisteredInstances(t *testing.T) {
	e := newEnv(t, simulator.Options{Tenants: []string{"tenant1", "tenant2"}})
	type reg struct {
		ID           int    `json:"id"`
		Name         string `json:"name"`
		InstanceType string `json:"instanceType"`
	}
	list := func(t *testing.T, opts ...option) []reg {
		t.Helper()
		var out []reg
		decode(t, e.expect(t, 200, "GET", "/v2/odsInstances", nil, opts...), &out)
		return out
	}
	if r := e.expect(t, 200, "GET", "/v2/odsInstances", nil); string(r.body) != "[]" {
		t.Fatalf("empty list %s", r.body)
	}
	id := e.create(t)
	e.createIn(t, 2, "tenant2")
	if got := list(t); len(got) != 0 {
		t.Fatalf("before completion: %+v", got)
	}
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
	rec, _ := e.srv.Instance(id)
	want := []reg{{ID: *rec.OdsInstanceID, Name: rec.Name, InstanceType: "enterprise"}}
	if got := list(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("after completion: %+v, want %+v", got, want)
	}
	if got := list(t, header("Tenant", "tenant2")); len(got) != 0 {
		t.Fatalf("tenant2: %+v", got)
	}

	req := request(rec.Name + " renamed")
	e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), req)
	if got := list(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("rename pending: %+v, want the old name %+v", got, want)
	}
	e.expect(t, 204, "POST", path(id, "renamed"), conn(pgConn))
	want[0].Name = req.Name
	if got := list(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("renamed: %+v, want %+v", got, want)
	}
	e.expect(t, 202, "DELETE", fmt.Sprintf("/adminconsole/odsInstances/%d", id), nil)
	if got := list(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("delete pending: %+v, want %+v", got, want)
	}
	e.expect(t, 204, "POST", path(id, "deleted"), nil)
	if got := list(t); len(got) != 0 {
		t.Fatalf("deleted: %+v", got)
	}
}
