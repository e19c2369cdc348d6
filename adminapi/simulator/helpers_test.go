package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
)

const (
	pgConn  = "host=127.0.0.1;port=5432;username=postgres;password=secret;database=EdFi_Ods_x"
	sqlConn = "Server=sql1;Database=EdFi_Ods_x;User Id=sa;Password=secret;"
)

// env is one simulator on a real HTTP server, with a token for its client.
type env struct {
	srv   *simulatortest.Server
	token string
	seq   atomic.Int64
}

func newEnv(t *testing.T, opts simulator.Options) *env {
	t.Helper()
	srv := simulatortest.Start(t, opts)
	return &env{srv: srv, token: srv.Token(t)}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

type option func(*http.Request)

func header(k, v string) option     { return func(r *http.Request) { r.Header.Set(k, v) } }
func contentType(ct string) option  { return header("Content-Type", ct) }
func noAuth() option                { return func(r *http.Request) { r.Header.Del("Authorization") } }
func bearer(token string) option    { return header("Authorization", "Bearer "+token) }
func authorization(v string) option { return header("Authorization", v) }

// do sends a request: body nil (none), a string (raw JSON), url.Values (a
// form) or anything else (marshalled to JSON). The bearer token is sent
// unless an option changes it.
func (e *env) do(t *testing.T, method, path string, body any, opts ...option) response {
	t.Helper()
	return e.doCtx(t, t.Context(), method, path, body, opts...)
}

func (e *env) doCtx(t *testing.T, ctx context.Context, method, path string, body any, opts ...option) response {
	t.Helper()
	resp, err := e.send(ctx, method, path, body, opts...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (e *env) send(ctx context.Context, method, path string, body any, opts ...option) (response, error) {
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	for _, o := range opts {
		o(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// expect sends a request and fails the test unless the status is want.
func (e *env) expect(t *testing.T, want int, method, path string, body any, opts ...option) response {
	t.Helper()
	r := e.do(t, method, path, body, opts...)
	if r.status != want {
		t.Fatalf("%s %s: got %s, want %d", method, path, r, want)
	}
	return r
}

func request(name string) adminapi.InstanceRequest {
	return adminapi.InstanceRequest{
		TenantID: 1, TenantName: "default", Name: name, InstanceType: "enterprise",
		OdsInstanceContexts:    []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{{DerivativeType: "ReadReplica"}},
	}
}

// create asks for an instance with a fresh name in the first tenant and
// returns its id.
func (e *env) create(t *testing.T, opts ...option) int {
	t.Helper()
	req := request(fmt.Sprintf("District %d - 2025", e.seq.Add(1)))
	var inst adminapi.OdsInstance
	decode(t, e.expect(t, http.StatusCreated, "POST", "/adminconsole/odsInstances", req, opts...), &inst)
	return inst.ID
}

// createIn asks for an instance with a fresh name in another tenant, named
// in the Tenant header and the body, and returns its id.
func (e *env) createIn(t *testing.T, tenantID int, tenant string) int {
	t.Helper()
	req := request(fmt.Sprintf("District %d - 2025", e.seq.Add(1)))
	req.TenantID, req.TenantName = tenantID, tenant
	var inst adminapi.OdsInstance
	decode(t, e.expect(t, http.StatusCreated, "POST", "/adminconsole/odsInstances", req, header("Tenant", tenant)), &inst)
	return inst.ID
}

func path(id int, action string) string {
	return fmt.Sprintf("/adminconsole/instances/%d/%s", id, action)
}

func conn(cs string) map[string]string { return map[string]string{"connectionString": cs} }

// instanceIn creates an instance and drives it through the lifecycle, over
// HTTP, to status.
func (e *env) instanceIn(t *testing.T, status string) int {
	t.Helper()
	id := e.create(t)
	complete := func() { e.expect(t, 204, "POST", path(id, "completed"), conn(pgConn)) }
	rename := func() {
		rec, _ := e.srv.Instance(id)
		req := request(rec.Name + " renamed")
		req.TenantID = rec.TenantID
		e.expect(t, 204, "PUT", fmt.Sprintf("/adminconsole/odsInstances/%d", id), req)
	}
	del := func() { e.expect(t, 202, "DELETE", fmt.Sprintf("/adminconsole/odsInstances/%d", id), nil) }
	switch status {
	case adminapi.StatusPending:
	case adminapi.StatusInProgress, adminapi.StatusError:
		if err := e.srv.SetStatus(id, status); err != nil {
			t.Fatal(err)
		}
	case adminapi.StatusCompleted:
		complete()
	case adminapi.StatusPendingRename:
		complete()
		rename()
	case adminapi.StatusRenameFailed:
		complete()
		rename()
		e.expect(t, 204, "POST", path(id, "renameFailed"), nil)
	case adminapi.StatusPendingDelete:
		complete()
		del()
	case adminapi.StatusDeleted:
		complete()
		del()
		e.expect(t, 204, "POST", path(id, "deleted"), nil)
	case adminapi.StatusDeleteFailed:
		complete()
		del()
		e.expect(t, 204, "POST", path(id, "deleteFailed"), nil)
	default:
		t.Fatalf("no way to reach status %q", status)
	}
	e.wantStatus(t, id, status)
	return id
}

func (e *env) wantStatus(t *testing.T, id int, want string) {
	t.Helper()
	rec, ok := e.srv.Instance(id)
	if !ok {
		t.Fatalf("instance %d unknown", id)
	}
	if rec.Status != want {
		t.Fatalf("instance %d is %s, want %s", id, rec.Status, want)
	}
}

func decode(t *testing.T, r response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func problemOf(t *testing.T, r response) adminapi.ProblemDetails {
	t.Helper()
	var p adminapi.ProblemDetails
	decode(t, r, &p)
	return p
}

var allStatuses = []string{
	adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusCompleted,
	adminapi.StatusPendingRename, adminapi.StatusRenameFailed, adminapi.StatusPendingDelete,
	adminapi.StatusDeleted, adminapi.StatusDeleteFailed, adminapi.StatusError,
}

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// messages is a slog handler that hands each record's message to a channel,
// so that tests can wait for something the simulator logs.
type messages chan string

func (m messages) Enabled(context.Context, slog.Level) bool { return true }
func (m messages) Handle(_ context.Context, r slog.Record) error {
	select {
	case m <- r.Message:
	default:
	}
	return nil
}
func (m messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m messages) WithGroup(string) slog.Handler      { return m }

func (m messages) waitFor(t *testing.T, msg string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-m:
			if got == msg {
				return
			}
		case <-timeout:
			t.Fatalf("the simulator never logged %q", msg)
		}
	}
}
