package simulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
)

func TestFaultStatusTimes(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	id := e.create(t)
	other := e.create(t)
	e.srv.InjectFault(simulator.Fault{Method: "post", Path: "/AdminConsole/Instances/*/Completed", Status: 503, Times: 2})

	// Other methods and paths are untouched.
	e.expect(t, 200, "GET", fmt.Sprintf("/adminconsole/instances/%d", id), nil)
	e.expect(t, 409, "POST", path(other, "renamefailed"), nil) // handled, not faulted
	for i := range 2 {
		r := e.expect(t, 503, "POST", path(id, "completed"), conn(pgConn))
		if p := problemOf(t, r); p.Status != 503 {
			t.Fatalf("fault body %s", r.body)
		}
		e.wantStatus(t, id, adminapi.StatusPending)
		if rec, _ := e.srv.Instance(id); rec.Calls["completed"] != i+1 {
			t.Fatalf("calls %v after %d faulted calls", rec.Calls, i+1)
		}
	}
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
	e.expect(t, 204, "POST", path(other, "completed"), conn(pgConn))
	if rec, _ := e.srv.Instance(id); rec.Calls["completed"] != 3 || rec.Status != adminapi.StatusCompleted {
		t.Fatalf("record %+v", rec)
	}
}

func TestFaultUntilCleared(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/*", Status: 500})
	for range 5 {
		e.expect(t, 500, "GET", "/adminconsole/tenants", nil)
	}
	e.expect(t, 200, "GET", "/v2/odsInstances", nil)
	// Faults come before authentication: a gateway in front fails first.
	e.expect(t, 500, "GET", "/adminconsole/tenants", nil, noAuth())
	e.srv.ClearFaults()
	e.expect(t, 200, "GET", "/adminconsole/tenants", nil)
}

// The first fault that matches and is selected applies, and only it
// consumes a time.
func TestFaultOrder(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Status: 502, Times: 1})
	e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Status: 504, Times: 1})
	for _, want := range []int{502, 504, 200} {
		e.expect(t, want, "GET", "/adminconsole/tenants", nil)
	}
}

func TestFaultShareIsSeeded(t *testing.T) {
	pattern := func(seed uint64) string {
		e := newEnv(t, simulator.Options{FaultSeed: seed})
		e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Status: 503, Share: 0.3})
		var b strings.Builder
		for range 200 {
			if e.do(t, "GET", "/adminconsole/tenants", nil).status == 503 {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b, c := pattern(42), pattern(42), pattern(43)
	if a != b {
		t.Fatalf("same seed, different faults:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, same faults:\n%s", a)
	}
	if n := strings.Count(a, "x"); n < 30 || n > 90 {
		t.Fatalf("%d of 200 calls faulted with share 0.3:\n%s", n, a)
	}

	// Times counts the calls a shared fault applies to, not the ones it skips.
	e := newEnv(t, simulator.Options{FaultSeed: 42})
	e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Status: 503, Share: 0.3, Times: 5})
	faulted := 0
	for range 200 {
		if e.do(t, "GET", "/adminconsole/tenants", nil).status == 503 {
			faulted++
		}
	}
	if faulted != 5 {
		t.Fatalf("%d calls faulted, want Times=5", faulted)
	}
}

func TestFaultDelay(t *testing.T) {
	t.Run("then handled", func(t *testing.T) {
		e := newEnv(t, simulator.Options{})
		e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Delay: 30 * time.Millisecond, Times: 1})
		start := time.Now()
		e.expect(t, 200, "GET", "/adminconsole/tenants", nil)
		if elapsed := time.Since(start); elapsed < 30*time.Millisecond {
			t.Fatalf("answered after %s, before the delay", elapsed)
		}
	})
	t.Run("then a status", func(t *testing.T) {
		e := newEnv(t, simulator.Options{})
		e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/tenants", Delay: time.Millisecond, Status: 429, Times: 1})
		e.expect(t, 429, "GET", "/adminconsole/tenants", nil)
		e.expect(t, 200, "GET", "/adminconsole/tenants", nil)
	})
	t.Run("cut short by the caller", func(t *testing.T) {
		logged := make(messages, 100)
		e := newEnv(t, simulator.Options{Logger: slog.New(logged)})
		id := e.create(t)
		e.srv.InjectFault(simulator.Fault{Path: "/adminconsole/instances/*/completed", Delay: time.Hour})
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := e.send(ctx, "POST", path(id, "completed"), conn(pgConn))
			errc <- err
		}()
		logged.waitFor(t, "fault applies")
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		// The handler gives up on the delay instead of sleeping for an hour
		// (the server's Close at cleanup would wait for it).
		logged.waitFor(t, "fault delay cut short by the caller")
		e.wantStatus(t, id, adminapi.StatusPending)
	})
}

func TestFaultDrop(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	id := e.create(t)
	e.srv.InjectFault(simulator.Fault{Method: "POST", Path: "/adminconsole/instances/*/completed", Drop: true, Times: 1})
	r, err := e.send(t.Context(), "POST", path(id, "completed"), conn(pgConn))
	if err == nil {
		t.Fatalf("dropped call answered %s", r)
	}
	rec, _ := e.srv.Instance(id)
	if rec.Calls["completed"] != 1 || rec.Status != adminapi.StatusPending {
		t.Fatalf("after a dropped call: %+v", rec)
	}
	e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn))
}

func TestInjectFaultPanicsOnMalformedFault(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	for _, f := range []simulator.Fault{
		{Path: "adminconsole/tenants"},
		{Path: "/x", Status: 42},
		{Path: "/x", Status: 503, Drop: true},
		{Path: "/x", Delay: -time.Second},
		{Path: "/x", Times: -1},
		{Path: "/x", Share: 1.5},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			sim.InjectFault(f)
		})
	}
}

func TestFaultEndpoints(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	plan := func(t *testing.T) []simulator.Fault {
		t.Helper()
		var fs []simulator.Fault
		decode(t, e.expect(t, 200, "GET", "/_simulator/faults", nil, noAuth()), &fs)
		return fs
	}
	body := `[
		{"method": "get", "path": "/adminconsole/tenants", "status": 500, "times": 1},
		{"path": "/v2/*", "delay": 5},
		{"path": "/adminconsole/instances/*/completed", "status": 503, "delay": "1ms", "share": 0.5}
	]`
	e.expect(t, 204, "POST", "/_simulator/faults", body, noAuth())
	got := plan(t)
	want := []simulator.Fault{
		{Method: "GET", Path: "/adminconsole/tenants", Status: 500, Times: 1},
		{Path: "/v2/*", Delay: 5 * time.Millisecond},
		{Path: "/adminconsole/instances/*/completed", Status: 503, Delay: time.Millisecond, Share: 0.5},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("plan %+v, want %+v", got, want)
	}
	raw := e.expect(t, 200, "GET", "/_SIMULATOR/FAULTS", nil, noAuth())
	if !strings.Contains(string(raw.body), `"delay":"5ms"`) {
		t.Errorf("plan JSON %s: delay should read as a duration", raw.body)
	}
	e.expect(t, 500, "GET", "/adminconsole/tenants", nil)
	e.expect(t, 200, "GET", "/adminconsole/tenants", nil)
	if n := len(plan(t)); n != 2 {
		t.Fatalf("%d faults left, want 2 (the first was used up)", n)
	}
	e.expect(t, 204, "DELETE", "/_simulator/faults", nil, noAuth())
	if n := len(plan(t)); n != 0 {
		t.Fatalf("%d faults after DELETE", n)
	}

	bad := []struct {
		name, body string
		wantKey    string
	}{
		{"not an array", `{"path": "/x"}`, ""},
		{"invalid JSON", `[{"path": "/x"`, ""},
		{"unknown field", `[{"path": "/x", "statuss": 503}]`, ""},
		{"bad delay string", `[{"path": "/x", "delay": "soon"}]`, ""},
		{"bad delay type", `[{"path": "/x", "delay": true}]`, ""},
		{"relative path", `[{"path": "/ok"}, {"path": "x"}]`, "[1].path"},
		{"share above 1", `[{"path": "/x", "share": 2}]`, "[0].share"},
		{"drop with status", `[{"path": "/x", "drop": true, "status": 503}]`, "[0].drop"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := e.expect(t, 400, "POST", "/_simulator/faults", tt.body, noAuth())
			if tt.wantKey != "" {
				if p := problemOf(t, r); len(p.Errors[tt.wantKey]) == 0 {
					t.Fatalf("problem %s, want an error for %s", r.body, tt.wantKey)
				}
			}
			if n := len(plan(t)); n != 0 {
				t.Fatalf("a refused plan left %d faults", n)
			}
		})
	}
	e.expect(t, 405, "PUT", "/_simulator/faults", "[]", noAuth())

	// Faults never apply to the fault endpoint itself.
	e.srv.InjectFault(simulator.Fault{Path: "/*/*", Status: 503})
	e.expect(t, 503, "GET", "/adminconsole/tenants", nil)
	e.expect(t, 204, "DELETE", "/_simulator/faults", nil, noAuth())
	e.expect(t, 200, "GET", "/adminconsole/tenants", nil)
}

func TestFaultJSONRoundTrip(t *testing.T) {
	f := simulator.Fault{Method: "POST", Path: "/a/*", Status: 503, Delay: 1500 * time.Millisecond, Drop: false, Times: 2, Share: 0.25}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back simulator.Fault
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != f {
		t.Fatalf("%s read back as %+v", b, back)
	}
	if err := json.Unmarshal([]byte(`{"path": "/a", "delay": 2.5}`), &back); err != nil || back.Delay != 2500*time.Microsecond {
		t.Fatalf("milliseconds: %+v, %v", back, err)
	}
}

// An operator's status change reaches a simulator in another process over
// HTTP; an unknown status or instance is refused and changes nothing.
func TestSetStatusEndpoint(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	in, err := sim.CreateInstance("default", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Fixed", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	post := func(path, body string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	path := fmt.Sprintf("/_simulator/instances/%d/status", in.ID)
	if code := post(path, `{"status": "Delete_Failed"}`); code != http.StatusNoContent {
		t.Fatalf("set status: %d", code)
	}
	if rec, _ := sim.Instance(in.ID); rec.Status != adminapi.StatusDeleteFailed {
		t.Fatalf("status %s", rec.Status)
	}
	for _, bad := range []struct{ path, body string }{
		{path, `{"status": "Nonsense"}`},
		{path, `{"state": "Completed"}`},
		{"/_simulator/instances/999/status", `{"status": "Completed"}`},
	} {
		if code := post(bad.path, bad.body); code != http.StatusBadRequest {
			t.Errorf("%s %s: %d, want 400", bad.path, bad.body, code)
		}
	}
	if rec, _ := sim.Instance(in.ID); rec.Status != adminapi.StatusDeleteFailed {
		t.Fatalf("a refused change changed the status to %s", rec.Status)
	}
}

func TestInstancesInspectionEndpoint(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	if _, err := sim.CreateInstance("default", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Seen", InstanceType: "enterprise"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/_simulator/instances")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []simulator.InstanceState
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || len(recs) != 1 || recs[0].Name != "Seen" || recs[0].Status != adminapi.StatusPending {
		t.Fatalf("status %d, records %+v", resp.StatusCode, recs)
	}
}
