package simulator

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// InstanceState is everything the simulator knows about one instance request: a
// test and inspection view, detached from the simulator's state.
type InstanceState struct {
	ID               int
	TenantID         int
	TenantName       string
	Name             string
	InstanceType     string
	Status           string
	ConnectionString string // last one received by completed/renamed
	OdsInstanceID    *int
	Contexts         []adminapi.OdsInstanceContext
	Derivatives      []adminapi.OdsInstanceDerivative
	// Calls counts the worker calls received, faulted ones included, by
	// endpoint name: "completed", "renamed", "renameFailed", "deleted",
	// "deleteFailed".
	Calls map[string]int
	// Timeline is when the request moved, as this simulator saw it.
	Timeline Timeline
}

// Timeline is when an instance request was made, first read by a worker
// (GET /adminconsole/instances/{id}: what a consumer does first with a job),
// and first completed. Zero until it happens.
type Timeline struct {
	Requested, FirstWorkerRead, Completed time.Time
}

// instance is the simulator's state for one instance request; s.mu guards it.
type instance struct {
	id               int
	tenantID         int
	tenantName       string // as the request gave it; Admin API 2.2.2 does not check it
	name             string
	instanceType     string
	status           string
	registeredName   string // the name EdFi_Admin has: set by completed and renamed
	connectionString string
	odsInstanceID    *int
	contexts         []adminapi.OdsInstanceContext
	derivatives      []adminapi.OdsInstanceDerivative
	calls            map[string]int
	timeline         Timeline
	// The API client Admin API 2.2.2 makes on completed and renamed, when the
	// simulator registers.
	clientKey, clientSecret string
}

// Maximum lengths, counted in UTF-16 code units as .NET counts them.
const (
	maxNameLenPostgreSQL = 58
	maxNameLenSQLServer  = 100
	maxInstanceTypeLen   = 100
	maxContextLen        = 50
	maxTenantNameLen     = 250
)

var derivativeTypes = []string{"ReadReplica", "Snapshot"}

var allStatuses = []string{
	adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusCompleted,
	adminapi.StatusPendingRename, adminapi.StatusRenameFailed, adminapi.StatusPendingDelete,
	adminapi.StatusDeleted, adminapi.StatusDeleteFailed, adminapi.StatusError,
}

// Instance returns the record of instance id.
func (s *Simulator) Instance(id int) (InstanceState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return InstanceState{}, false
	}
	return s.record(in), true
}

// Instances returns every instance's record, by id.
func (s *Simulator) Instances() []InstanceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InstanceState, 0, len(s.instances))
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		out = append(out, s.record(s.instances[id]))
	}
	return out
}

// SetStatus forces the status of instance id, for tests that need a status
// no endpoint reaches (InProgress, Error) or a shortcut through the
// lifecycle. Completed assigns an odsInstanceId when there is none.
func (s *Simulator) SetStatus(id int, status string) error {
	if !slices.Contains(allStatuses, status) {
		return fmt.Errorf("set status of instance %d: unknown status %q", id, status)
	}
	defer s.saveAfterChange()
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("set status of instance %d: no such instance", id)
	}
	if status == adminapi.StatusCompleted {
		s.registerInstance(in)
	}
	in.status = status
	return nil
}

// SetName sets the name of instance id's request, as a PUT of a new name
// does, leaving its status alone: for tests that reach a status with
// SetStatus and need the name that status would come with (a rename's new
// name under Pending_Rename).
func (s *Simulator) SetName(id int, name string) error {
	defer s.saveAfterChange()
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("set name of instance %d: no such instance", id)
	}
	in.name = name
	return nil
}

// CreateInstance adds an instance request as POST /adminconsole/odsInstances
// does, with tenant in the role of the Tenant header ("" for none). A failure
// is an *adminapi.Error with status 400 and the problem details the endpoint
// would answer, so errors.Is(err, adminapi.ErrValidation) holds.
func (s *Simulator) CreateInstance(tenant string, req adminapi.InstanceRequest) (adminapi.OdsInstance, error) {
	header := 0
	if name := strings.TrimSpace(tenant); name != "" {
		if header = s.tenantByName(name); header == 0 {
			return adminapi.OdsInstance{}, &adminapi.Error{
				Method: http.MethodPost, Path: "/adminconsole/odsInstances", Status: http.StatusBadRequest,
				Problem: &adminapi.ProblemDetails{Title: "Invalid tenant", Status: http.StatusBadRequest,
					Errors: map[string][]string{"Tenant": {fmt.Sprintf("Tenant %q does not exist.", name)}}},
			}
		}
	}
	view, errs := s.create(header, req)
	s.saveAfterChange()
	if errs != nil {
		p := validationProblem(errs).ProblemDetails
		return adminapi.OdsInstance{}, &adminapi.Error{Method: http.MethodPost, Path: "/adminconsole/odsInstances", Status: http.StatusBadRequest, Problem: &p}
	}
	return view, nil
}

// CreateInstances adds many instance requests at once, as many POSTs to
// /adminconsole/odsInstances would with tenant in the role of the Tenant
// header, then sets each one's status as SetStatus would (status "" leaves
// them Pending). It is for seeding a simulator at scale: each request is
// validated as one POST is, its name unique among the tenant's and the
// others in reqs, but the names are checked against an index instead of
// every instance. All are added or, on the first invalid request, none; the
// error then names it and wraps the *adminapi.Error a POST would answer.
func (s *Simulator) CreateInstances(tenant string, reqs []adminapi.InstanceRequest, status string) ([]adminapi.OdsInstance, error) {
	if status != "" && !slices.Contains(allStatuses, status) {
		return nil, fmt.Errorf("create instances: unknown status %q", status)
	}
	header := 0
	if name := strings.TrimSpace(tenant); name != "" {
		if header = s.tenantByName(name); header == 0 {
			return nil, &adminapi.Error{
				Method: http.MethodPost, Path: "/adminconsole/odsInstances", Status: http.StatusBadRequest,
				Problem: &adminapi.ProblemDetails{Title: "Invalid tenant", Status: http.StatusBadRequest,
					Errors: map[string][]string{"Tenant": {fmt.Sprintf("Tenant %q does not exist.", name)}}},
			}
		}
	}
	defer s.saveAfterChange()
	s.mu.Lock()
	defer s.mu.Unlock()
	names := map[int]map[string]bool{} // by tenant, names by foldKey
	tenants := make([]int, len(reqs))
	for i, req := range reqs {
		errs := map[string][]string{}
		t := s.resolveTenant(header, req, errs)
		if names[t] == nil {
			names[t] = map[string]bool{}
			for _, id := range s.byTenant[t] {
				names[t][foldKey(s.instances[id].name)] = true
			}
		}
		s.validateFields(req, errs, func(name string) bool { return names[t][foldKey(name)] })
		if len(errs) > 0 {
			p := validationProblem(errs).ProblemDetails
			return nil, fmt.Errorf("create instances: request %d (%q): %w", i, req.Name, &adminapi.Error{Method: http.MethodPost, Path: "/adminconsole/odsInstances", Status: http.StatusBadRequest, Problem: &p})
		}
		names[t][foldKey(req.Name)] = true
		tenants[i] = t
	}
	out := make([]adminapi.OdsInstance, 0, len(reqs))
	for i, req := range reqs {
		s.nextID++
		in := &instance{id: s.nextID, tenantID: tenants[i], status: adminapi.StatusPending, calls: map[string]int{}}
		s.setRequest(in, req)
		if status != "" {
			if status == adminapi.StatusCompleted {
				s.registerInstance(in)
			}
			in.status = status
		}
		s.add(in)
		out = append(out, s.consoleView(in))
	}
	s.log.Info("instances requested in bulk", "op", "create_requests", "count", len(out), "status", cmp.Or(status, adminapi.StatusPending))
	return out, nil
}

func (s *Simulator) create(header int, req adminapi.InstanceRequest) (adminapi.OdsInstance, map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := map[string][]string{}
	tenant := s.resolveTenant(header, req, errs)
	s.validateRequest(tenant, 0, req, errs)
	if len(errs) > 0 {
		return adminapi.OdsInstance{}, errs
	}
	s.nextID++
	in := &instance{id: s.nextID, tenantID: tenant, status: adminapi.StatusPending, calls: map[string]int{}, timeline: Timeline{Requested: stamp()}}
	s.setRequest(in, req)
	s.add(in)
	s.log.Info("instance requested", "op", "create_request", "tenant", s.tenantName(tenant), "instance_id", in.id, "status", in.status)
	return s.consoleView(in), nil
}

// resolveTenant picks the tenant of a console write: the Tenant header's,
// else the body's tenantId. A body tenantId that does not exist or
// contradicts the header is a validation error. The body's tenantName is
// stored as given and decides nothing, as in Admin API 2.2.2.
func (s *Simulator) resolveTenant(header int, req adminapi.InstanceRequest, errs map[string][]string) int {
	byID := 0
	if req.TenantID != 0 {
		if s.tenantName(req.TenantID) == "" {
			errs["TenantId"] = append(errs["TenantId"], fmt.Sprintf("Tenant %d does not exist.", req.TenantID))
		} else {
			byID = req.TenantID
		}
	}
	if header != 0 {
		if byID != 0 && byID != header {
			errs["TenantId"] = append(errs["TenantId"], fmt.Sprintf("Tenant %d is not the tenant of the Tenant header (%d).", byID, header))
		}
		return header
	}
	if byID != 0 {
		return byID
	}
	return 1
}

// validateRequest adds to errs what is wrong with req as a request for
// tenant; self is the id of the instance being updated (0 on create). The
// caller holds s.mu.
func (s *Simulator) validateRequest(tenant, self int, req adminapi.InstanceRequest, errs map[string][]string) {
	s.validateFields(req, errs, func(name string) bool {
		for _, id := range s.byTenant[tenant] {
			if other := s.instances[id]; other.id != self && strings.EqualFold(other.name, name) {
				return true
			}
		}
		return false
	})
}

// validateFields adds to errs what is wrong with req; nameTaken says
// whether another instance of the tenant has the name. The caller holds
// s.mu.
func (s *Simulator) validateFields(req adminapi.InstanceRequest, errs map[string][]string, nameTaken func(string) bool) {
	add := func(field, msg string) { errs[field] = append(errs[field], msg) }
	tooLong := func(field, label, v string, limit int) {
		if n := utf16Len(v); n > limit {
			add(field, fmt.Sprintf("The length of '%s' must be %d characters or fewer. You entered %d characters.", label, limit, n))
		}
	}

	if req.TenantID == 0 {
		add("TenantId", "'Tenant Id' must not be empty.")
	}
	if strings.TrimSpace(req.TenantName) == "" {
		add("TenantName", "'Tenant Name' must not be empty.")
	}
	tooLong("TenantName", "Tenant Name", req.TenantName, maxTenantNameLen)
	switch {
	case strings.TrimSpace(req.Name) == "":
		add("Name", "'Name' must not be empty.")
	case utf16Len(req.Name) > s.maxName:
		tooLong("Name", "Name", req.Name, s.maxName)
	case nameTaken(req.Name):
		add("Name", "The name must be unique for the tenant.")
	}
	if strings.TrimSpace(req.InstanceType) == "" {
		add("InstanceType", "'Instance Type' must not be empty.")
	}
	tooLong("InstanceType", "Instance Type", req.InstanceType, maxInstanceTypeLen)

	keys := map[string]bool{}
	for i, c := range req.OdsInstanceContexts {
		prefix := fmt.Sprintf("OdsInstanceContexts[%d].", i)
		if strings.TrimSpace(c.ContextKey) == "" {
			add(prefix+"ContextKey", "'Context Key' must not be empty.")
		}
		tooLong(prefix+"ContextKey", "Context Key", c.ContextKey, maxContextLen)
		if strings.TrimSpace(c.ContextValue) == "" {
			add(prefix+"ContextValue", "'Context Value' must not be empty.")
		}
		tooLong(prefix+"ContextValue", "Context Value", c.ContextValue, maxContextLen)
		if keys[c.ContextKey] && len(errs["OdsInstanceContexts"]) == 0 {
			add("OdsInstanceContexts", "ContextKey values must be unique within the list.")
		}
		keys[c.ContextKey] = true
	}

	types := map[string]bool{}
	for i, d := range req.OdsInstanceDerivatives {
		if !slices.Contains(derivativeTypes, d.DerivativeType) {
			add(fmt.Sprintf("OdsInstanceDerivatives[%d].DerivativeType", i), "Allowed values: ReadReplica, Snapshot.")
		}
		if types[d.DerivativeType] && len(errs["OdsInstanceDerivatives"]) == 0 {
			add("OdsInstanceDerivatives", "DerivativeType values must be unique within the list.")
		}
		types[d.DerivativeType] = true
	}
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// setRequest copies the console's fields of req into in, giving contexts and
// derivatives new ids. The caller holds s.mu.
func (s *Simulator) setRequest(in *instance, req adminapi.InstanceRequest) {
	in.tenantName = req.TenantName
	in.name = req.Name
	in.instanceType = req.InstanceType
	in.contexts = make([]adminapi.OdsInstanceContext, 0, len(req.OdsInstanceContexts))
	for _, c := range req.OdsInstanceContexts {
		s.nextCtxID++
		in.contexts = append(in.contexts, adminapi.OdsInstanceContext{ID: s.nextCtxID, InstanceID: in.id, ContextKey: c.ContextKey, ContextValue: c.ContextValue})
	}
	in.derivatives = make([]adminapi.OdsInstanceDerivative, 0, len(req.OdsInstanceDerivatives))
	for _, d := range req.OdsInstanceDerivatives {
		s.nextDerivID++
		in.derivatives = append(in.derivatives, adminapi.OdsInstanceDerivative{ID: s.nextDerivID, InstanceID: in.id, DerivativeType: d.DerivativeType})
	}
}

// registerInstance gives in its odsInstanceId, once, and records the name EdFi_Admin
// now has. The caller holds s.mu.
func (s *Simulator) registerInstance(in *instance) {
	if in.odsInstanceID == nil {
		s.nextOdsID++
		id := s.nextOdsID
		in.odsInstanceID = &id
	}
	in.registeredName = in.name
}

// register completes in under its current name: in EdFi_Admin when the
// simulator registers, in memory otherwise. replace removes the rows in
// still has first, as 2.2.2's renamed does; its completed does not. The
// caller holds s.mu.
func (s *Simulator) register(in *instance, cs string, replace bool) error {
	if s.registers() {
		if err := s.registerRows(in, cs, replace); err != nil {
			return err
		}
	} else {
		s.registerInstance(in)
	}
	in.status = adminapi.StatusCompleted
	return nil
}

// registerRows does what Admin API 2.2.2's completed and renamed do when the
// simulator registers: the instance's rows and a new API client, whose id,
// key and secret the instance then reports. The caller holds s.mu.
func (s *Simulator) registerRows(in *instance, cs string, replace bool) error {
	reg, err := s.writeRows(in, cs, replace)
	if err != nil {
		s.log.Error("could not register the instance in EdFi_Admin", "instance_id", in.id, "err", err)
		return err
	}
	id := reg.odsInstanceID
	in.odsInstanceID, in.registeredName = &id, in.name
	in.clientKey, in.clientSecret = reg.clientKey, reg.clientSecret
	return nil
}

func (s *Simulator) record(in *instance) InstanceState {
	rec := InstanceState{
		ID: in.id, TenantID: in.tenantID, TenantName: s.tenantName(in.tenantID),
		Name: in.name, InstanceType: in.instanceType, Status: in.status,
		ConnectionString: in.connectionString,
		Contexts:         slices.Clone(in.contexts),
		Derivatives:      slices.Clone(in.derivatives),
		Calls:            maps.Clone(in.calls),
		Timeline:         in.timeline,
	}
	if in.odsInstanceID != nil {
		id := *in.odsInstanceID
		rec.OdsInstanceID = &id
	}
	return rec
}

func (s *Simulator) consoleView(in *instance) adminapi.OdsInstance {
	return adminapi.OdsInstance{
		ID: in.id, TenantID: in.tenantID, Name: in.name, InstanceType: in.instanceType, Status: in.status,
		OdsInstanceContexts:    append([]adminapi.OdsInstanceContext{}, in.contexts...),
		OdsInstanceDerivatives: append([]adminapi.OdsInstanceDerivative{}, in.derivatives...),
	}
}

// workerView is the worker's view of in. discovery is the tenant's
// edfiApiDiscoveryUrl, from which an instance registered by the simulator
// gets its OAuth and resource URLs.
func (s *Simulator) workerView(in *instance, discovery string) adminapi.WorkerInstance {
	v := adminapi.WorkerInstance{
		ID: in.id, TenantID: in.tenantID, TenantName: in.tenantName,
		InstanceName: in.name, Status: in.status,
		ClientID: in.clientKey, ClientSecret: in.clientSecret,
	}
	if v.TenantName == "" {
		v.TenantName = s.tenantName(in.tenantID)
	}
	if in.odsInstanceID != nil {
		id := *in.odsInstanceID
		v.OdsInstanceID = &id
	}
	if in.clientKey != "" {
		v.OAuthURL, v.ResourceURL = discovery+"oauth/token", discovery+"data/v3/"
	}
	return v
}

// discoveryURL is the edfiApiDiscoveryUrl the simulator reports: the
// request's scheme and host and /api/.
func discoveryURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/api/"
}

// consoleTenant is the tenant a console read or delete works in.
func consoleTenant(c *call) int {
	if c.tenant != 0 {
		return c.tenant
	}
	return 1
}

// add stores a new instance, whose id is above every other. The caller
// holds s.mu.
func (s *Simulator) add(in *instance) {
	s.instances[in.id] = in
	s.byTenant[in.tenantID] = append(s.byTenant[in.tenantID], in.id)
}

// sortedInstances returns the instances that keep says to, by id. The
// caller holds s.mu.
func (s *Simulator) sortedInstances(keep func(*instance) bool) []*instance {
	var out []*instance
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		if in := s.instances[id]; keep(in) {
			out = append(out, in)
		}
	}
	return out
}

// tenantInstances returns tenant's instances that keep says to, by id,
// reading that tenant's alone (an instance never changes tenant). The
// caller holds s.mu.
func (s *Simulator) tenantInstances(tenant int, keep func(*instance) bool) []*instance {
	var out []*instance
	for _, id := range s.byTenant[tenant] {
		if in := s.instances[id]; keep(in) {
			out = append(out, in)
		}
	}
	return out
}

// --- Tenants and registered instances ---

func (s *Simulator) handleTenants(w http.ResponseWriter, r *http.Request, _ *call) {
	discovery := discoveryURL(r)
	out := make([]adminapi.Tenant, 0, len(s.tenants))
	for i, name := range s.tenants {
		out = append(out, adminapi.Tenant{TenantID: i + 1, Document: adminapi.TenantDocument{Name: name, EdfiAPIDiscoveryURL: discovery}})
	}
	writeJSON(w, http.StatusOK, out)
}

// registeredInstance is one element of GET /v2/odsInstances.
type registeredInstance struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	InstanceType string `json:"instanceType"`
}

func (s *Simulator) handleListRegistered(w http.ResponseWriter, _ *http.Request, c *call) {
	tenant := consoleTenant(c)
	s.mu.Lock()
	list := s.tenantInstances(tenant, func(in *instance) bool {
		return in.odsInstanceID != nil && *in.odsInstanceID != 0 && in.status != adminapi.StatusDeleted
	})
	out := make([]registeredInstance, 0, len(list))
	for _, in := range list {
		out = append(out, registeredInstance{ID: *in.odsInstanceID, Name: in.registeredName, InstanceType: in.instanceType})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b registeredInstance) int { return a.ID - b.ID })
	writeJSON(w, http.StatusOK, out)
}

// --- Console endpoints: /adminconsole/odsInstances ---

func (s *Simulator) handleListRequests(w http.ResponseWriter, r *http.Request, c *call) {
	tenant, status := consoleTenant(c), queryValue(r, "status")
	s.mu.Lock()
	list := s.tenantInstances(tenant, func(in *instance) bool {
		return status == "" || strings.EqualFold(in.status, status)
	})
	out := make([]adminapi.OdsInstance, 0, len(list))
	for _, in := range list {
		out = append(out, s.consoleView(in))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Simulator) handleCreateRequest(w http.ResponseWriter, r *http.Request, c *call) {
	var req adminapi.InstanceRequest
	if !decodeJSONBody(w, r, &req) {
		return
	}
	view, errs := s.create(c.tenant, req)
	if errs != nil {
		s.log.Debug("instance request refused", "op", c.op, "errors", len(errs))
		writeValidation(w, errs)
		return
	}
	w.Header().Set("Location", "/instances/"+strconv.Itoa(view.ID))
	writeJSON(w, http.StatusCreated, view)
}

func (s *Simulator) handleGetRequest(w http.ResponseWriter, _ *http.Request, c *call) {
	s.getOne(w, c.id, consoleTenant(c), func(in *instance) any { return s.consoleView(in) })
}

// getOne answers with view of instance id of tenant (0: any), or 404.
func (s *Simulator) getOne(w http.ResponseWriter, id, tenant int, view func(*instance) any) {
	s.mu.Lock()
	in := s.lookup(id, tenant)
	var v any
	if in != nil {
		v = view(in)
	}
	s.mu.Unlock()
	if in == nil {
		notFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Simulator) handleUpdateRequest(w http.ResponseWriter, r *http.Request, c *call) {
	var req adminapi.InstanceRequest
	if !decodeJSONBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := map[string][]string{}
	tenant := s.resolveTenant(c.tenant, req, errs)
	s.validateRequest(tenant, c.id, req, errs)
	if len(errs) > 0 {
		writeValidation(w, errs)
		return
	}
	in := s.lookup(c.id, tenant)
	if in == nil {
		notFound(w, c.id)
		return
	}
	switch in.status {
	case adminapi.StatusPendingRename, adminapi.StatusPendingDelete:
		conflict(w, fmt.Sprintf("Instance %d is %s; it cannot be changed now.", in.id, in.status))
		return
	}
	from, renamed := in.status, in.name != req.Name
	toRename := renamed && (in.status == adminapi.StatusCompleted || in.status == adminapi.StatusRenameFailed || in.status == adminapi.StatusDeleteFailed)
	if toRename && s.registers() {
		// Admin API 2.2.2 unregisters the instance when the rename is
		// requested; renamed registers it again under the new name.
		if err := s.deleteRows(in); err != nil {
			s.log.Error("could not remove the instance's rows for its rename", "instance_id", in.id, "err", err)
			writeProblem(w, http.StatusInternalServerError, "Internal Server Error", "The instance's registration could not be removed.")
			return
		}
	}
	s.setRequest(in, req)
	if toRename {
		in.status = adminapi.StatusPendingRename
	}
	if s.registers() {
		zero := 0 // every PUT resets it, as in Admin API 2.2.2
		in.odsInstanceID = &zero
	}
	s.log.Info("instance request updated", "op", c.op, "tenant", s.tenantName(in.tenantID), "instance_id", in.id, "from", from, "to", in.status)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) handleDeleteRequest(w http.ResponseWriter, _ *http.Request, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.lookup(c.id, consoleTenant(c))
	if in == nil {
		notFound(w, c.id)
		return
	}
	if in.status != adminapi.StatusCompleted {
		conflict(w, fmt.Sprintf("Instance %d is %s; only a Completed instance can be deleted.", in.id, in.status))
		return
	}
	in.status = adminapi.StatusPendingDelete
	s.log.Info("instance delete requested", "op", c.op, "tenant", s.tenantName(in.tenantID), "instance_id", in.id, "from", adminapi.StatusCompleted, "to", in.status)
	w.WriteHeader(http.StatusAccepted)
}

// lookup returns instance id when it belongs to tenant (0 = any tenant), or
// nil. The caller holds s.mu.
func (s *Simulator) lookup(id, tenant int) *instance {
	in, ok := s.instances[id]
	if !ok || (tenant != 0 && in.tenantID != tenant) {
		return nil
	}
	return in
}

func notFound(w http.ResponseWriter, id int) {
	writeProblem(w, http.StatusNotFound, "Not Found", fmt.Sprintf("Not found: instance with ID %d.", id))
}

func conflict(w http.ResponseWriter, detail string) {
	writeProblem(w, http.StatusConflict, "Conflict", detail)
}

// --- Worker endpoints: /adminconsole/instances ---

// The worker endpoints see every tenant unless a Tenant header names one.
func (s *Simulator) handleListWorker(w http.ResponseWriter, r *http.Request, c *call) {
	status, tenantName := queryValue(r, "status"), queryValue(r, "tenantName")
	s.mu.Lock()
	keep := func(in *instance) bool {
		return (c.tenant == 0 || in.tenantID == c.tenant) &&
			(tenantName == "" || strings.EqualFold(s.tenantName(in.tenantID), tenantName)) &&
			(status == "" || strings.EqualFold(in.status, status))
	}
	var list []*instance
	if c.tenant != 0 {
		list = s.tenantInstances(c.tenant, keep)
	} else {
		list = s.sortedInstances(keep)
	}
	out := make([]adminapi.WorkerInstance, 0, len(list))
	for _, in := range list {
		out = append(out, s.workerView(in, discoveryURL(r)))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Simulator) handleGetWorker(w http.ResponseWriter, r *http.Request, c *call) {
	s.getOne(w, c.id, c.tenant, func(in *instance) any {
		if in.timeline.FirstWorkerRead.IsZero() {
			in.timeline.FirstWorkerRead = stamp()
		}
		return s.workerView(in, discoveryURL(r))
	})
}

func (s *Simulator) handleCompleted(w http.ResponseWriter, r *http.Request, c *call) {
	cs, ok := readConnectionString(w, r)
	if !ok {
		return
	}
	s.workerStep(w, c, func(in *instance) stepResult {
		// Admin API 2.2.2 checks for Completed alone: from any other status
		// it registers the instance again, with a new row and API client,
		// and removes nothing first (rows still there under the same name
		// and type make the unique index refuse it). That is how a Deleted
		// instance is put back.
		switch in.status {
		case adminapi.StatusCompleted:
			if s.registers() {
				return done // Admin API 2.2.2 does nothing more
			}
		case adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusError, adminapi.StatusDeleted:
			if in.status == adminapi.StatusDeleted && !s.registers() {
				in.odsInstanceID = nil // its registration went with the delete: a new one
			}
			if err := s.register(in, cs, false); err != nil {
				return failed("The instance could not be registered.")
			}
		default:
			s.log.Warn("completed outside the lifecycle", "op", c.op, "instance_id", in.id, "status", in.status)
			if err := s.register(in, cs, false); err != nil {
				return failed("The instance could not be registered.")
			}
		}
		in.connectionString = cs
		if in.timeline.Completed.IsZero() {
			in.timeline.Completed = stamp()
		}
		return done
	})
}

func (s *Simulator) handleRenamed(w http.ResponseWriter, r *http.Request, c *call) {
	cs, ok := readConnectionString(w, r)
	if !ok {
		return
	}
	s.workerStep(w, c, func(in *instance) stepResult {
		switch in.status {
		case adminapi.StatusPendingRename:
			if err := s.register(in, cs, true); err != nil {
				in.status = adminapi.StatusRenameFailed
				return failed("The instance could not be registered under its new name.")
			}
		case adminapi.StatusCompleted:
			if s.registers() {
				return done
			}
		default:
			return refused(fmt.Sprintf("Instance %d is %s; renamed needs Pending_Rename.", in.id, in.status))
		}
		in.connectionString = cs
		return done
	})
}

func (s *Simulator) handleRenameFailed(w http.ResponseWriter, _ *http.Request, c *call) {
	s.workerStep(w, c, func(in *instance) stepResult {
		switch in.status {
		case adminapi.StatusPendingRename:
			in.status = adminapi.StatusRenameFailed
		case adminapi.StatusRenameFailed:
		default:
			return refused(fmt.Sprintf("Instance %d is %s; renameFailed needs Pending_Rename.", in.id, in.status))
		}
		return done
	})
}

// deleted and deleteFailed accept every status, as the contract says; a
// call outside the lifecycle is worth a warning, not a refusal.
func (s *Simulator) handleDeleted(w http.ResponseWriter, _ *http.Request, c *call) {
	s.workerStep(w, c, func(in *instance) stepResult {
		switch in.status {
		case adminapi.StatusDeleted:
			return done
		case adminapi.StatusPendingDelete, adminapi.StatusDeleteFailed:
		default:
			s.log.Warn("deleted outside the lifecycle", "op", c.op, "instance_id", in.id, "status", in.status)
		}
		if s.registers() {
			if err := s.deleteRows(in); err != nil {
				s.log.Error("could not remove the instance's rows", "instance_id", in.id, "err", err)
				in.status = adminapi.StatusDeleteFailed
				return failed("The instance's registration could not be removed.")
			}
		}
		in.status = adminapi.StatusDeleted
		return done
	})
}

func (s *Simulator) handleDeleteFailed(w http.ResponseWriter, _ *http.Request, c *call) {
	s.workerStep(w, c, func(in *instance) stepResult {
		switch in.status {
		case adminapi.StatusPendingDelete, adminapi.StatusDeleteFailed:
		default:
			s.log.Warn("deleteFailed outside the lifecycle", "op", c.op, "instance_id", in.id, "status", in.status)
		}
		in.status = adminapi.StatusDeleteFailed
		return done
	})
}

// stepResult is how a worker step ends: done (204), refused (409) or
// failed (500, EdFi_Admin could not be written).
type stepResult struct {
	status int
	detail string
}

var done = stepResult{status: http.StatusNoContent}

func refused(detail string) stepResult { return stepResult{http.StatusConflict, detail} }
func failed(detail string) stepResult  { return stepResult{http.StatusInternalServerError, detail} }

// workerStep looks up the call's instance (404), applies step under the
// lock and answers as step says.
func (s *Simulator) workerStep(w http.ResponseWriter, c *call, step func(*instance) stepResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.lookup(c.id, c.tenant)
	if in == nil {
		notFound(w, c.id)
		return
	}
	from := in.status
	res := step(in)
	if from != in.status {
		s.log.Info("instance status changed", "op", c.op, "tenant", s.tenantName(in.tenantID), "instance_id", in.id, "from", from, "to", in.status)
	}
	switch res.status {
	case http.StatusConflict:
		s.log.Info("worker call refused", "op", c.op, "tenant", s.tenantName(in.tenantID), "instance_id", in.id, "status", from)
		conflict(w, res.detail)
	case http.StatusInternalServerError:
		writeProblem(w, http.StatusInternalServerError, "Internal Server Error", res.detail)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// readConnectionString reads the body of completed and renamed and validates
// it (400 as problem details). It answers the request itself on failure.
func readConnectionString(w http.ResponseWriter, r *http.Request) (string, bool) {
	var body adminapi.ConnectionStringBody
	if !decodeJSONBody(w, r, &body) {
		return "", false
	}
	if msg := validateConnectionString(body.ConnectionString); msg != "" {
		writeValidation(w, map[string][]string{"ConnectionString": {msg}})
		return "", false
	}
	return body.ConnectionString, true
}

// countWorkerCall counts a POST to a worker endpoint of a known instance in
// its InstanceState.Calls. It runs before faults, so faulted calls count.
func (s *Simulator) countWorkerCall(method, path string) {
	if method != http.MethodPost {
		return
	}
	segs := segments(path)
	if len(segs) != 4 || segs[0] != "adminconsole" || segs[1] != "instances" {
		return
	}
	var name string
	switch segs[3] {
	case "completed":
		name = callCompleted
	case "renamed":
		name = callRenamed
	case "renamefailed":
		name = callRenameFailed
	case "deleted":
		name = callDeleted
	case "deletefailed":
		name = callDeleteFailed
	default:
		return
	}
	id, err := strconv.Atoi(segs[2])
	if err != nil {
		return
	}
	s.mu.Lock()
	if in, ok := s.instances[id]; ok {
		in.calls[name]++
	}
	s.mu.Unlock()
}

// stamp is now in UTC, without the monotonic reading, so that a timeline
// saved and restored is the same value.
func stamp() time.Time { return time.Now().UTC().Round(0) }
