package managewrite_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// auditLines are the audit objects of the lines written to b.
func auditLines(t *testing.T, b *testenv.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var l struct {
			Audit map[string]any `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Audit == nil {
			t.Fatalf("not an audit line: %q (%v)", line, err)
		}
		out = append(out, l.Audit)
	}
	return out
}

// Every call to a write route is audited as answered: the client the
// accepted token names (never the token), the caller's address, the route,
// the tenant, the request and its job's id, the status; a refused call too.
// Where the Admin API keeps its own audit table (adminapi.AuditLogs), the
// call it would have recorded gets the same row there.
func TestEveryWriteIsAuditedWithWhoAsked(t *testing.T) {
	var buf testenv.SyncBuffer
	f := newFrontWith(t, false, func(_ *managewrite.Endpoints, o *managewrite.ServerOptions) { o.Audit = audit.New(&buf) })
	if _, err := f.admin.Exec(context.Background(), `CREATE TABLE adminapi.auditlogs (
    id BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY, eventtype VARCHAR(30) NOT NULL, timestamp TIMESTAMP NOT NULL,
    clientid VARCHAR(256), sourceipaddress VARCHAR(45), httpverb VARCHAR(10), httpurl VARCHAR(2048), statuscode INT)`); err != nil {
		t.Fatal(err)
	}
	token := f.api.Token(t)
	a := f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"District One","databaseTemplate":"Minimal"}`, "Authorization", "Bearer "+token)
	if a.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	loc := a.header.Get("Location")
	id, _ := strconv.Atoi(loc[strings.LastIndex(loc, "/")+1:])
	refused := f.call(f.url, http.MethodDelete, "/v2/odsInstances/manage/"+strconv.Itoa(id), "", "Authorization", "Bearer not-a-token")
	if refused.status != http.StatusUnauthorized {
		t.Fatalf("DELETE with a bad token: %d", refused.status)
	}

	lines := auditLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("%d audit lines, want 2", len(lines))
	}
	want := map[string]any{"event": "write", "client_id": f.api.ClientID, "source": "127.0.0.1", "method": "POST", "route": "/v2/odsInstances/manage",
		"tenant": "default", "instance_id": float64(id), "name": "District One", "status": float64(202), "request_id": "create.default.m" + strconv.Itoa(id)}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("the POST's audit %s = %v, want %v (line %v)", k, lines[0][k], v, lines[0])
		}
	}
	if lines[1]["status"] != float64(401) || lines[1]["client_id"] != "" || lines[1]["refusal"] == nil {
		t.Errorf("the refused DELETE's audit line %v", lines[1])
	}
	if strings.Contains(buf.String(), token) || strings.Contains(buf.String(), "not-a-token") {
		t.Fatal("a token reached the audit log")
	}
	var client, verb, url string
	var status int
	if err := f.admin.QueryRow(context.Background(), `SELECT clientid, httpverb, httpurl, statuscode FROM adminapi.auditlogs WHERE eventtype = 'Action'`).Scan(&client, &verb, &url, &status); err != nil ||
		client != f.api.ClientID || verb != "POST" || url != "/v2/odsInstances/manage" || status != 202 {
		t.Fatalf("adminapi.auditlogs has %q %q %q %d (%v)", client, verb, url, status, err)
	}
}

// At the door, a tenant at its instance limit gets Ed-Fi's 400 naming the
// limit, and a tenant or client over its creates a minute gets 429 with
// Retry-After; each is counted, audited, and writes nothing.
func TestLimitsAtTheDoor(t *testing.T) {
	post := func(f *front, name string) answer {
		return f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"`+name+`","databaseTemplate":"Minimal"}`, "Authorization", "Bearer "+f.api.Token(t))
	}
	for _, tc := range []struct {
		name   string
		set    func(*managewrite.Endpoints, *managewrite.ServerOptions)
		status int
		says   string
		limit  string
	}{
		{"instances", func(e *managewrite.Endpoints, _ *managewrite.ServerOptions) { e.InstancesPerTenant = 1 }, http.StatusBadRequest, "limits.instancesPerTenant", "instances"},
		{"tenant rate", func(_ *managewrite.Endpoints, o *managewrite.ServerOptions) { o.TenantRate = limits.NewRate(1) }, http.StatusTooManyRequests, "limits.createsPerMinute", "tenant_rate"},
		// A client over its own rate is refused as such, before it can use
		// up its tenant's rate, which the tenant's other clients share.
		{"client rate", func(_ *managewrite.Endpoints, o *managewrite.ServerOptions) {
			o.ClientRate, o.TenantRate = limits.NewRate(1), limits.NewRate(1)
		},
			http.StatusTooManyRequests, "limits.createsPerMinutePerClient", "client_rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf testenv.SyncBuffer
			refusals := managewrite.NewRefusals(prometheus.NewRegistry())
			f := newFrontWith(t, false, func(e *managewrite.Endpoints, o *managewrite.ServerOptions) {
				tc.set(e, o)
				o.Audit, o.Refusals = audit.New(&buf), refusals
			})
			if a := post(f, "First"); a.status != http.StatusAccepted {
				t.Fatalf("the first POST: %d %s", a.status, a.body)
			}
			a := post(f, "Second")
			if a.status != tc.status || !strings.Contains(a.body, tc.says) {
				t.Fatalf("the second POST: %d %s; want %d naming %s", a.status, a.body, tc.status, tc.says)
			}
			if tc.status == http.StatusTooManyRequests {
				if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
					t.Fatalf("Retry-After %q", a.header.Get("Retry-After"))
				}
			}
			if n := f.rows(); n != 1 {
				t.Fatalf("%d rows, want the first only", n)
			}
			if n := testutil.ToFloat64(refusals.WithLabelValues(tc.limit)); n != 1 {
				t.Fatalf("refusals{limit=%q} = %v, want 1", tc.limit, n)
			}
			lines := auditLines(t, &buf)
			if last := lines[len(lines)-1]; last["status"] != float64(tc.status) || !strings.Contains(last["refusal"].(string), tc.says) {
				t.Fatalf("the refusal's audit line %v", last)
			}
		})
	}
}
