package managewrite_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// gate is instancemgr's write routes in front of an Admin API the test
// writes (what a gateway or a misrouted proxy could answer), over an
// EdFi_Admin that holds one Created request, created.
type gate struct {
	*front
	created int
}

// newGate starts the routes with o (Tenants: "default" when none); the
// Admin API is api.
func newGate(t *testing.T, api http.HandlerFunc, o managewrite.ServerOptions) *gate {
	t.Helper()
	db := testenv.FreshAdminDatabase(t)
	admin := testenv.Connect(t, db)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, simulator.ManageSchema); err != nil {
		t.Fatal(err)
	}
	var created int
	if err := admin.QueryRow(ctx, `INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status)
VALUES ('Standing', 'Minimal', 'Created') RETURNING id`).Scan(&created); err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(api)
	t.Cleanup(upstream.Close)
	if len(o.Tenants) == 0 {
		o.Tenants = []string{"default"}
	}
	o.AdminAPI = upstream.URL
	open := func(context.Context, string) (managewrite.DB, error) {
		return managewrite.DB{Conn: postgres.Conn(admin), Statements: managewrite.Postgres}, nil
	}
	srv, err := managewrite.NewServer(managewrite.NewEndpoints(open, nil, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &gate{front: &front{t: t, url: hs.URL, admin: admin}, created: created}
}

// untouched fails the test unless the EdFi_Admin still holds only the
// Created request, Created.
func (g *gate) untouched() {
	g.t.Helper()
	var n int
	var status string
	err := g.admin.QueryRow(context.Background(),
		`SELECT count(*), min(status) FROM adminapi.odsinstancemanages`).Scan(&n, &status)
	if err != nil || n != 1 || status != managerows.Created {
		g.t.Fatalf("a refused call wrote: %d rows, status %q, %v", n, status, err)
	}
}

// adminAPIAnswer is a well-behaved Admin API's 200 to the authorizing GET:
// a JSON array for the collection, the request's object for one.
func adminAPIAnswer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	parts := strings.Split(strings.TrimSuffix(r.URL.Path, "/"), "/")
	if id, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "name": "Standing", "status": "Created"})
		return
	}
	_, _ = w.Write([]byte(`[]`))
}

// A 200 is a yes only when it is the Admin API's answer for the resource:
// a gateway that sends a bad token to its login page (302, then 200 HTML),
// one that answers 200 HTML itself, and a 200 that is JSON but not the
// resource (an object for the collection, another request's id) each
// refuse the POST and the DELETE, and nothing is written; so does another
// success, which relayed would read as the write done.
func TestAuthorizationTakesOnlyTheAdminAPIsYes(t *testing.T) {
	const login = `<html><body><form action="/login">Sign in</form></body></html>`
	html := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(login))
	}
	tests := []struct {
		name       string
		api        http.HandlerFunc
		wantStatus int
		wantBody   string // a part of the body the caller gets
		wantHeader [2]string
	}{
		{
			name: "bad token redirected to a login page",
			api: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/login" {
					html(w)
					return
				}
				http.Redirect(w, r, "/login?returnUrl="+r.URL.Path, http.StatusFound)
			},
			wantStatus: http.StatusFound, wantHeader: [2]string{"Location", "/login?returnUrl="},
		},
		{
			name:       "200 with a login page",
			api:        func(w http.ResponseWriter, _ *http.Request) { html(w) },
			wantStatus: http.StatusBadGateway, wantBody: `not JSON`,
		},
		{
			name:       "204 from a cache",
			api:        func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) },
			wantStatus: http.StatusBadGateway, wantBody: `status 204`,
		},
		{
			name: "200 JSON that is not the resource",
			api: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if strings.HasSuffix(r.URL.Path, "/manage") {
					_, _ = w.Write([]byte(`{"id": 1}`)) // an object where a list is the answer
					return
				}
				_, _ = w.Write([]byte(`{"id": 424242, "name": "Another", "status": "Created"}`))
			},
			wantStatus: http.StatusBadGateway, wantBody: `not the resource`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, tt.api, managewrite.ServerOptions{})
			for _, c := range []struct{ method, path, body string }{
				{http.MethodPost, "/v2/odsInstances/manage", `{"name":"Sneaky","databaseTemplate":"Minimal"}`},
				{http.MethodPost, "/v3/dataStores/manage", `{"name":"Sneaky","databaseTemplate":"Minimal"}`},
				{http.MethodDelete, "/v2/odsInstances/manage/" + strconv.Itoa(g.created), ""},
				{http.MethodDelete, "/v3/dataStores/manage/" + strconv.Itoa(g.created), ""},
			} {
				a := g.call(g.url, c.method, c.path, c.body, "Authorization", "Bearer expired")
				if a.status != tt.wantStatus || !strings.Contains(a.body, tt.wantBody) ||
					tt.wantHeader[0] != "" && !strings.HasPrefix(a.header.Get(tt.wantHeader[0]), tt.wantHeader[1]) {
					t.Errorf("%s %s: %d %q (Location %q); want %d", c.method, c.path, a.status, a.body, a.header.Get("Location"), tt.wantStatus)
				}
			}
			g.untouched()
		})
	}

	// The same routes through an Admin API that says yes as the Admin API
	// does: the checks refuse nothing they should let through.
	g := newGate(t, adminAPIAnswer, managewrite.ServerOptions{})
	if a := g.call(g.url, http.MethodPost, "/v3/dataStores/manage", `{"name":"Fine","databaseTemplate":"Minimal"}`); a.status != http.StatusAccepted {
		t.Fatalf("POST with the Admin API's yes: %d %q", a.status, a.body)
	}
	if a := g.call(g.url, http.MethodDelete, "/v2/odsInstances/manage/"+strconv.Itoa(g.created), ""); a.status != http.StatusNoContent {
		t.Fatalf("DELETE with the Admin API's yes: %d %q", a.status, a.body)
	}
}

// A write without a Tenant header when several tenants are served is
// refused with the Admin API's own 400 (TenantResolverMiddleware), before
// the Admin API is asked, as the Admin API answers it before it reads the
// token; with one tenant the write is that tenant's.
func TestAWriteWithoutTenantNeedsTheOnlyTenant(t *testing.T) {
	var asked atomic.Int32
	api := func(w http.ResponseWriter, r *http.Request) { asked.Add(1); adminAPIAnswer(w, r) }
	several := newGate(t, api, managewrite.ServerOptions{Tenants: []string{"district-a", "district-b"}})
	for _, c := range []struct {
		method, path, body string
		v3                 bool
	}{
		{http.MethodPost, "/v2/odsInstances/manage", `{"name":"Where","databaseTemplate":"Minimal"}`, false},
		{http.MethodPost, "/v3/dataStores/manage", `{"name":"Where","databaseTemplate":"Minimal"}`, true},
		{http.MethodDelete, "/v2/odsInstances/manage/" + strconv.Itoa(several.created), "", false},
	} {
		a := several.call(several.url, c.method, c.path, c.body)
		var body struct {
			Title  string              `json:"title"`
			Errors map[string][]string `json:"errors"`
			Type   string              `json:"type"`
		}
		_ = json.Unmarshal([]byte(a.body), &body)
		if a.status != http.StatusBadRequest || body.Title != "Validation failed" ||
			len(body.Errors["Tenant"]) != 1 || body.Errors["Tenant"][0] != "Tenant header is missing (adminconsole)" ||
			(body.Type == "urn:ed-fi:management-api:bad-request:validation") != c.v3 {
			t.Errorf("%s %s without Tenant, two tenants served: %d %q", c.method, c.path, a.status, a.body)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the Admin API was asked %d times about calls refused for their tenant", n)
	}
	several.untouched()
	if a := several.call(several.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"There","databaseTemplate":"Minimal"}`, "Tenant", "District-B"); a.status != http.StatusAccepted {
		t.Fatalf("POST with a served Tenant: %d %q", a.status, a.body)
	}

	// The one tenant's write is authorized for that tenant: the Admin API
	// lets a GET without Tenant through, and its yes would not be for it.
	var tenantAsked atomic.Value
	one := newGate(t, func(w http.ResponseWriter, r *http.Request) {
		tenantAsked.Store(r.Header.Get("Tenant"))
		adminAPIAnswer(w, r)
	}, managewrite.ServerOptions{Tenants: []string{"district-a"}})
	if a := one.call(one.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"Here","databaseTemplate":"Minimal"}`); a.status != http.StatusAccepted {
		t.Fatalf("POST without Tenant, one tenant served: %d %q", a.status, a.body)
	}
	if got := tenantAsked.Load(); got != "district-a" {
		t.Fatalf("the authorizing GET named tenant %q, want the one the call writes, district-a", got)
	}
}
