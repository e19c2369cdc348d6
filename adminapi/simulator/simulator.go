package simulator

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// Options configures a Simulator. The zero value is a single-tenant Admin API
// named "default" with one-hour tokens.
type Options struct {
	Tenants  []string         // tenant names; default []string{"default"}; tenantId = index+1
	TokenTTL time.Duration    // default 1h
	Now      func() time.Time // default time.Now (tests use it for expiry)
	Logger   *slog.Logger     // default discards
	// FaultSeed seeds the generators that decide Fault.Share; 0 means 1.
	FaultSeed uint64
	// Engine is the Admin API's DatabaseEngine: "PostgreSQL" (the default)
	// or "SqlServer". It sets the longest instance name: 58 characters for
	// PostgreSQL, whose database names have room for no more after
	// Ed-Fi's prefix, and 100 for SQL Server.
	Engine string
	// Registration is RegistrationWorker (the default: the simulator
	// writes no database) or RegistrationAdminAPI: completed, the renaming
	// PUT, renamed and deleted then write EdFi_Admin as Admin API 2.2.2 does,
	// each in its own transaction.
	Registration string
	// AdminDatabases maps a tenant name (case-insensitive) to the pgx
	// connection string of its EdFi_Admin; "*" serves every tenant without
	// an entry of its own. Required with RegistrationAdminAPI and Manage.
	AdminDatabases map[string]string
	// Manage serves the newest Admin API's instance management
	// (/v2/odsInstances/manage, /v3/dataStores/manage) on the manage rows
	// of each tenant's EdFi_Admin (manage.go).
	Manage bool
	// ManageDisabled is that Admin API's EnableDataStoreManagement false:
	// every manage route answers 400.
	ManageDisabled bool
}

// The engines an Admin API can run on (Options.Engine).
const (
	EnginePostgreSQL = "PostgreSQL"
	EngineSQLServer  = "SqlServer"
)

// Validate reports every problem with o at once. New panics with the same
// error, so callers that take options from users should call it first.
func (o Options) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, name := range o.Tenants {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("tenant %d: name is empty", i+1))
		case seen[strings.ToLower(name)]:
			errs = append(errs, fmt.Errorf("tenant %d: name %q is a duplicate (names are case-insensitive)", i+1, name))
		}
		seen[strings.ToLower(name)] = true
	}
	if o.TokenTTL < 0 {
		errs = append(errs, fmt.Errorf("token TTL %s is negative", o.TokenTTL))
	}
	if o.Engine != "" && !strings.EqualFold(o.Engine, EnginePostgreSQL) && !strings.EqualFold(o.Engine, EngineSQLServer) {
		errs = append(errs, fmt.Errorf("engine %q is neither %s nor %s", o.Engine, EnginePostgreSQL, EngineSQLServer))
	}
	switch o.Registration {
	case "", RegistrationWorker:
	case RegistrationAdminAPI:
		if len(o.AdminDatabases) == 0 {
			errs = append(errs, errors.New("registration adminapi needs the EdFi_Admin database of each tenant (AdminDatabases)"))
		}
	default:
		errs = append(errs, fmt.Errorf("registration %q is neither %s nor %s", o.Registration, RegistrationWorker, RegistrationAdminAPI))
	}
	if o.Manage && len(o.AdminDatabases) == 0 {
		errs = append(errs, errors.New("manage needs the EdFi_Admin database of each tenant (AdminDatabases): the manage rows live there"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simulator options: %w", err)
	}
	return nil
}

// Simulator is an in-memory Admin API. It is safe for concurrent use.
type Simulator struct {
	tenants   []string
	tenantIDs map[string]int // by foldKey of the name
	ttl       time.Duration
	now       func() time.Time
	log       *slog.Logger
	seed      uint64
	routes    []route

	mu          sync.Mutex
	clients     map[string]client    // by client id
	tokens      map[string]tokenInfo // by access token
	instances   map[int]*instance
	byTenant    map[int][]int // each tenant's instance ids, ascending: lists read one tenant without sorting all
	nextID      int
	nextCtxID   int
	nextDerivID int
	nextOdsID   int
	faults      []*activeFault
	faultSeq    uint64
	statePath   string // set by Persist

	maxName   int              // longest instance name, by engine
	admin     *adminDatabases  // nil unless the simulator registers (RegistrationAdminAPI)
	manageDBs *manageDatabases // nil unless it serves the manage routes (Manage)
	manageOff bool             // Options.ManageDisabled

	saveMu sync.Mutex
}

// New returns a Simulator with no clients and no instances. It panics when
// opts are invalid (see Options.Validate).
func New(opts Options) *Simulator {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	s := &Simulator{
		ttl:       opts.TokenTTL,
		now:       opts.Now,
		log:       opts.Logger,
		seed:      opts.FaultSeed,
		clients:   map[string]client{},
		tokens:    map[string]tokenInfo{},
		instances: map[int]*instance{},
		byTenant:  map[int][]int{},
		tenantIDs: map[string]int{},
	}
	for _, name := range opts.Tenants {
		s.tenants = append(s.tenants, strings.TrimSpace(name))
	}
	if len(s.tenants) == 0 {
		s.tenants = []string{"default"}
	}
	for i, name := range s.tenants {
		if k := foldKey(name); s.tenantIDs[k] == 0 {
			s.tenantIDs[k] = i + 1 // the first of the name, as a search would find
		}
	}
	if s.ttl == 0 {
		s.ttl = time.Hour
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.seed == 0 {
		s.seed = 1
	}
	s.maxName = maxNameLenPostgreSQL
	if strings.EqualFold(opts.Engine, EngineSQLServer) {
		s.maxName = maxNameLenSQLServer
	}
	if opts.Registration == RegistrationAdminAPI {
		s.admin = &adminDatabases{conns: map[string]string{}, pools: map[string]*pgxpool.Pool{}}
		for tenant, conn := range opts.AdminDatabases {
			s.admin.conns[strings.ToLower(tenant)] = conn
		}
	}
	if opts.Manage {
		dbs := &adminDatabases{conns: map[string]string{}, pools: map[string]*pgxpool.Pool{}}
		for tenant, conn := range opts.AdminDatabases {
			dbs.conns[strings.ToLower(tenant)] = conn
		}
		s.manageDBs, s.manageOff = &manageDatabases{adminDatabases: dbs, ready: map[*pgxpool.Pool]bool{}}, opts.ManageDisabled
	}
	s.routes = s.buildRoutes()
	if s.manageDBs != nil {
		s.routes = append(s.routes, s.manageRoutes()...)
	}
	return s
}

// Close releases the EdFi_Admin connections of a simulator that registers
// or serves the manage routes.
func (s *Simulator) Close() {
	if s.admin != nil {
		s.admin.close()
	}
	if s.manageDBs != nil {
		s.manageDBs.close()
	}
}

// registers reports whether the simulator writes EdFi_Admin itself.
func (s *Simulator) registers() bool { return s.admin != nil }

// route is one endpoint of the contract. pattern holds lower-case path
// segments; "{id}" matches one segment that must be an integer.
type route struct {
	method  string
	pattern []string
	op      string
	public  bool // no bearer token
	handle  func(w http.ResponseWriter, r *http.Request, c *call)
}

// call is what routing and authentication learned about a request.
type call struct {
	op     string
	id     int // the {id} segment, when the route has one
	tenant int // 1-based tenant id named by the Tenant header; 0 = none
}

func (s *Simulator) buildRoutes() []route {
	r := func(method, path, op string, h func(http.ResponseWriter, *http.Request, *call)) route {
		return route{method: method, pattern: segments(path), op: op, handle: h}
	}
	public := func(rt route) route { rt.public = true; return rt }
	return []route{
		public(r(http.MethodPost, "/connect/register", "register", s.handleRegister)),
		public(r(http.MethodPost, "/connect/token", "token", s.handleToken)),
		r(http.MethodGet, "/adminconsole/tenants", "tenants", s.handleTenants),
		r(http.MethodGet, "/adminconsole/odsinstances", "list_requests", s.handleListRequests),
		r(http.MethodPost, "/adminconsole/odsinstances", "create_request", s.handleCreateRequest),
		r(http.MethodGet, "/adminconsole/odsinstances/{id}", "get_request", s.handleGetRequest),
		r(http.MethodPut, "/adminconsole/odsinstances/{id}", "update_request", s.handleUpdateRequest),
		r(http.MethodDelete, "/adminconsole/odsinstances/{id}", "delete_request", s.handleDeleteRequest),
		r(http.MethodGet, "/v2/odsinstances", "list_registered", s.handleListRegistered),
		r(http.MethodGet, "/adminconsole/instances", "list_worker", s.handleListWorker),
		r(http.MethodGet, "/adminconsole/instances/{id}", "get_worker", s.handleGetWorker),
		r(http.MethodPost, "/adminconsole/instances/{id}/completed", callCompleted, s.handleCompleted),
		r(http.MethodPost, "/adminconsole/instances/{id}/renamed", callRenamed, s.handleRenamed),
		r(http.MethodPost, "/adminconsole/instances/{id}/renamefailed", callRenameFailed, s.handleRenameFailed),
		r(http.MethodPost, "/adminconsole/instances/{id}/deleted", callDeleted, s.handleDeleted),
		r(http.MethodPost, "/adminconsole/instances/{id}/deletefailed", callDeleteFailed, s.handleDeleteFailed),
	}
}

// Names of the worker calls, as InstanceState.Calls counts them.
const (
	callCompleted    = "completed"
	callRenamed      = "renamed"
	callRenameFailed = "renameFailed"
	callDeleted      = "deleted"
	callDeleteFailed = "deleteFailed"
)

const (
	faultsPath    = "/_simulator/faults"
	instancesPath = "/_simulator/instances"
)

// ServeHTTP serves the Admin API contract.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := canonicalPath(r.URL.Path)
	if path == faultsPath {
		s.serveFaults(w, r)
		return
	}
	if path == instancesPath && r.Method == http.MethodGet {
		// Inspection for test deployments (a chaos suite in another
		// process): every record, with its call counts. No token, like
		// the fault endpoints, so no connection string: those carry the
		// ODS password, and the worker routes serve them to a token.
		recs := s.Instances()
		for i := range recs {
			recs[i].ConnectionString = ""
		}
		writeJSON(w, http.StatusOK, recs)
		return
	}
	if id, ok := statusPath(path); ok && r.Method == http.MethodPost {
		s.serveSetStatus(w, r, id)
		return
	}
	if strings.HasPrefix(path, "/_simulator/") {
		http.NotFound(w, r)
		return
	}
	s.countWorkerCall(r.Method, path)
	if !s.applyFault(w, r, path) {
		return
	}

	rt, id, allowed := s.match(r.Method, path)
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		http.NotFound(w, r)
		return
	}
	c := &call{op: rt.op}
	if !rt.public {
		if !s.authenticate(w, r) {
			return
		}
		if name := strings.TrimSpace(r.Header.Get("Tenant")); name != "" {
			t := s.tenantByName(name)
			if t == 0 {
				s.log.Debug("unknown tenant in Tenant header", "op", c.op, "tenant", name)
				writeJSON(w, http.StatusBadRequest, problem{ProblemDetails: adminapi.ProblemDetails{
					Title: "Invalid tenant", Status: http.StatusBadRequest,
					Errors: map[string][]string{"Tenant": {fmt.Sprintf("Tenant %q does not exist.", name)}},
				}})
				return
			}
			c.tenant = t
		}
	}
	// Like ASP.NET parameter binding, after authentication: 400, not 404.
	if id != "" {
		n, err := strconv.Atoi(id)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Failed to bind parameter \"int id\" from %q.", id))
			return
		}
		c.id = n
	}
	rt.handle(w, r, c)
	if r.Method != http.MethodGet && !rt.public {
		s.saveAfterChange()
	}
}

// match finds the route for method and path. With no route for the method,
// allowed lists the methods that path does have.
func (s *Simulator) match(method, path string) (rt *route, id string, allowed []string) {
	segs := segments(path)
	for i := range s.routes {
		cand := &s.routes[i]
		candID, ok := matchSegments(cand.pattern, segs)
		if !ok {
			continue
		}
		if cand.method == method {
			return cand, candID, nil
		}
		if !slices.Contains(allowed, cand.method) {
			allowed = append(allowed, cand.method)
		}
	}
	return nil, "", allowed
}

func matchSegments(pattern, segs []string) (id string, ok bool) {
	if len(pattern) != len(segs) {
		return "", false
	}
	for i, p := range pattern {
		if p == "{id}" {
			id = segs[i]
			continue
		}
		if p != segs[i] {
			return "", false
		}
	}
	return id, true
}

// canonicalPath lower-cases p and drops one trailing slash, so that routes
// and fault patterns match case-insensitively.
func canonicalPath(p string) string {
	p = strings.ToLower(p)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	if p == "" {
		p = "/"
	}
	return p
}

func segments(path string) []string {
	path = strings.Trim(canonicalPath(path), "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// TenantID returns the id of the tenant called name (case-insensitive), or
// 0 when there is none: what a console puts in a request's tenantId.
func (s *Simulator) TenantID(name string) int { return s.tenantByName(name) }

// tenantByName returns the 1-based id of the tenant called name
// (case-insensitive), or 0.
func (s *Simulator) tenantByName(name string) int {
	return s.tenantIDs[foldKey(name)]
}

// foldKey is s with each rune replaced by the smallest rune of its simple
// case-folding orbit: two strings have the same key exactly when
// strings.EqualFold holds, so a map keyed by it matches names
// case-insensitively as the Admin API does.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

func (s *Simulator) tenantName(id int) string {
	if id < 1 || id > len(s.tenants) {
		return ""
	}
	return s.tenants[id-1]
}
