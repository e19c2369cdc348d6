package managewrite

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/respond"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// The POST body of each route, decoded and validated as Create does: it
// never panics; a body it accepts is a name and a template the naming rule
// makes a database of; one it refuses gets the route's 400 (or 413), a
// JSON problem. A plain `go test` runs the seeds below and the corpus in
// testdata/fuzz; `go test -run=^$ -fuzz=FuzzCreateBodyV3 -fuzztime=10s
// ./bridge/managewrite/` searches further.
func FuzzCreateBodyV2(f *testing.F) { fuzzCreateBody(f, Route{V3: false}) }

// FuzzCreateBodyV3: see FuzzCreateBodyV2.
func FuzzCreateBodyV3(f *testing.F) { fuzzCreateBody(f, Route{V3: true}) }

func fuzzCreateBody(f *testing.F, rt Route) {
	for _, seed := range []string{
		`{"name":"District One","databaseTemplate":"Minimal"}`,
		`{"NAME":" Padded_Name ","DatabaseTemplate":"Sample"}`,
		`{"name":"EdFi_Ods","databaseTemplate":"Minimal"}`,
		`{"name":"___","databaseTemplate":"Sample"}`,
		`{"name":"` + strings.Repeat("n", provisioning.ManageMaxName+1) + `","databaseTemplate":"Minimal"}`,
		`{"name":"District-9","databaseTemplate":"Tiny"}`,
		`{"name":null,"databaseTemplate":null}`,
		`{"name":42}`,
		`{"name":"a","databaseTemplate":"Minimal"} trailing`,
		`[]`,
		``,
		`{"name":"Dístrict","databaseTemplate":"Minimal"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, errs, err := parseCreate(bytes.NewReader(body))
		w := httptest.NewRecorder()
		switch {
		case err != nil:
			respond.WriteDecodeError(w, err)
		case len(errs) > 0:
			rt.Validation(w, errs)
		default:
			checkAccepted(t, req)
			return
		}
		if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("refused with %d", w.Code)
		}
		var problem struct {
			Title  string              `json:"title"`
			Status int                 `json:"status"`
			Errors map[string][]string `json:"errors"`
		}
		if e := json.Unmarshal(w.Body.Bytes(), &problem); e != nil || problem.Status != w.Code || problem.Title == "" {
			t.Fatalf("refusal %d is not a problem body: %q (%v)", w.Code, w.Body.String(), e)
		}
		if err == nil && len(problem.Errors) == 0 {
			t.Fatalf("a validation failure with no errors: %q", w.Body.String())
		}
	})
}

// checkAccepted holds an accepted request to AddOdsInstanceManage's rules
// and to the database the consumer will make of it.
func checkAccepted(t *testing.T, req createRequest) {
	t.Helper()
	if req.Name == "" || req.Name != strings.TrimSpace(req.Name) || len(req.Name) > provisioning.ManageMaxName {
		t.Fatalf("accepted name %q", req.Name)
	}
	for _, c := range req.Name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ' ' || c == '_') {
			t.Fatalf("accepted name %q has %q", req.Name, c)
		}
	}
	if _, ok := provisioning.ManageTemplates[req.Template]; !ok {
		t.Fatalf("accepted template %q", req.Template)
	}
	db, err := provisioning.ManageDatabaseName(req.Name, req.Template)
	if err != nil || db != req.Database || len(db) > provisioning.MaxNameBytes {
		t.Fatalf("accepted %q %q makes %q (%v), request says %q", req.Name, req.Template, db, err, req.Database)
	}
	if err := provisioning.CheckName(db); err != nil {
		t.Fatalf("accepted %q makes %q: %v", req.Name, db, err)
	}
}
