package manage

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/internal/respond"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
)

// The write side of the manage routes: POST and DELETE of
// /v2/odsInstances/manage and /v3/dataStores/manage, with the Admin API's
// validation, status codes and bodies (AddOdsInstanceManage.cs,
// DeleteOdsInstanceManage.cs and their v3 twins). instancemgr serves them
// so that the Admin API's handler never schedules its own Quartz job for a
// request (docs/adminapi-newest.md, "The decision, first"); the simulator
// serves them with the same code.

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

// V3Problem is the v3 problem body (V3ProblemDetailsFactory).
type V3Problem struct {
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
	respond.JSON(w, http.StatusBadRequest, V3Problem{Type: "urn:ed-fi:management-api:bad-request:validation", Title: "Validation failed",
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
	respond.JSON(w, http.StatusNotFound, V3Problem{Type: "urn:ed-fi:management-api:not-found", Title: msg, Status: http.StatusNotFound, Detail: msg})
}

// Disabled answers the 400 of EnableDataStoreManagement false.
func (rt Route) Disabled(w http.ResponseWriter) {
	key := "OdsInstance"
	if rt.V3 {
		key = "dataStore"
	}
	rt.Validation(w, map[string][]string{key: {"This endpoint has been disabled on application settings."}})
}

// Blocked is why a request in status cannot be deleted
// (DeleteOdsInstanceManage.GetBlockingStatusMessage); "" for Created.
func Blocked(noun, status string) string {
	switch status {
	case PendingCreate:
		return noun + " is being provisioned. Wait for creation to complete."
	case CreateInProgress:
		return noun + " is currently being provisioned. Wait for creation to complete."
	case CreateFailed:
		return noun + " creation failed. It will be retried automatically by the background job."
	case CreateError:
		return noun + " creation failed permanently. Manual database intervention required before deleting."
	case PendingDelete:
		return noun + " is already queued for deletion."
	case DeleteInProgress:
		return noun + " is currently being deleted."
	case DeleteFailed:
		return noun + " deletion failed. It will be retried automatically by the background job."
	case DeleteError:
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
}

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
// with its Location.
func (e *Endpoints) Create(w http.ResponseWriter, r *http.Request, rt Route, tenant string) {
	var body struct {
		Name             *string `json:"name"`
		DatabaseTemplate *string `json:"databaseTemplate"`
	}
	if !respond.DecodeJSONBody(w, r, &body) {
		return
	}
	name, template := deref(body.Name), deref(body.DatabaseTemplate)
	if errs := validateCreate(name, template); len(errs) > 0 {
		rt.Validation(w, errs)
		return
	}
	db, ok := e.db(w, r, tenant)
	if !ok {
		return
	}
	ctx := r.Context()
	trimmed := strings.TrimSpace(name)
	var taken, registered bool
	if err := db.Conn.QueryRow(ctx, db.Statements.Taken, trimmed).Scan(&taken, &registered); err != nil {
		e.failed(w, tenant, "check the name", "read", err)
		return
	}
	article, registeredNoun := "An", "An OdsInstance"
	if rt.V3 {
		article, registeredNoun = "A", "A DataStore"
	}
	switch {
	case taken:
		rt.Validation(w, map[string][]string{"Name": {fmt.Sprintf("%s %s named '%s' already exists.", article, rt.Noun(), trimmed)}})
		return
	case registered:
		rt.Validation(w, map[string][]string{"Name": {fmt.Sprintf("%s named '%s' already exists.", registeredNoun, trimmed)}})
		return
	}
	var id int
	if err := db.Conn.QueryRow(ctx, db.Statements.Insert, trimmed, strings.TrimSpace(template), e.now()).Scan(&id); err != nil {
		e.failed(w, tenant, "insert the manage row", "written", err)
		return
	}
	e.log.Info("managed instance requested", "tenant", tenant, "manage_id", id, "name", trimmed, "template", template)
	location := "/odsinstances/manage/" + strconv.Itoa(id) // v2's, relative and without /v2, as Ed-Fi's
	if rt.V3 {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		location = scheme + "://" + r.Host + "/v3/dataStores/manage/" + strconv.Itoa(id)
	}
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusAccepted)
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
func (e *Endpoints) Delete(w http.ResponseWriter, r *http.Request, rt Route, tenant string, id int) {
	db, ok := e.db(w, r, tenant)
	if !ok {
		return
	}
	ctx := r.Context()
	req, err := get(ctx, db.Conn, db.Statements, tenant, id)
	switch {
	case errors.Is(err, adminapi.ErrNotFound), err == nil && req.status == Deleted:
		rt.NotFound(w, id)
		return
	case err != nil:
		e.failed(w, tenant, "read the manage row", "read", err)
		return
	}
	if msg := Blocked(rt.Noun(), req.status); msg != "" {
		rt.Validation(w, map[string][]string{"id": {msg}})
		return
	}
	// Only from Created, in the statement that moves it: a delete racing
	// another change is refused rather than applied over it.
	var moved int
	err = db.Conn.QueryRow(ctx, db.Statements.Claim, id, PendingDelete, nil, e.now(), Created).Scan(&moved)
	switch {
	case errors.Is(err, sqlregistry.ErrNoRows):
		rt.Validation(w, map[string][]string{"id": {rt.Noun() + " changed while it was being deleted; read it again."}})
		return
	case err != nil:
		e.failed(w, tenant, "mark the manage row for deletion", "written", err)
		return
	}
	e.log.Info("managed instance delete requested", "tenant", tenant, "manage_id", id)
	w.WriteHeader(http.StatusNoContent)
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
