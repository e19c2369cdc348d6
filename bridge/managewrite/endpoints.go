// Package managewrite is the door where the newest Admin API line's
// requests enter: POST and DELETE of /v2/odsInstances/manage and
// /v3/dataStores/manage, each authorized by the Admin API (Server), with
// the Admin API's validation, status codes and bodies
// (AddOdsInstanceManage.cs, DeleteOdsInstanceManage.cs and their v3 twins)
// and instancemgr's limits and audit. A request becomes a row of
// adminapi.OdsInstanceManages in the tenant's EdFi_Admin, whose job the
// bridge publishes as soon as the row has committed (Publisher), and which
// its polls read too (provisioning/managerows). instancemgr serves these routes so
// that the Admin API's handler never schedules its own Quartz job for a
// request (docs/adminapi-newest.md, "The decision, first").
//
// It must never write a request the Admin API has not authorized, nor two
// requests that make one database.
package managewrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/internal/respond"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
)

// Route is one of the two routes to the same rows: v2 and v3 differ in
// paths, words and problem bodies.
type Route struct{ V3 bool }

// Base is the route's collection path, in lower case (ASP.NET matches
// paths without regard to case).
func (rt Route) Base() string {
	if rt.V3 {
		return "/v3/datastores/manage"
	}
	return "/v2/odsinstances/manage"
}

// Noun is the route's name for a request.
func (rt Route) Noun() string {
	if rt.V3 {
		return "DataStoreManage"
	}
	return "OdsInstanceManage"
}

// v3Problem is the v3 problem body (v3ProblemDetailsFactory).
type v3Problem struct {
	Type             string              `json:"type"`
	Title            string              `json:"title"`
	Status           int                 `json:"status"`
	Detail           string              `json:"detail"`
	ValidationErrors map[string][]string `json:"validationErrors,omitempty"`
	Errors           map[string][]string `json:"errors,omitempty"`
}

// Validation answers 400 with errs, in the route's problem body.
func (rt Route) Validation(w http.ResponseWriter, errs map[string][]string) {
	if !rt.V3 {
		respond.WriteValidation(w, errs)
		return
	}
	respond.JSON(w, http.StatusBadRequest, v3Problem{Type: "urn:ed-fi:management-api:bad-request:validation", Title: "Validation failed",
		Status: http.StatusBadRequest, Detail: "Validation failed", ValidationErrors: errs, Errors: errs})
}

// NotFound answers 404 for request id.
func (rt Route) NotFound(w http.ResponseWriter, id int) {
	what := "odsInstanceManage"
	if rt.V3 {
		what = "dataStoreManage"
	}
	msg := fmt.Sprintf("Not found: %s with ID %d. It may have been recently deleted.", what, id)
	if !rt.V3 {
		respond.JSON(w, http.StatusNotFound, respond.Problem{ProblemDetails: adminapi.ProblemDetails{Title: msg, Status: http.StatusNotFound}})
		return
	}
	respond.JSON(w, http.StatusNotFound, v3Problem{Type: "urn:ed-fi:management-api:not-found", Title: msg, Status: http.StatusNotFound, Detail: msg})
}

// blocked is why a request in status cannot be deleted
// (DeleteOdsInstanceManage.GetBlockingStatusMessage); "" for Created.
func blocked(noun, status string) string {
	switch status {
	case managerows.PendingCreate:
		return noun + " is being provisioned. Wait for creation to complete."
	case managerows.CreateInProgress:
		return noun + " is currently being provisioned. Wait for creation to complete."
	case managerows.CreateFailed:
		return noun + " creation failed. It will be retried automatically by the background job."
	case managerows.CreateError:
		return noun + " creation failed permanently. Manual database intervention required before deleting."
	case managerows.PendingDelete:
		return noun + " is already queued for deletion."
	case managerows.DeleteInProgress:
		return noun + " is currently being deleted."
	case managerows.DeleteFailed:
		return noun + " deletion failed. It will be retried automatically by the background job."
	case managerows.DeleteError:
		return noun + " deletion failed permanently. Manual database intervention required."
	}
	return ""
}

// Endpoints write the requests of POST and DELETE into the tenants'
// EdFi_Admin databases.
type Endpoints struct {
	open Databases
	log  *slog.Logger
	now  func() time.Time
	// InstancesPerTenant is limits.instancesPerTenant: a POST that would
	// give the tenant more requests not Deleted or failed is refused (0:
	// no limit).
	InstancesPerTenant int
}

// limitRefusal starts the refusal of a POST over the instance limit.
const limitRefusal = "over the instance limit"

// NewEndpoints returns the write side over the tenants' EdFi_Admin
// databases; now is the clock of the rows' dates (nil: the system's).
func NewEndpoints(open Databases, log *slog.Logger, now func() time.Time) *Endpoints {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Endpoints{open: open, log: log, now: func() time.Time { return now().UTC() }}
}

// Create answers POST: a valid request becomes a PendingCreate row, 202
// with its Location. origin is the scheme, host and path base the caller
// reached the Admin API at ("https://admin.example.org/adminapi"), from
// which the v3 Location is absolute as Ed-Fi's is; "" makes it a path.
//
// It returns the new request's id and name, or why it refused the call.
func (e *Endpoints) Create(w http.ResponseWriter, r *http.Request, rt Route, tenant, origin string) (id int, name, refusal string) {
	if !respond.IsJSON(r.Header.Get("Content-Type")) {
		respond.WriteUnsupported(w)
		return 0, "", "not JSON"
	}
	req, errs, err := parseCreate(http.MaxBytesReader(w, r.Body, respond.MaxBody))
	switch {
	case err != nil:
		respond.WriteDecodeError(w, err)
		return 0, "", "unreadable body"
	case len(errs) > 0:
		rt.Validation(w, errs)
		return 0, "", "validation failed"
	}
	db, ok := e.db(w, r, tenant)
	if !ok {
		return 0, req.Name, "EdFi_Admin unreachable"
	}
	id, clash, err := insertRequest(r.Context(), db, req, e.now(), e.InstancesPerTenant)
	var over *overLimit
	switch {
	case errors.As(err, &over):
		msg := fmt.Sprintf("Tenant %s has %d instances requested or made; its limit (limits.instancesPerTenant) is %d.", tenant, over.n, e.InstancesPerTenant)
		rt.Validation(w, map[string][]string{"Tenant": {msg}})
		return 0, req.Name, limitRefusal + ": " + msg
	case err != nil:
		e.failed(w, tenant, "insert the manage row", "written", err)
		return 0, req.Name, "EdFi_Admin write failed"
	case clash != nil:
		rt.Validation(w, map[string][]string{"Name": {clash.message(rt, req)}})
		return 0, req.Name, "duplicate name"
	}
	e.log.Info("managed instance requested", "tenant", tenant, "manage_id", id, "name", req.Name, "template", req.Template, "database", req.Database)
	location := "/odsinstances/manage/" + strconv.Itoa(id) // v2's, relative and without /v2, as Ed-Fi's
	if rt.V3 {
		// ResourceUrlHelper.BuildAbsoluteResourceUrl: origin, /v3, the path.
		location = origin + "/v3/dataStores/manage/" + strconv.Itoa(id)
	}
	w.Header().Set("Location", location)
	// Complete with its header: the job's publish after it does not hold
	// the caller.
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return id, req.Name, ""
}

// overLimit is a POST that would pass the tenant's instance limit.
type overLimit struct{ n int }

func (o *overLimit) Error() string { return fmt.Sprintf("%d instances, at the limit", o.n) }

// createRequest is a POST's body once it is valid.
type createRequest struct {
	Name, Template string // Name without the white space around it, as stored
	Database       string // the database the naming rule makes of them
}

// parseCreate decodes a POST body (one JSON value; names of properties
// matched without regard to case) and validates it as AddOdsInstanceManage
// does. err is a body that is not JSON of that shape (400 or 413, by
// respond.WriteDecodeError); errs are the validation failures (the route's
// 400). A request it returns with neither makes a database name.
func parseCreate(body io.Reader) (createRequest, map[string][]string, error) {
	var raw struct {
		Name             *string `json:"name"`
		DatabaseTemplate *string `json:"databaseTemplate"`
	}
	if err := respond.DecodeJSON(body, &raw); err != nil {
		return createRequest{}, nil, err
	}
	name, template := deref(raw.Name), deref(raw.DatabaseTemplate)
	if errs := validateCreate(name, template); len(errs) > 0 {
		return createRequest{}, errs, nil
	}
	req := createRequest{Name: strings.TrimSpace(name), Template: template}
	db, err := provisioning.ManageDatabaseName(req.Name, req.Template)
	if err != nil {
		// validateCreate accepted the name untrimmed; trimmed it is the same
		// database, so this is a bug, reported as a validation failure.
		return createRequest{}, map[string][]string{"Name": {err.Error()}}, nil
	}
	req.Database = db
	return req, nil, nil
}

// clash is what already has a POST's name or database.
type clash struct {
	name     string // the name of the request or instance that has it
	instance bool   // a dbo.OdsInstances row, not a request
}

// message is Ed-Fi's duplicate answer (AddOdsInstanceManage's validator),
// naming what has the name; when only the database is the same, it says
// so.
func (c *clash) message(rt Route, req createRequest) string {
	msg := fmt.Sprintf("An %s named '%s' already exists.", rt.Noun(), c.name)
	switch {
	case c.instance && rt.V3:
		msg = fmt.Sprintf("A DataStore named '%s' already exists.", c.name)
	case c.instance:
		msg = fmt.Sprintf("An OdsInstance named '%s' already exists.", c.name)
	case rt.V3:
		msg = fmt.Sprintf("A %s named '%s' already exists.", rt.Noun(), c.name)
	}
	if c.name != req.Name {
		msg += fmt.Sprintf(" '%s' would make the same database, %s.", req.Name, req.Database)
	}
	return msg
}

// insertRequest writes req as a PendingCreate request unless a request
// not Deleted or a dbo.OdsInstances row has its name (Ed-Fi's check) or
// makes the same database (without regard to case, as the engines'
// reservations compare names). The check and the insert are one
// transaction holding a lock on the database name, so that of concurrent
// POSTs that make one database exactly one is written.
func insertRequest(ctx context.Context, db DB, req createRequest, now time.Time, maxInstances int) (int, *clash, error) {
	tx, err := db.Conn.Begin(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("begin the insert of manage request %q: %w", req.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := tx.Exec(ctx, db.Statements.NameLock, NameLockKey(req.Database)); err != nil {
		return 0, nil, fmt.Errorf("lock database name %q for manage request %q: %w", req.Database, req.Name, err)
	}
	var taken, registered bool
	if err := tx.QueryRow(ctx, db.Statements.Taken, req.Name).Scan(&taken, &registered); err != nil {
		return 0, nil, fmt.Errorf("check the name of manage request %q: %w", req.Name, err)
	}
	if taken || registered {
		return 0, &clash{name: req.Name, instance: !taken}, nil
	}
	if c, err := sameDatabase(ctx, tx, db.Statements, req); c != nil || err != nil {
		return 0, c, err
	}
	if maxInstances > 0 {
		// Counted under the name's lock only: concurrent POSTs of other
		// names may pass it by a few, which the consumer's count of its
		// ledger catches before it makes anything.
		var n int
		if err := tx.QueryRow(ctx, db.Statements.Count).Scan(&n); err != nil {
			return 0, nil, fmt.Errorf("count the manage requests: %w", err)
		}
		if n >= maxInstances {
			return 0, nil, &overLimit{n}
		}
	}
	var id int
	if err := tx.QueryRow(ctx, db.Statements.Insert, req.Name, req.Template, now).Scan(&id); err != nil {
		return 0, nil, fmt.Errorf("insert manage request %q: %w", req.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, nil, fmt.Errorf("commit manage request %q: %w", req.Name, err)
	}
	return id, nil, nil
}

// NameLockKey is the lock key of a generated database name: one key for
// names that differ only in case.
func NameLockKey(database string) string {
	return "instancemgr:manage-database:" + strings.ToLower(database)
}

// sameDatabase finds a request or instance whose database is req's: the
// one its request was claimed with, else the one the naming rule makes of
// its name and template.
func sameDatabase(ctx context.Context, tx provisioning.Tx, st Statements, req createRequest) (*clash, error) {
	rows, err := tx.Query(ctx, st.Names)
	if err != nil {
		return nil, fmt.Errorf("read the names of manage requests and instances: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			instance                 bool
			name, template, database string
		)
		if err := rows.Scan(&instance, &name, &template, &database); err != nil {
			return nil, fmt.Errorf("read the names of manage requests and instances: %w", err)
		}
		if database == "" {
			database, _ = provisioning.ManageDatabaseName(name, template) // "" for a name the rule does not make
		}
		if database != "" && strings.EqualFold(database, req.Database) {
			return &clash{name: name, instance: instance}, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the names of manage requests and instances: %w", err)
	}
	return nil, nil
}

// validateCreate is AddOdsInstanceManage's validator: the name's rule and
// length, and the two templates.
func validateCreate(name, template string) map[string][]string {
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
	return errs
}

// Delete answers DELETE: a Created request becomes PendingDelete, 204;
// any other status is refused with Ed-Fi's reason.
//
// It returns why it refused the call, or "".
func (e *Endpoints) Delete(w http.ResponseWriter, r *http.Request, rt Route, tenant string, id int) (refusal string) {
	db, ok := e.db(w, r, tenant)
	if !ok {
		return "EdFi_Admin unreachable"
	}
	ctx := r.Context()
	req, err := managerows.Get(ctx, db.Conn, db.Statements.Statements, tenant, id)
	switch {
	case errors.Is(err, adminapi.ErrNotFound), err == nil && req.Status == managerows.Deleted:
		rt.NotFound(w, id)
		return "not found"
	case err != nil:
		e.failed(w, tenant, "read the manage row", "read", err)
		return "EdFi_Admin read failed"
	}
	if msg := blocked(rt.Noun(), req.Status); msg != "" {
		rt.Validation(w, map[string][]string{"id": {msg}})
		return "status " + req.Status
	}
	// Only from Created, in the statement that moves it: a delete racing
	// another change is refused rather than applied over it.
	var moved int
	err = db.Conn.QueryRow(ctx, db.Statements.Claim, id, managerows.PendingDelete, nil, e.now(), managerows.Created).Scan(&moved)
	switch {
	case errors.Is(err, provisioning.ErrNoRows):
		rt.Validation(w, map[string][]string{"id": {rt.Noun() + " changed while it was being deleted; read it again."}})
		return "changed meanwhile"
	case err != nil:
		e.failed(w, tenant, "mark the manage row for deletion", "written", err)
		return "EdFi_Admin write failed"
	}
	e.log.Info("managed instance delete requested", "tenant", tenant, "manage_id", id)
	w.WriteHeader(http.StatusNoContent)
	return ""
}

// auditRow writes the call's row of adminapi.AuditLogs in the tenant's
// EdFi_Admin, as the Admin API's own audit middleware does for the calls
// it serves (EventType Action, client id, source address, verb, URL,
// status), where that Admin API has the table. A failure is logged: the
// audit log line has been written already.
func (e *Endpoints) auditRow(ctx context.Context, call audit.Write) {
	db, err := e.open(ctx, call.Tenant)
	var exists bool
	if err == nil {
		err = db.Conn.QueryRow(ctx, db.Statements.AuditTable).Scan(&exists)
	}
	if err == nil && exists {
		err = db.Conn.QueryRow(ctx, db.Statements.Audit, managerows.CutTo(call.ClientID, 256), managerows.CutTo(call.Source, 45), call.Method, managerows.CutTo(call.Route, 2048), call.Status, e.now()).Scan(new(int64))
	}
	if err != nil {
		e.log.Warn("could not write the call's adminapi.AuditLogs row", "tenant", call.Tenant, "err", err)
	}
}

func (e *Endpoints) db(w http.ResponseWriter, r *http.Request, tenant string) (DB, bool) {
	db, err := e.open(r.Context(), tenant)
	if err != nil {
		e.failed(w, tenant, "reach EdFi_Admin for the manage tables", "reached", err)
		return db, false
	}
	return db, true
}

// failed logs what could not be done and answers 500 saying whether
// EdFi_Admin could not be reached, read or written.
func (e *Endpoints) failed(w http.ResponseWriter, tenant, what, verb string, err error) {
	e.log.Error("could not "+what, "tenant", tenant, "err", err)
	respond.WriteProblem(w, http.StatusInternalServerError, "Internal Server Error", "EdFi_Admin could not be "+verb+".")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
