package simulator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// The newest Admin API's instance management (Ed-Fi-Alliance-OSS/ODS-Admin-API;
// docs/adminapi-newest.md): POST, GET and DELETE of /v2/odsInstances/manage
// and /v3/dataStores/manage, on rows of adminapi.OdsInstanceManages in each
// tenant's EdFi_Admin, which is where that Admin API keeps them and where an
// executor moves them. The simulator is no executor: a row stays as the
// endpoints leave it until something else moves it.

// The manage statuses (OdsInstanceManageStatus).
const (
	ManagePendingCreate    = managerows.PendingCreate
	ManageCreateInProgress = managerows.CreateInProgress
	ManageCreated          = managerows.Created
	ManageCreateFailed     = managerows.CreateFailed
	ManageCreateError      = managerows.CreateError
	ManagePendingDelete    = managerows.PendingDelete
	ManageDeleteInProgress = managerows.DeleteInProgress
	ManageDeleted          = managerows.Deleted
	ManageDeleteFailed     = managerows.DeleteFailed
	ManageDeleteError      = managerows.DeleteError
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

// manageAPI is one of the two routes to the same rows (managewrite.Route).
type manageAPI = managewrite.Route

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
	if a.V3 {
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
	for _, a := range []manageAPI{{V3: false}, {V3: true}} {
		base := a.Base()
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

// disabled answers the 400 of EnableDataStoreManagement false, when it is.
func (s *Simulator) manageDisabled(a manageAPI, w http.ResponseWriter) bool {
	if s.manageOff {
		a.Disabled(w)
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

// The write side is the code instancemgr serves in production
// (managewrite.Endpoints), on the simulator's pools.
func (s *Simulator) handleManageCreate(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	// Ed-Fi's Location is absolute, from the request's scheme and Host
	// (ResourceUrlHelper); the simulator answers as Ed-Fi does.
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.manageEndpoints(c).Create(w, r, a, s.tenantName(consoleTenant(c)), scheme+"://"+r.Host)
}

func (s *Simulator) handleManageDelete(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	s.manageEndpoints(c).Delete(w, r, a, s.tenantName(consoleTenant(c)), c.id)
}

// manageEndpoints are the write side on the tenants' pools, logging with
// the call's operation.
func (s *Simulator) manageEndpoints(c *call) *managewrite.Endpoints {
	open := func(ctx context.Context, tenant string) (managewrite.DB, error) {
		p, err := s.manageDBs.pool(ctx, tenant)
		if err != nil {
			return managewrite.DB{}, err
		}
		return managewrite.DB{Conn: postgres.Conn(p), Statements: managewrite.Postgres}, nil
	}
	return managewrite.NewEndpoints(open, s.log.With("op", c.op), s.now)
}

func (s *Simulator) handleManageList(a manageAPI, w http.ResponseWriter, r *http.Request, c *call) {
	offset, limit, bad := paging(r)
	if len(bad) > 0 {
		a.Validation(w, bad)
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
			a.NotFound(w, c.id)
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
