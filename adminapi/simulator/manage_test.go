package simulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// manageEnv is a simulator serving the manage routes on an EdFi_Admin of
// its own, and that EdFi_Admin, where an executor would move the rows.
func manageEnv(t *testing.T, disabled bool) (*env, *pgxpool.Pool) {
	t.Helper()
	db := testenv.FreshAdminDatabase(t)
	e := newEnv(t, simulator.Options{Manage: true, ManageDisabled: disabled, AdminDatabases: map[string]string{"*": testenv.ConnString(t, db)}})
	t.Cleanup(e.srv.Close)
	return e, testenv.Connect(t, db)
}

// errorsOf reads the field errors of a 400, in either version's body.
func errorsOf(t *testing.T, r response) map[string][]string {
	t.Helper()
	var body struct {
		Type   string              `json:"type"`
		Errors map[string][]string `json:"errors"`
	}
	decode(t, r, &body)
	return body.Errors
}

// The manage routes of both versions, on the same rows, as
// docs/adminapi-newest.md describes them: validation and its messages,
// 202 with the Location each version gives, the row PendingCreate with no
// database name yet, deletes only from Created, 404 for a row deleted.
func TestManageRoutes(t *testing.T) {
	e, admin := manageEnv(t, false)
	ctx := context.Background()
	set := func(id int, status string) {
		t.Helper()
		if _, err := admin.Exec(ctx, `UPDATE adminapi.odsinstancemanages SET status = $2 WHERE id = $1`, id, status); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []struct {
		version, base, idField, noun, location string
	}{
		{"v2", "/v2/odsInstances/manage", "odsInstanceId", "OdsInstanceManage", "/odsinstances/manage/"},
		{"v3", "/v3/dataStores/manage", "dataStoreId", "DataStoreManage", e.srv.URL + "/v3/dataStores/manage/"},
	} {
		t.Run(v.version, func(t *testing.T) {
			name := "My DB Instance " + v.version
			r := e.expect(t, http.StatusAccepted, http.MethodPost, v.base, map[string]string{"name": name, "databaseTemplate": "Minimal"})
			loc := r.header.Get("Location")
			if !strings.HasPrefix(loc, v.location) || len(r.body) != 0 {
				t.Fatalf("Location %q, body %q; want %s{id} and no body", loc, r.body, v.location)
			}
			var id int
			if _, err := fmt.Sscanf(loc[len(v.location):], "%d", &id); err != nil {
				t.Fatal(err)
			}
			var row map[string]any
			decode(t, e.expect(t, http.StatusOK, http.MethodGet, fmt.Sprintf("%s/%d", v.base, id), nil), &row)
			if row["status"] != simulator.ManagePendingCreate || row["name"] != name || row["databaseName"] != nil || row["databaseTemplate"] != "Minimal" {
				t.Fatalf("row %v", row)
			}
			if _, ok := row[v.idField]; !ok {
				t.Fatalf("row %v has no %s", row, v.idField)
			}

			bad := []struct {
				body  map[string]string
				field string
				says  string
			}{
				{map[string]string{"name": "", "databaseTemplate": ""}, "Name", "'Name' must not be empty."},
				{map[string]string{"name": "", "databaseTemplate": ""}, "DatabaseTemplate", "'Database Template' must not be empty."},
				{map[string]string{"name": "with-invalid.characters", "databaseTemplate": "Minimal"}, "Name", "may only contain letters, numbers, spaces, and underscores"},
				{map[string]string{"name": "This Instance Name Is Too Long And Must Be Rejected", "databaseTemplate": "Minimal"}, "Name", "must be 46 characters or fewer"},
				{map[string]string{"name": "Fine", "databaseTemplate": "InvalidTemplate"}, "DatabaseTemplate", "'InvalidTemplate' is not a valid database template. Allowed values are: Minimal, Sample."},
				{map[string]string{"name": name, "databaseTemplate": "Sample"}, "Name", fmt.Sprintf("%s named '%s' already exists.", v.noun, name)},
			}
			for _, b := range bad {
				r := e.expect(t, http.StatusBadRequest, http.MethodPost, v.base, b.body)
				if got := strings.Join(errorsOf(t, r)[b.field], " "); !strings.Contains(got, b.says) {
					t.Errorf("%v: %s errors %q, want %q (%s)", b.body, b.field, got, b.says, r)
				}
			}

			// Deletes: refused while pending, accepted from Created, refused
			// again once queued, 404 once Deleted.
			del := fmt.Sprintf("%s/%d", v.base, id)
			r = e.expect(t, http.StatusBadRequest, http.MethodDelete, del, nil)
			if got := errorsOf(t, r)["id"]; len(got) != 1 || got[0] != v.noun+" is being provisioned. Wait for creation to complete." {
				t.Fatalf("delete of a pending row: %s", r)
			}
			set(id, simulator.ManageCreated)
			e.expect(t, http.StatusNoContent, http.MethodDelete, del, nil)
			decode(t, e.expect(t, http.StatusOK, http.MethodGet, del, nil), &row)
			if row["status"] != simulator.ManagePendingDelete {
				t.Fatalf("after delete: %v", row)
			}
			e.expect(t, http.StatusBadRequest, http.MethodDelete, del, nil)
			set(id, simulator.ManageDeleted)
			e.expect(t, http.StatusNotFound, http.MethodDelete, del, nil)
			// A deleted row's name may be asked for again.
			e.expect(t, http.StatusAccepted, http.MethodPost, v.base, map[string]string{"name": name, "databaseTemplate": "Sample"})
		})
	}

	// One table behind both versions; the list filters by name and pages.
	var list []map[string]any
	decode(t, e.expect(t, http.StatusOK, http.MethodGet, "/v3/dataStores/manage?offset=0&limit=100", nil), &list)
	if len(list) != 4 {
		t.Fatalf("v3 lists %d rows, want the 4 both versions made", len(list))
	}
	decode(t, e.expect(t, http.StatusOK, http.MethodGet, "/v2/odsInstances/manage?name=My%20DB%20Instance%20v3", nil), &list)
	if len(list) != 2 {
		t.Fatalf("by name: %d rows", len(list))
	}
	decode(t, e.expect(t, http.StatusOK, http.MethodGet, "/v2/odsInstances/manage?offset=1&limit=1", nil), &list)
	if len(list) != 1 || list[0]["id"].(float64) != 2 {
		t.Fatalf("page: %v", list)
	}
	r := e.expect(t, http.StatusNotFound, http.MethodGet, "/v3/dataStores/manage/999", nil)
	var nf struct{ Type, Title string }
	if err := json.Unmarshal(r.body, &nf); err != nil || nf.Type != "urn:ed-fi:management-api:not-found" || nf.Title != "Not found: dataStoreManage with ID 999. It may have been recently deleted." {
		t.Fatalf("v3 not found: %s", r)
	}
	// An OdsInstance of the name, registered some other way, is taken too.
	if _, err := admin.Exec(ctx, `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ('Registered', 'enterprise', 'x')`); err != nil {
		t.Fatal(err)
	}
	r = e.expect(t, http.StatusBadRequest, http.MethodPost, "/v3/dataStores/manage", map[string]string{"name": "Registered", "databaseTemplate": "Minimal"})
	if got := errorsOf(t, r)["Name"]; len(got) != 1 || got[0] != "A DataStore named 'Registered' already exists." {
		t.Fatalf("a registered name: %s", r)
	}
}

// With EnableDataStoreManagement off, every manage route of both versions
// answers 400 saying so, under each version's key, and writes nothing.
func TestManageDisabled(t *testing.T) {
	e, admin := manageEnv(t, true)
	for _, c := range []struct{ method, path, key string }{
		{http.MethodPost, "/v2/odsInstances/manage", "OdsInstance"},
		{http.MethodGet, "/v2/odsInstances/manage", "OdsInstance"},
		{http.MethodGet, "/v2/odsInstances/manage/1", "OdsInstance"},
		{http.MethodDelete, "/v2/odsInstances/manage/1", "OdsInstance"},
		{http.MethodPost, "/v3/dataStores/manage", "dataStore"},
		{http.MethodGet, "/v3/dataStores/manage", "dataStore"},
		{http.MethodGet, "/v3/dataStores/manage/1", "dataStore"},
		{http.MethodDelete, "/v3/dataStores/manage/1", "dataStore"},
	} {
		var body any
		if c.method == http.MethodPost {
			body = map[string]string{"name": "Off", "databaseTemplate": "Minimal"}
		}
		r := e.expect(t, http.StatusBadRequest, c.method, c.path, body)
		if got := errorsOf(t, r)[c.key]; len(got) != 1 || got[0] != "This endpoint has been disabled on application settings." {
			t.Errorf("%s %s: %s", c.method, c.path, r)
		}
	}
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'adminapi'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a disabled simulator touched EdFi_Admin: %d tables, %v", n, err)
	}
}

// The create validator is FluentValidation's: every failing rule of a
// property is reported (an empty name is empty and not of the pattern),
// the pattern's $ is .NET's (a final line feed matches, and the stored
// name is trimmed), and a missing template is reported as the empty
// value it binds to. A delete of a row in a status Ed-Fi does not know
// is the command's 404; the v2 not-found body is only a title. A body
// that cannot be bound is refused before the flag is read.
func TestManageAnswersAsEdFiDoes(t *testing.T) {
	e, admin := manageEnv(t, false)
	ctx := context.Background()
	for _, c := range []struct {
		body  map[string]any
		field string
		want  []string
	}{
		{map[string]any{"name": "", "databaseTemplate": "Minimal"}, "Name",
			[]string{"'Name' must not be empty.", "'Name' may only contain letters, numbers, spaces, and underscores."}},
		{map[string]any{"name": "Fine"}, "DatabaseTemplate",
			[]string{"'Database Template' must not be empty.", "'' is not a valid database template. Allowed values are: Minimal, Sample."}},
		{map[string]any{"name": "Fine", "databaseTemplate": "minimal"}, "DatabaseTemplate",
			[]string{"'minimal' is not a valid database template. Allowed values are: Minimal, Sample."}},
		{map[string]any{"name": strings.Repeat("x", 47) + "-", "databaseTemplate": "Sample"}, "Name",
			[]string{"'Name' must be 46 characters or fewer so the generated database name fits within the 63-character portable limit.", "'Name' may only contain letters, numbers, spaces, and underscores."}},
	} {
		got := errorsOf(t, e.expect(t, http.StatusBadRequest, http.MethodPost, "/v2/odsInstances/manage", c.body))
		if strings.Join(got[c.field], "|") != strings.Join(c.want, "|") || len(got) != 1 {
			t.Errorf("%v: errors %v, want %s %q", c.body, got, c.field, c.want)
		}
	}

	r := e.expect(t, http.StatusAccepted, http.MethodPost, "/v2/odsInstances/manage", map[string]string{"name": " Line Fed\n", "databaseTemplate": "Sample"})
	var id int
	if _, err := fmt.Sscanf(r.header.Get("Location"), "/odsinstances/manage/%d", &id); err != nil {
		t.Fatalf("Location %q: %v", r.header.Get("Location"), err)
	}
	var name string
	if err := admin.QueryRow(ctx, `SELECT name FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&name); err != nil || name != "Line Fed" {
		t.Fatalf("stored name %q, %v", name, err)
	}

	if _, err := admin.Exec(ctx, `UPDATE adminapi.odsinstancemanages SET status = 'Archived' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	r = e.expect(t, http.StatusNotFound, http.MethodDelete, fmt.Sprintf("/v2/odsInstances/manage/%d", id), nil)
	var body map[string]any
	decode(t, r, &body)
	if len(body) != 1 || body["title"] != fmt.Sprintf("Not found: odsInstanceManage with ID %d. It may have been recently deleted.", id) {
		t.Fatalf("v2 not found: %s", r)
	}

	off, _ := manageEnv(t, true)
	r = off.expect(t, http.StatusBadRequest, http.MethodPost, "/v3/dataStores/manage", `{"name": `)
	if got := errorsOf(t, r); len(got) != 0 {
		t.Fatalf("an unreadable body was answered as the flag: %s", r)
	}
}
