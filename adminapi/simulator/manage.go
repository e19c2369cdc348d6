package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// The newest Admin API's instance management (Ed-Fi-Alliance-OSS/ODS-Admin-API;
// docs/adminapi-newest.md): POST, GET and DELETE of /v2/odsInstances/manage
// and /v3/dataStores/manage, on rows of adminapi.OdsInstanceManages in each
// tenant's EdFi_Admin, which is where that Admin API keeps them and where an
// executor moves them. The simulator is no executor: a row stays as the
// endpoints leave it until something else moves it. The handlers are
// written from Ed-Fi's (AddOdsInstanceManage.cs, DeleteOdsInstanceManage.cs,
// ReadOdsInstanceManage.cs and their v3 twins under DataStores/Manage), not
// from instancemgr's write routes, so that those are tested against the
// Admin API's behaviour and not against themselves.

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

// manageAPI is one of the two versions of the routes to the same rows: v2
// and v3 differ in paths, words and problem bodies.
type manageAPI struct{ v3 bool }

// base is the version's collection path.
func (a manageAPI) base() string {
	if a.v3 {
		return "/v3/dataStores/manage"
	}
	return "/v2/odsInstances/manage"
}

// v3Problem is v3's problem body (V3ProblemDetailsFactory, written by
// V3RequestErrorMiddleware).
type v3Problem struct {
	Type             string              `json:"type"`
	Title            string              `json:"title"`
	Status           int                 `json:"status"`
	Detail           string              `json:"detail"`
	ValidationErrors map[string][]string `json:"validationErrors,omitempty"`
	Errors           map[string][]string `json:"errors,omitempty"`
}

func writeV3Problem(w http.ResponseWriter, p v3Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// invalid answers a FluentValidation ValidationException: 400 with errs.
func (a manageAPI) invalid(w http.ResponseWriter, errs map[string][]string) {
	if !a.v3 {
		writeValidation(w, errs)
		return
	}
	writeV3Problem(w, v3Problem{Type: "urn:ed-fi:management-api:bad-request:validation", Title: "Validation failed",
		Status: http.StatusBadRequest, Detail: "Validation failed", ValidationErrors: errs, Errors: errs})
}

// notFound answers NotFoundException<int>: 404 for request id.
func (a manageAPI) notFound(w http.ResponseWriter, id int) {
	what := "odsInstanceManage"
	if a.v3 {
		what = "dataStoreManage"
	}
	msg := fmt.Sprintf("Not found: %s with ID %d. It may have been recently deleted.", what, id)
	if !a.v3 {
		writeJSON(w, http.StatusNotFound, problem{ProblemDetails: adminapi.ProblemDetails{Title: msg}})
		return
	}
	writeV3Problem(w, v3Problem{Type: "urn:ed-fi:management-api:not-found", Title: msg, Status: http.StatusNotFound, Detail: msg})
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
func view(a manageAPI, m manageRow) map[string]any {
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
		base := a.base()
		// Every handler answers the flag first, as each of Ed-Fi's does;
		// POST's body is bound before its handler runs (handleManageCreate).
		with := func(h func(manageAPI, http.ResponseWriter, *http.Request, *call)) func(http.ResponseWriter, *http.Request, *call) {
			return func(w http.ResponseWriter, r *http.Request, c *call) {
				if !s.manageDisabled(a, w) {
					h(a, w, r, c)
				}
			}
		}
		out = append(out,
			route{method: http.MethodPost, pattern: segments(base), op: "manage_create", handle: func(w http.ResponseWriter, r *http.Request, c *call) { s.handleManageCreate(a, w, r, c) }},
			route{method: http.MethodGet, pattern: segments(base), op: "manage_list", handle: with(s.handleManageList)},
			route{method: http.MethodGet, pattern: segments(base + "/{id}"), op: "manage_get", handle: with(s.handleManageGet)},
			route{method: http.MethodDelete, pattern: segments(base + "/{id}"), op: "manage_delete", handle: with(s.handleManageDelete)},
		)
	}
	return out
}

// manageDisabled answers the 400 of EnableDataStoreManagement false, when
// it is.
func (s *Simulator) manageDisabled(a manageAPI, w http.ResponseWriter) bool {
	if s.manageOff {
		key := "OdsInstance" // nameof(OdsInstance)
		if a.v3 {
			key = "dataStore"
		}
		a.invalid(w, map[string][]string{key: {"This endpoint has been disabled on application settings."}})
	}
	return s.manageOff
}

func (s *Simulator) manageDB(w http.ResponseWriter, r *http.Request, c *call) (*pgxpool.Pool, bool) {
	p, err := s.manageDBs.pool(r.Context(), s.tenantName(consoleTenant(c)))
	if err != nil {
		s.manageFailed(w, c, "reach EdFi_Admin for the manage tables", "reached", err)
		return nil, false
	}
	return p, true
}

// The name and template rules of AddOdsInstanceManage's validator. Its
// pattern is .NET's, where $ also matches before a final line feed.
var (
	manageName      = regexp.MustCompile(`^[A-Za-z0-9 _]+\n?$`)
	manageTemplates = []string{"Minimal", "Sample"} // Enum.GetNames<SandboxType>()
)

const maxManageName = 46

// validateManage is AddOdsInstanceManage's validator without its database
// checks: FluentValidation runs every rule of a property and reports each
// that fails, so an empty name is both empty and not of the pattern.
func validateManage(name, template *string) map[string][]string {
	errs := map[string][]string{}
	add := func(key, msg string) { errs[key] = append(errs[key], msg) }
	if name == nil || strings.TrimSpace(*name) == "" {
		add("Name", "'Name' must not be empty.")
	}
	if name != nil && utf16Len(*name) > maxManageName {
		add("Name", fmt.Sprintf("'Name' must be %d characters or fewer so the generated database name fits within the 63-character portable limit.", maxManageName))
	}
	if name != nil && !manageName.MatchString(*name) {
		add("Name", "'Name' may only contain letters, numbers, spaces, and underscores.")
	}
	var t string
	if template != nil {
		t = *template
	}
	if strings.TrimSpace(t) == "" {
		add("DatabaseTemplate", "'Database Template' must not be empty.")
	}
	if n := utf16Len(t); n > 100 {
		add("DatabaseTemplate", fmt.Sprintf("The length of 'Database Template' must be 100 characters or fewer. You entered %d characters.", n))
	}
	if !slices.Contains(manageTemplates, t) {
		add("DatabaseTemplate", fmt.Sprintf("'%s' is not a valid database template. Allowed values are: %s.", t, strings.Join(manageTemplates, ", ")))
	}
	return errs
}

// handleManageCreate is AddOdsInstanceManage.Handle: the body bound, the
// flag, the validator (then the name, trimmed, must be no request's but a
// Deleted one's and no dbo.OdsInstances row's), a PendingCreate row with
// no database name, 202 with the Location. The generated database name's
// length is never over the limit once the name is 46 characters at most,
// so that check of Ed-Fi's is not repeated here.
func (s *Simulator) handleManageCreate(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	var req struct{ Name, DatabaseTemplate *string }
	if !decodeJSONBody(w, r, &req) || s.manageDisabled(a, w) {
		return
	}
	if errs := validateManage(req.Name, req.DatabaseTemplate); len(errs) > 0 {
		a.invalid(w, errs)
		return
	}
	db, ok := s.manageDB(w, r, c)
	if !ok {
		return
	}
	// The command trims both; a valid template has nothing to trim.
	name, template := strings.TrimSpace(*req.Name), *req.DatabaseTemplate
	var requested, registered bool
	err := db.QueryRow(r.Context(), `SELECT EXISTS (SELECT 1 FROM adminapi.odsinstancemanages WHERE name = $1 AND status <> 'Deleted'),
		EXISTS (SELECT 1 FROM dbo.odsinstances WHERE name = $1)`, name).Scan(&requested, &registered)
	if err != nil {
		s.manageFailed(w, c, "check the manage request's name", "read", err)
		return
	}
	if requested || registered {
		article, noun := "An", "OdsInstanceManage"
		switch {
		case a.v3 && requested:
			article, noun = "A", "DataStoreManage"
		case a.v3:
			article, noun = "A", "DataStore"
		case registered && !requested:
			noun = "OdsInstance"
		}
		a.invalid(w, map[string][]string{"Name": {fmt.Sprintf("%s %s named '%s' already exists.", article, noun, name)}})
		return
	}
	now := s.now().UTC()
	var id int
	err = db.QueryRow(r.Context(), `INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status, lastrefreshed, lastmodifieddate)
		VALUES ($1, $2, $3, $4, $4) RETURNING id`, name, template, ManagePendingCreate, now).Scan(&id)
	if err != nil {
		s.manageFailed(w, c, "insert the manage row", "written", err)
		return
	}
	// v2's Location is relative and without /v2; v3's is absolute
	// (ResourceUrlHelper.BuildAbsoluteResourceUrl: scheme, host, /v3, path).
	location := "/odsinstances/manage/" + strconv.Itoa(id)
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

// manageBlocked is DeleteOdsInstanceManage.GetBlockingStatusMessage: why
// a request in status cannot be deleted, "" when nothing blocks it.
func manageBlocked(a manageAPI, status string) string {
	noun := "OdsInstanceManage"
	if a.v3 {
		noun = "DataStoreManage"
	}
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

// handleManageDelete is DeleteOdsInstanceManage.Handle: 404 for a row
// that is not there or Deleted, 400 for a status that blocks it, and
// DeleteOdsInstanceManageCommand, which moves only a Created row to
// PendingDelete (any other status is 404) and sets LastModifiedDate.
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
	if msg := manageBlocked(a, m.Status); msg != "" {
		a.invalid(w, map[string][]string{"id": {msg}})
		return
	}
	tag, err := db.Exec(r.Context(), `UPDATE adminapi.odsinstancemanages SET status = $2, lastmodifieddate = $3 WHERE id = $1 AND status = $4`,
		c.id, ManagePendingDelete, s.now().UTC(), ManageCreated)
	switch {
	case err != nil:
		s.manageFailed(w, c, "mark the manage row for deletion", "written", err)
	case tag.RowsAffected() == 0:
		a.notFound(w, c.id)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Simulator) handleManageList(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	offset, limit, bad := paging(r)
	if len(bad) > 0 {
		a.invalid(w, bad)
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
				out = append(out, view(a, m))
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
		writeJSON(w, http.StatusOK, view(a, m))
	}
}

// manageFailed logs what could not be done and answers 500 saying
// whether EdFi_Admin could not be reached, read or written.
func (s *Simulator) manageFailed(w http.ResponseWriter, c *call, what, verb string, err error) {
	s.log.Error("could not "+what, "op", c.op, "err", err)
	writeProblem(w, http.StatusInternalServerError, "Internal Server Error", "EdFi_Admin could not be "+verb+".")
}
