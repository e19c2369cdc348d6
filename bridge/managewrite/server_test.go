package managewrite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// front is instancemgr's write routes in front of an Admin API (the
// simulator, serving the same EdFi_Admin) that authorizes each call, as a
// reverse proxy would put them.
type front struct {
	t     *testing.T
	url   string // instancemgr's write routes
	api   *simulatortest.Server
	admin *pgxpool.Pool
}

func newFront(t *testing.T, disabled bool) *front {
	t.Helper()
	return newFrontWith(t, disabled, nil)
}

// newFrontWith is newFront with its options set by with (nil: none).
func newFrontWith(t *testing.T, disabled bool, with func(*managewrite.Endpoints, *managewrite.ServerOptions)) *front {
	t.Helper()
	db := testenv.FreshAdminDatabase(t)
	admin := testenv.Connect(t, db)
	if _, err := admin.Exec(context.Background(), simulator.ManageSchema); err != nil {
		t.Fatal(err)
	}
	api := simulatortest.Start(t, simulator.Options{Tenants: []string{"default", "unmapped"}, Manage: true, ManageDisabled: disabled,
		AdminDatabases: map[string]string{"*": testenv.ConnString(t, db)}})
	open := func(context.Context, string) (managewrite.DB, error) {
		return managewrite.DB{Conn: postgres.Conn(admin), Statements: managewrite.Postgres}, nil
	}
	endpoints, opts := managewrite.NewEndpoints(open, nil, nil), managewrite.ServerOptions{AdminAPI: api.URL, Tenants: []string{"default"}}
	if with != nil {
		with(endpoints, &opts)
	}
	srv, err := managewrite.NewServer(endpoints, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &front{t: t, url: hs.URL, api: api, admin: admin}
}

type answer struct {
	status int
	header http.Header
	body   string
}

// call sends method path with body (JSON, "" for none) and headers to
// base.
func (f *front) call(base, method, path, body string, headers ...string) answer {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := managewrite.NoRedirects(nil).Do(req) // a redirect is an answer to check
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (f *front) rows() int {
	f.t.Helper()
	var n int
	if err := f.admin.QueryRow(context.Background(), `SELECT count(*) FROM adminapi.odsinstancemanages`).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// POST and DELETE through instancemgr, authorized by the Admin API: a
// caller without a token or with a bad one gets the Admin API's own 401
// and nothing is written; a valid request becomes a PendingCreate row the
// Admin API's GET shows; validation is Ed-Fi's; a delete moves only a
// Created row and an unknown id is the Admin API's 404.
func TestServerWritesWhatTheAdminAPIAuthorizes(t *testing.T) {
	f := newFront(t, false)
	bearer := "Bearer " + f.api.Token(t)
	for _, auth := range []string{"", "Bearer not-a-token"} {
		a := f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"District One","databaseTemplate":"Minimal"}`, "Authorization", auth)
		direct := f.call(f.api.URL, http.MethodGet, "/v2/odsInstances/manage", "", "Authorization", auth)
		if a.status != http.StatusUnauthorized || a.status != direct.status || a.body != direct.body {
			t.Fatalf("POST with %q: %d %q; the Admin API answers %d %q", auth, a.status, a.body, direct.status, direct.body)
		}
	}
	if n := f.rows(); n != 0 {
		t.Fatalf("%d rows written for unauthorized calls", n)
	}

	for _, v := range []struct{ base, location string }{
		{"/v2/odsInstances/manage", "/odsinstances/manage/"},
		{"/V3/DataStores/Manage/", "/v3/dataStores/manage/"},
	} {
		a := f.call(f.url, http.MethodPost, v.base, `{"name":"District `+v.base[1:3]+`","databaseTemplate":"Sample"}`, "Authorization", bearer)
		loc := a.header.Get("Location")
		id, err := strconv.Atoi(loc[strings.LastIndex(loc, "/")+1:])
		if a.status != http.StatusAccepted || err != nil || !strings.Contains(loc, v.location) {
			t.Fatalf("POST %s: %d, Location %q, body %q", v.base, a.status, loc, a.body)
		}
		got := f.call(f.api.URL, http.MethodGet, "/v2/odsInstances/manage/"+strconv.Itoa(id), "", "Authorization", bearer)
		var row struct{ Name, Status, DatabaseTemplate string }
		if err := json.Unmarshal([]byte(got.body), &row); err != nil || row.Status != managerows.PendingCreate || row.DatabaseTemplate != "Sample" {
			t.Fatalf("the Admin API reads request %d as %d %q", id, got.status, got.body)
		}
	}

	bad := f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"District-9","databaseTemplate":"Tiny"}`, "Authorization", bearer)
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "may only contain letters, numbers, spaces, and underscores") ||
		!strings.Contains(bad.body, "'Tiny' is not a valid database template") {
		t.Fatalf("invalid POST: %d %q", bad.status, bad.body)
	}
	taken := f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":" District v2 ","databaseTemplate":"Minimal"}`, "Authorization", bearer)
	if taken.status != http.StatusBadRequest || !strings.Contains(taken.body, "An OdsInstanceManage named 'District v2' already exists.") {
		t.Fatalf("POST of a name taken: %d %q", taken.status, taken.body)
	}

	var id int
	if err := f.admin.QueryRow(context.Background(), `SELECT id FROM adminapi.odsinstancemanages WHERE name = 'District v2'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	path := "/v2/odsInstances/manage/" + strconv.Itoa(id)
	if a := f.call(f.url, http.MethodDelete, path, "", "Authorization", bearer); a.status != http.StatusBadRequest || !strings.Contains(a.body, "is being provisioned") {
		t.Fatalf("DELETE of a PendingCreate request: %d %q", a.status, a.body)
	}
	if _, err := f.admin.Exec(context.Background(), `UPDATE adminapi.odsinstancemanages SET status = 'Created' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if a := f.call(f.url, http.MethodDelete, path, "", "Authorization", "Bearer not-a-token"); a.status != http.StatusUnauthorized {
		t.Fatalf("DELETE without a valid token: %d", a.status)
	}
	if a := f.call(f.url, http.MethodDelete, path, "", "Authorization", bearer); a.status != http.StatusNoContent {
		t.Fatalf("DELETE of a Created request: %d %q", a.status, a.body)
	}
	var status string
	if err := f.admin.QueryRow(context.Background(), `SELECT status FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status); err != nil || status != managerows.PendingDelete {
		t.Fatalf("after DELETE: %s, %v", status, err)
	}
	missing := f.call(f.url, http.MethodDelete, "/v3/dataStores/manage/999", "", "Authorization", bearer)
	direct := f.call(f.api.URL, http.MethodGet, "/v3/dataStores/manage/999", "", "Authorization", bearer)
	if missing.status != http.StatusNotFound || missing.body != direct.body {
		t.Fatalf("DELETE of an unknown id: %d %q; the Admin API: %q", missing.status, missing.body, direct.body)
	}
	if a := f.call(f.url, http.MethodGet, "/v2/odsInstances/manage", "", "Authorization", bearer); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET of instancemgr's write routes: %d, want 405 (the proxy sends GETs to the Admin API)", a.status)
	}
}

// The Admin API's switches and failures reach the caller: the feature
// flag's 400, a tenant instancemgr has no entry for (503, a deployment
// error), and an Admin API that cannot be reached (502); none writes a row.
func TestServerRefusesWhatItCannotAuthorize(t *testing.T) {
	off := newFront(t, true)
	a := off.call(off.url, http.MethodPost, "/v3/dataStores/manage", `{"name":"Nope","databaseTemplate":"Minimal"}`, "Authorization", "Bearer "+off.api.Token(t))
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "This endpoint has been disabled on application settings.") {
		t.Fatalf("POST with the feature off: %d %q", a.status, a.body)
	}

	f := newFront(t, false)
	bearer := "Bearer " + f.api.Token(t)
	a = f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"Elsewhere","databaseTemplate":"Minimal"}`, "Authorization", bearer, "Tenant", "unmapped")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, `tenant \"unmapped\"`) {
		t.Fatalf("POST for a tenant instancemgr does not serve: %d %q", a.status, a.body)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	srv, err := managewrite.NewServer(managewrite.NewEndpoints(func(context.Context, string) (managewrite.DB, error) {
		return managewrite.DB{Conn: postgres.Conn(f.admin), Statements: managewrite.Postgres}, nil
	}, nil, nil), managewrite.ServerOptions{AdminAPI: gone, Tenants: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	if a := f.call(hs.URL, http.MethodPost, "/v2/odsInstances/manage", `{"name":"Lost","databaseTemplate":"Minimal"}`, "Authorization", bearer); a.status != http.StatusBadGateway {
		t.Fatalf("POST with the Admin API down: %d %q", a.status, a.body)
	}
	if n := off.rows() + f.rows(); n != 0 {
		t.Fatalf("%d rows written by refused calls", n)
	}
	if _, err := managewrite.NewServer(nil, managewrite.ServerOptions{AdminAPI: "ftp://admin"}); err == nil {
		t.Fatal("an Admin API URL that is not http(s) was accepted")
	}
}

// publisher records the publishes asked for, each with the request's
// status as another connection reads it then, and holds each until the
// test lets it go.
type publisher struct {
	admin *pgxpool.Pool
	asked chan string
	hold  chan struct{}
}

func (p *publisher) Publish(ctx context.Context, tenant string, id int, op jobs.Operation) {
	var status string
	if err := p.admin.QueryRow(ctx, `SELECT status FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status); err != nil {
		status = err.Error()
	}
	p.asked <- fmt.Sprintf("%s %s %d %s", op, tenant, id, status)
	<-p.hold
}

// A request written is published at once, once its row has committed and
// after the caller has its answer (the publish held, the 202 and the 204
// arrive); a refused call publishes nothing.
func TestServerPublishesWhatItWrote(t *testing.T) {
	p := &publisher{asked: make(chan string, 10), hold: make(chan struct{})}
	f := newFrontWith(t, false, func(_ *managewrite.Endpoints, o *managewrite.ServerOptions) { o.Publisher = p })
	p.admin = f.admin
	bearer := "Bearer " + f.api.Token(t)
	next := func(want string) {
		t.Helper()
		select {
		case got := <-p.asked:
			if got != want {
				t.Fatalf("publish asked: %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no publish asked; want %q", want)
		}
	}

	a := f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"Quick","databaseTemplate":"Minimal"}`, "Authorization", bearer)
	loc := a.header.Get("Location")
	id, _ := strconv.Atoi(loc[strings.LastIndex(loc, "/")+1:])
	if a.status != http.StatusAccepted || id == 0 {
		t.Fatalf("POST: %d %q", a.status, a.body)
	}
	next(fmt.Sprintf("create default %d %s", id, managerows.PendingCreate))
	p.hold <- struct{}{}

	if a := f.call(f.url, http.MethodPost, "/v2/odsInstances/manage", `{"name":"Quick","databaseTemplate":"Minimal"}`, "Authorization", bearer); a.status != http.StatusBadRequest {
		t.Fatalf("POST of a name taken: %d %q", a.status, a.body)
	}
	if _, err := f.admin.Exec(context.Background(), `UPDATE adminapi.odsinstancemanages SET status = 'Created' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if a := f.call(f.url, http.MethodDelete, "/v3/dataStores/manage/"+strconv.Itoa(id), "", "Authorization", bearer); a.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %q", a.status, a.body)
	}
	next(fmt.Sprintf("delete default %d %s", id, managerows.PendingDelete))
	p.hold <- struct{}{}
	if a := f.call(f.url, http.MethodDelete, "/v3/dataStores/manage/"+strconv.Itoa(id), "", "Authorization", bearer); a.status != http.StatusBadRequest {
		t.Fatalf("second DELETE: %d %q", a.status, a.body)
	}
	select {
	case got := <-p.asked:
		t.Fatalf("a refused call asked for a publish: %q", got)
	default:
	}
}
