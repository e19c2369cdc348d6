package simulator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// The newest Admin API's instance management (Ed-Fi-Alliance-OSS/ODS-Admin-API;
// docs/adminapi-newest.md): POST, GET and DELETE of /v2/odsInstances/manage
// and /v3/dataStores/manage, on rows of adminapi.OdsInstanceManages in each
// tenant's EdFi_Admin, which is where that Admin API keeps them and where an
// executor moves them. The simulator is no executor: a row stays as the
// endpoints leave it until something else moves it.

// The manage statuses (OdsInstanceManageStatus).
const (
	ManagePendingCreate    = "PendingCreate"
	ManageCreateInProgress = "CreateInProgress"
	ManageCreated          = "Created"
	ManageCreateFailed     = "CreateFailed"
	ManageCreateError      = "CreateError"
	ManagePendingDelete    = "PendingDelete"
	ManageDeleteInProgress = "DeleteInProgress"
	ManageDeleted          = "Deleted"
	ManageDeleteFailed     = "DeleteFailed"
	ManageDeleteError      = "DeleteError"
)

// ManageSchema is the part of that Admin API's EdFi_Admin schema the manage
// endpoints use, as its PostgreSQL migrations leave it (00004, 00005, 00006,
// 00007; unquoted, so lower case).
const ManageSchema = `
CREATE SCHEMA IF NOT EXISTS adminapi;
CREATE TABLE IF NOT EXISTS adminapi.odsinstancemanages (
    id               INT NOT NULL GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_odsinstancemanages PRIMARY KEY,
    name             VARCHAR(100) NOT NULL,
    odsinstanceid    INT,
    odsinstancename  VARCHAR(100),
    status           VARCHAR(75) NOT NULL,
    databasetemplate VARCHAR(100) NOT NULL,
    databasename     VARCHAR(255),
    lastrefreshed    TIMESTAMP NOT NULL DEFAULT NOW(),
    lastmodifieddate TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_odsinstancemanages_name ON adminapi.odsinstancemanages (name);
CREATE INDEX IF NOT EXISTS idx_odsinstancemanages_odsinstanceid ON adminapi.odsinstancemanages (odsinstanceid);
CREATE TABLE IF NOT EXISTS adminapi.jobstatuses (
    id           SERIAL PRIMARY KEY,
    jobid        VARCHAR(150) NOT NULL CONSTRAINT uq_jobstatuses_jobid UNIQUE,
    status       VARCHAR(50) NOT NULL,
    errormessage VARCHAR(1000),
    createdat    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finishedat   TIMESTAMP
);`

// manageAPI is one of the two routes to the same rows: v2 and v3 differ in
// paths, field names, words and problem bodies.
type manageAPI struct {
	v3 bool
}

func (a manageAPI) noun() string {
	if a.v3 {
		return "DataStoreManage"
	}
	return "OdsInstanceManage"
}

// manageRow is one row of adminapi.odsinstancemanages.
type manageRow struct {
	ID               int
	Name             string
	OdsInstanceID    *int
	OdsInstanceName  *string
	Status           string
	DatabaseTemplate string
	DatabaseName     *string
	LastRefreshed    time.Time
	LastModifiedDate *time.Time
}

const manageColumns = `id, name, odsinstanceid, odsinstancename, status, databasetemplate, databasename, lastrefreshed, lastmodifieddate`

func scanManage(row pgx.CollectableRow) (manageRow, error) {
	var m manageRow
	err := row.Scan(&m.ID, &m.Name, &m.OdsInstanceID, &m.OdsInstanceName, &m.Status, &m.DatabaseTemplate, &m.DatabaseName, &m.LastRefreshed, &m.LastModifiedDate)
	return m, err
}

// view is the row as the version's model shows it
// (OdsInstanceManageModel, DataStoreManageModel).
func (a manageAPI) view(m manageRow) map[string]any {
	v := map[string]any{"id": m.ID, "name": m.Name, "status": m.Status, "databaseTemplate": m.DatabaseTemplate,
		"databaseName": m.DatabaseName, "lastRefreshed": m.LastRefreshed, "lastModifiedDate": m.LastModifiedDate}
	if a.v3 {
		v["dataStoreId"], v["dataStoreName"] = m.OdsInstanceID, m.OdsInstanceName
	} else {
		v["odsInstanceId"], v["odsInstanceName"] = m.OdsInstanceID, m.OdsInstanceName
	}
	return v
}

// manageDatabases are the tenants' EdFi_Admin pools, each with the manage
// schema made sure of once.
type manageDatabases struct {
	*adminDatabases
	mu    sync.Mutex
	ready map[*pgxpool.Pool]bool
}

func (m *manageDatabases) pool(ctx context.Context, tenant string) (*pgxpool.Pool, error) {
	p, err := m.adminDatabases.pool(tenant)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ready[p] {
		if _, err := p.Exec(ctx, ManageSchema); err != nil {
			return nil, fmt.Errorf("create the manage tables: %w", err)
		}
		m.ready[p] = true
	}
	return p, nil
}

func (s *Simulator) manageRoutes() []route {
	var out []route
	for _, a := range []manageAPI{{v3: false}, {v3: true}} {
		base := "/v2/odsinstances/manage"
		if a.v3 {
			base = "/v3/datastores/manage"
		}
		// Every route answers the flag first, as each of Ed-Fi's handlers does.
		with := func(h func(manageAPI, http.ResponseWriter, *http.Request, *call)) func(http.ResponseWriter, *http.Request, *call) {
			return func(w http.ResponseWriter, r *http.Request, c *call) {
				if !s.manageDisabled(a, w) {
					h(a, w, r, c)
				}
			}
		}
		out = append(out,
			route{method: http.MethodPost, pattern: segments(base), op: "manage_create", handle: with(s.handleManageCreate)},
			route{method: http.MethodGet, pattern: segments(base), op: "manage_list", handle: with(s.handleManageList)},
			route{method: http.MethodGet, pattern: segments(base + "/{id}"), op: "manage_get", handle: with(s.handleManageGet)},
			route{method: http.MethodDelete, pattern: segments(base + "/{id}"), op: "manage_delete", handle: with(s.handleManageDelete)},
		)
	}
	return out
}

// validation answers 400 with errs, in the version's problem body.
func (a manageAPI) validation(w http.ResponseWriter, errs map[string][]string) {
	if !a.v3 {
		writeValidation(w, errs)
		return
	}
	writeJSON(w, http.StatusBadRequest, v3Problem{Type: "urn:ed-fi:management-api:bad-request:validation", Title: "Validation failed",
		Status: http.StatusBadRequest, Detail: "Validation failed", ValidationErrors: errs, Errors: errs})
}

func (a manageAPI) notFound(w http.ResponseWriter, id int) {
	what := "odsInstanceManage"
	if a.v3 {
		what = "dataStoreManage"
	}
	msg := fmt.Sprintf("Not found: %s with ID %d. It may have been recently deleted.", what, id)
	if !a.v3 {
		writeJSON(w, http.StatusNotFound, problem{ProblemDetails: adminapi.ProblemDetails{Title: msg, Status: http.StatusNotFound}})
		return
	}
	writeJSON(w, http.StatusNotFound, v3Problem{Type: "urn:ed-fi:management-api:not-found", Title: msg, Status: http.StatusNotFound, Detail: msg})
}

// disabled answers the 400 of EnableDataStoreManagement false, when it is.
func (s *Simulator) manageDisabled(a manageAPI, w http.ResponseWriter) bool {
	if !s.manageOff {
		return false
	}
	key := "OdsInstance"
	if a.v3 {
		key = "dataStore"
	}
	a.validation(w, map[string][]string{key: {"This endpoint has been disabled on application settings."}})
	return true
}

// v3Problem is the v3 ProblemDetails (V3ProblemDetailsFactory).
type v3Problem struct {
	Type             string              `json:"type"`
	Title            string              `json:"title"`
	Status           int                 `json:"status"`
	Detail           string              `json:"detail"`
	ValidationErrors map[string][]string `json:"validationErrors,omitempty"`
	Errors           map[string][]string `json:"errors,omitempty"`
}

func (s *Simulator) manageDB(w http.ResponseWriter, r *http.Request, c *call) (*pgxpool.Pool, bool) {
	p, err := s.manageDBs.pool(r.Context(), s.tenantName(consoleTenant(c)))
	if err != nil {
		s.manageFailed(w, c, "reach EdFi_Admin for the manage tables", "reached", err)
		return nil, false
	}
	return p, true
}

func (s *Simulator) handleManageCreate(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	var body struct {
		Name             *string `json:"name"`
		DatabaseTemplate *string `json:"databaseTemplate"`
	}
	if !decodeJSONBody(w, r, &body) {
		return
	}
	name, template := deref(body.Name), deref(body.DatabaseTemplate)
	errs := map[string][]string{}
	switch {
	case strings.TrimSpace(name) == "":
		errs["Name"] = []string{"'Name' must not be empty."}
	case len(name) > provisioning.ManageMaxName:
		errs["Name"] = []string{fmt.Sprintf("'Name' must be %d characters or fewer so the generated database name fits within the %d-character portable limit.", provisioning.ManageMaxName, provisioning.MaxNameBytes)}
	default:
		if _, err := provisioning.ManageDatabaseName(name, "Minimal"); err != nil {
			errs["Name"] = []string{"'Name' may only contain letters, numbers, spaces, and underscores."}
		}
	}
	switch _, ok := provisioning.ManageTemplates[template]; {
	case strings.TrimSpace(template) == "":
		errs["DatabaseTemplate"] = []string{"'Database Template' must not be empty."}
	case !ok:
		errs["DatabaseTemplate"] = []string{fmt.Sprintf("'%s' is not a valid database template. Allowed values are: Minimal, Sample.", template)}
	}
	if len(errs) > 0 {
		a.validation(w, errs)
		return
	}
	db, ok := s.manageDB(w, r, c)
	if !ok {
		return
	}
	ctx := r.Context()
	trimmed := strings.TrimSpace(name)
	var taken, registered bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM adminapi.odsinstancemanages WHERE name = $1 AND status <> 'Deleted'),
		EXISTS (SELECT 1 FROM dbo.odsinstances WHERE name = $1)`, trimmed).Scan(&taken, &registered)
	if err != nil {
		s.manageFailed(w, c, "check the name", "read", err)
		return
	}
	article, registeredNoun := "An", "An OdsInstance"
	if a.v3 {
		article, registeredNoun = "A", "A DataStore"
	}
	switch {
	case taken:
		a.validation(w, map[string][]string{"Name": {fmt.Sprintf("%s %s named '%s' already exists.", article, a.noun(), trimmed)}})
		return
	case registered:
		a.validation(w, map[string][]string{"Name": {fmt.Sprintf("%s named '%s' already exists.", registeredNoun, trimmed)}})
		return
	}
	var id int
	now := s.now().UTC()
	if err := db.QueryRow(ctx, `INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status, lastrefreshed, lastmodifieddate)
		VALUES ($1, $2, $3, $4, $4) RETURNING id`, trimmed, strings.TrimSpace(template), ManagePendingCreate, now).Scan(&id); err != nil {
		s.manageFailed(w, c, "insert the manage row", "written", err)
		return
	}
	s.log.Info("managed instance requested", "op", c.op, "tenant", s.tenantName(consoleTenant(c)), "manage_id", id, "name", trimmed, "template", template)
	location := "/odsinstances/manage/" + strconv.Itoa(id) // v2's, relative and without /v2, as Ed-Fi's
	if a.v3 {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		location = scheme + "://" + r.Host + "/v3/dataStores/manage/" + strconv.Itoa(id)
	}
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Simulator) handleManageList(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	offset, limit, bad := paging(r)
	if len(bad) > 0 {
		a.validation(w, bad)
		return
	}
	db, ok := s.manageDB(w, r, c)
	if !ok {
		return
	}
	var id *int
	if v := queryValue(r, "id"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Failed to bind parameter \"int? id\" from %q.", v))
			return
		}
		id = &n
	}
	var name *string
	if v := queryValue(r, "name"); v != "" {
		name = &v
	}
	rows, err := db.Query(r.Context(), `SELECT `+manageColumns+` FROM adminapi.odsinstancemanages
		WHERE ($1::int IS NULL OR id = $1) AND ($2::text IS NULL OR name = $2) ORDER BY id OFFSET $3 LIMIT $4`, id, name, offset, limit)
	if err == nil {
		var list []manageRow
		if list, err = pgx.CollectRows(rows, scanManage); err == nil {
			out := make([]map[string]any, 0, len(list))
			for _, m := range list {
				out = append(out, a.view(m))
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	s.manageFailed(w, c, "list the manage rows", "read", err)
}

// paging reads offset and limit as the Admin API does (defaults 0 and 25).
func paging(r *http.Request) (offset, limit int, bad map[string][]string) {
	offset, limit, bad = 0, 25, map[string][]string{}
	for key, dst := range map[string]*int{"offset": &offset, "limit": &limit} {
		v := queryValue(r, key)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad[key] = []string{fmt.Sprintf("'%s' must be a number, 0 or more.", key)}
			continue
		}
		*dst = n
	}
	return offset, limit, bad
}

// manageRowOf reads one row; ok false when it answered already (404, 500).
func (s *Simulator) manageRowOf(a manageAPI, w http.ResponseWriter, r *http.Request, c *call, db *pgxpool.Pool) (manageRow, bool) {
	rows, err := db.Query(r.Context(), `SELECT `+manageColumns+` FROM adminapi.odsinstancemanages WHERE id = $1`, c.id)
	if err == nil {
		var m manageRow
		m, err = pgx.CollectExactlyOneRow(rows, scanManage)
		if errors.Is(err, pgx.ErrNoRows) {
			a.notFound(w, c.id)
			return m, false
		}
		if err == nil {
			return m, true
		}
	}
	s.manageFailed(w, c, "read the manage row", "read", err)
	return manageRow{}, false
}

func (s *Simulator) handleManageGet(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	db, ok := s.manageDB(w, r, c)
	if !ok {
		return
	}
	if m, ok := s.manageRowOf(a, w, r, c, db); ok {
		writeJSON(w, http.StatusOK, a.view(m))
	}
}

// manageBlocked is why a row in status cannot be deleted
// (DeleteOdsInstanceManage.GetBlockingStatusMessage); "" for Created.
func manageBlocked(noun, status string) string {
	switch status {
	case ManagePendingCreate:
		return noun + " is being provisioned. Wait for creation to complete."
	case ManageCreateInProgress:
		return noun + " is currently being provisioned. Wait for creation to complete."
	case ManageCreateFailed:
		return noun + " creation failed. It will be retried automatically by the background job."
	case ManageCreateError:
		return noun + " creation failed permanently. Manual database intervention required before deleting."
	case ManagePendingDelete:
		return noun + " is already queued for deletion."
	case ManageDeleteInProgress:
		return noun + " is currently being deleted."
	case ManageDeleteFailed:
		return noun + " deletion failed. It will be retried automatically by the background job."
	case ManageDeleteError:
		return noun + " deletion failed permanently. Manual database intervention required."
	}
	return ""
}

func (s *Simulator) handleManageDelete(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	db, ok := s.manageDB(w, r, c)
	if !ok {
		return
	}
	m, ok := s.manageRowOf(a, w, r, c, db)
	if !ok {
		return
	}
	if m.Status == ManageDeleted {
		a.notFound(w, c.id)
		return
	}
	if msg := manageBlocked(a.noun(), m.Status); msg != "" {
		a.validation(w, map[string][]string{"id": {msg}})
		return
	}
	// Only from Created, in the statement that moves it: a delete racing
	// another change is refused rather than applied over it.
	tag, err := db.Exec(r.Context(), `UPDATE adminapi.odsinstancemanages SET status = $2, lastmodifieddate = $3 WHERE id = $1 AND status = $4`,
		m.ID, ManagePendingDelete, s.now().UTC(), ManageCreated)
	if err != nil {
		s.manageFailed(w, c, "mark the manage row for deletion", "written", err)
		return
	}
	if tag.RowsAffected() == 0 {
		a.validation(w, map[string][]string{"id": {a.noun() + " changed while it was being deleted; read it again."}})
		return
	}
	s.log.Info("managed instance delete requested", "op", c.op, "manage_id", m.ID)
	w.WriteHeader(http.StatusNoContent)
}

// manageFailed logs what could not be done and answers 500 saying
// whether EdFi_Admin could not be reached, read or written.
func (s *Simulator) manageFailed(w http.ResponseWriter, c *call, what, verb string, err error) {
	s.log.Error("could not "+what, "op", c.op, "err", err)
	writeProblem(w, http.StatusInternalServerError, "Internal Server Error", "EdFi_Admin could not be "+verb+".")
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
