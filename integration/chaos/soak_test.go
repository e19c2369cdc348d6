package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/internal/reconcile"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

var (
	soakSeed = flag.Uint64("seed", 0, "the soak's seed (0: a new one, printed); replays a run")
	soakFor  = flag.Duration("soak", 0, "how long the soak's operations and faults run (0: INSTANCEMGR_SOAK_DURATION, else 10m with INSTANCEMGR_SOAK_FULL=1, else the CI size)")
	soakLine = flag.String("flavor", "", "the Admin API line the soak runs: adminconsole or manage (\"\": INSTANCEMGR_SOAK_FLAVOR, else both, one after the other)")
)

// soakFlavors are the Admin API lines to soak: the flag, the environment,
// or both.
func soakFlavors(t *testing.T) []string {
	v := *soakLine
	if v == "" {
		v = os.Getenv("INSTANCEMGR_SOAK_FLAVOR")
	}
	switch v {
	case "":
		return []string{config.FlavorAdminConsole, config.FlavorManage}
	case config.FlavorAdminConsole, config.FlavorManage:
		return []string{v}
	}
	t.Fatalf("soak flavor %q is neither %s nor %s", v, config.FlavorAdminConsole, config.FlavorManage)
	return nil
}

// soakKey is the manage flavor's encryption key, as the Admin API's
// AppSettings:EncryptionKey.
const soakKey = "c29hay1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="

// soakDuration is how long operations and faults run: the flag, the
// environment, the full size (task test:soak) or the CI size.
func soakDuration(t *testing.T) time.Duration {
	if *soakFor > 0 {
		return *soakFor
	}
	if v := os.Getenv("INSTANCEMGR_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("INSTANCEMGR_SOAK_DURATION: %v", err)
		}
		return d
	}
	if os.Getenv("INSTANCEMGR_SOAK_FULL") == "1" {
		return 10 * time.Minute
	}
	return 40 * time.Second
}

// soakTenant is one tenant: its EdFi_Admin and the server its databases
// live on.
type soakTenant struct {
	name   string
	id     int
	server *pgxpool.Pool
	admin  *pgxpool.Pool
	conn   string // admin's connection string (pgx form)
}

// handMade is a database someone made by hand at a name a request was
// about to use: it must come out as it went in.
type handMade struct {
	tenant, name, database string
	server                 *pgxpool.Pool
	oid                    uint32
	marker                 string
}

type soak struct {
	*sys
	// manage runs the newest Admin API's line: requests go to the bridges'
	// manage routes, authorized by the simulator, and live in each
	// tenant's EdFi_Admin.
	manage     bool
	key        odscrypt.Key
	secret     string
	manageURLs []string // each bridge's manage routes
	rng        *rand.Rand
	naming     provisioning.Naming
	tenants    []*soakTenant
	bridges    []*systest.Proc
	handMade   []handMade
	ops        map[string]int
	injected   map[string]int
	// prevName is each instance's name before its last rename, for
	// renames back.
	prevName map[int]string
	// stopped are processes frozen by SIGSTOP, with when they resume.
	stopped map[*systest.Proc]time.Time
	// down are NATS nodes killed, with when they restart.
	down  map[*systest.Proc]time.Time
	names int
	// restores are the instances a restore put back, by id.
	restores map[int]restoredAs
	// violations are those seen as an operation returned.
	violations map[string][]string
}

// A soak: three tenants (two on one server, one on a private cluster that
// restarts), three consumer processes and two bridges on a three-node NATS
// cluster, a random mix of creates, renames, renames back, deletes (kept
// in trash a few seconds, purged by the replicas), deletes asked again
// after they failed, restores and purges by an operator, colliding names
// and hand-made databases at names about to be used, under faults drawn
// at random. Then the faults stop, the system drains, and an invariant
// checker compares the Admin API, the ledgers, dbo.odsinstances, the
// reservations, the trash and the servers' databases. Seeded: the seed is printed, and -seed replays the
// same operations and faults (the timing of real processes still varies).
func TestSoak(t *testing.T) {
	for _, flavor := range soakFlavors(t) {
		t.Run(flavor, func(t *testing.T) { runSoak(t, flavor) })
	}
}

func runSoak(t *testing.T, flavor string) {
	seed := *soakSeed
	if seed == 0 {
		if v := os.Getenv("INSTANCEMGR_SOAK_SEED"); v != "" {
			var err error
			if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
				t.Fatalf("INSTANCEMGR_SOAK_SEED: %v", err)
			}
		} else {
			seed = uint64(time.Now().UnixNano())
		}
	}
	duration := soakDuration(t)
	t.Logf("SOAK %s, seed %d, %s of operations and faults (replay: go test ./integration/chaos/ -run TestSoak -flavor %s -seed %d -soak %s)", flavor, seed, duration, flavor, seed, duration)
	s := newSoak(t, seed, flavor)
	start := time.Now()
	deadline := start.Add(duration)
	nextOp, nextFault := start, start.Add(2*time.Second)
	for time.Now().Before(deadline) {
		now := time.Now()
		s.resume(now)
		if !now.Before(nextOp) {
			s.operate()
			nextOp = now.Add(time.Duration(150+s.rng.IntN(350)) * time.Millisecond)
		}
		if !now.Before(nextFault) {
			s.fault()
			nextFault = now.Add(time.Duration(1500+s.rng.IntN(2500)) * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // the schedule's tick, not a wait for a condition
	}
	s.calm()
	drained := s.drain()
	violations, info := s.check()
	s.table(time.Since(start), drained, violations, info)
	if n := len(violations); n > 0 {
		t.Fatalf("%d invariant violations (seed %d): %v", n, seed, violations)
	}
	// No violations in a run where nothing was carried out says nothing.
	if info["requests "+adminapi.StatusCompleted]+info["requests "+adminapi.StatusDeleted] == 0 {
		t.Fatalf("no request ended Completed or Deleted (seed %d): the soak checked nothing", seed)
	}
}

func newSoak(t *testing.T, seed uint64, flavor string) *soak {
	ctx := context.Background()
	s := &sys{t: t, h: systest.New(t), world: itest.NewWorld(t, "")}
	s.prefix, s.pg = s.world.Prefix, s.world.PG
	s.private = s.h.Postgres("")
	privateWorld := itest.NewWorld(t, s.private.URL)
	template := s.world.Template
	// The private server needs the same template under the same name.
	priv, err := connstr.ParsePostgres(s.private.URL)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := postgres.NewEngine(ctx, priv.PgxConnString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.EnsureMinimalTemplate(ctx, template, func(db string) string { return priv.WithDatabase(db).PgxConnString() }); err != nil {
		t.Fatal(err)
	}
	engine.Close()

	so := &soak{sys: s, manage: flavor == config.FlavorManage, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		naming: provisioning.Naming{Pattern: s.prefix + "_{tenant}_{name}"},
		ops:    map[string]int{}, injected: map[string]int{}, prevName: map[int]string{},
		stopped: map[*systest.Proc]time.Time{}, down: map[*systest.Proc]time.Time{},
		restores: map[int]restoredAs{}, violations: map[string][]string{}}
	t.Cleanup(so.dropTrash)
	var tenantCfg strings.Builder
	for i, name := range []string{"t1", "t2", "t3"} {
		w, master := s.world, s.world.Master
		if name == "t3" {
			w, master = privateWorld, priv
		}
		admin, adminDB := w.AdminDatabase(t, "admin_"+name)
		so.tenants = append(so.tenants, &soakTenant{name: name, id: i + 1, server: w.PG, admin: admin, conn: master.WithDatabase(adminDB).PgxConnString()})
		if so.manage {
			// Ids of different tenants never meet, so that one map of
			// requests by id serves the checker in both flavors.
			if _, err := admin.Exec(ctx, simulator.ManageSchema+fmt.Sprintf(`; ALTER TABLE adminapi.odsinstancemanages ALTER COLUMN id RESTART WITH %d`, i*100000+1)); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&tenantCfg, "  %s: {master: %q, admin: %q, ods: %q}\n", name, master.ADONet(), master.WithDatabase(adminDB).ADONet(), master.WithDatabase("{0}").ADONet())
	}
	s.admin = so.tenants[0].admin

	s.natsURL, s.nats = s.h.NATS(bins.NATSServer, 3)
	simPort := testenv.FreePort(t)
	s.simURL = fmt.Sprintf("http://127.0.0.1:%d", simPort)
	secret := "soak-" + s.prefix
	// Tokens last three seconds: every replica meets expired ones.
	simArgs := []string{"simulator", "-listen", fmt.Sprintf("127.0.0.1:%d", simPort), "-client-id", "worker", "-tenants", "t1,t2,t3", "-token-ttl", "3s"}
	adminAPI := `adminApi: {baseUrl: %q, clientId: worker, timeout: 2s, maxAttempts: 3}`
	prov := `provisioning: {template: %q, namePattern: %q, allowDelete: true, deleteRetention: %s}`
	if so.manage {
		// The simulator only authorizes: the bridges serve the write routes.
		simArgs = append(simArgs, "-manage")
		for _, tn := range so.tenants {
			simArgs = append(simArgs, "-edfi-admin-tenant", tn.name+"="+tn.conn)
		}
		adminAPI = `adminApi: {flavor: manage, baseUrl: %q, timeout: 2s}`
		prov = `provisioning: {template: %[3]q, templates: {Minimal: %[3]q, Sample: %[3]q}, namePattern: %[4]q, naming: pattern, allowDelete: true, deleteRetention: %[5]s, encryptionKey: "` + soakKey + `"}`
		if so.key, err = odscrypt.ParseKey(soakKey); err != nil {
			t.Fatal(err)
		}
	}
	s.sim = s.h.Start("simulator", bins.Instancemgr, []string{"INSTANCEMGR_SIMULATOR_CLIENT_SECRET=" + secret}, simArgs...)
	s.env = []string{"INSTANCEMGR_ADMINAPI_CLIENT_SECRET=" + secret}
	s.cfgPath = s.h.Dir() + "/instancemgr.yaml"
	cfg := fmt.Sprintf(adminAPI+`
nats: {url: %q, replicas: 3, ackWait: 2s, maxDeliver: 8, backoff: [2s, 4s]}
bridge: {pollInterval: 300ms}
consumer: {concurrency: 3, shutdownGrace: 5s, retryDelay: 200ms, maxRetryDelay: 2s}
limits: {instancesPerTenant: -1, createsPerMinute: -1, createsPerMinutePerClient: -1}
`+prov+`
logFormat: text
tenants:
%s`, s.simURL, s.natsURL, template, so.naming.Pattern, soakRetention, tenantCfg.String())
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.connectConsole(secret)
	so.secret = secret
	// Two replicas with slow jobs (faults land mid-job), one whose lock is
	// shorter than its work (no heartbeat, jobs longer than the ack wait).
	s.startReplica("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=200ms")
	s.startReplica("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=200ms")
	s.startReplica("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=3s", "INSTANCEMGR_TEST_DISABLE_HEARTBEAT=1")
	for i := range 2 {
		path := s.cfgPath
		if so.manage {
			// Each bridge serves the manage routes on a port of its own.
			listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			so.manageURLs = append(so.manageURLs, "http://"+listen)
			path = fmt.Sprintf("%s/bridge-%d.yaml", s.h.Dir(), i+1)
			withListen := strings.Replace(cfg, "adminApi: {flavor: manage,", fmt.Sprintf("adminApi: {flavor: manage, manageListen: %q,", listen), 1)
			if err := os.WriteFile(path, []byte(withListen), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		so.bridges = append(so.bridges, s.h.Start(fmt.Sprintf("bridge-%d", i+1), bins.Instancemgr, s.env, "bridge", "-config", path))
	}
	return so
}

func (s *soak) tenant() *soakTenant { return s.tenants[s.rng.IntN(len(s.tenants))] }

func (s *soak) freshName() string {
	s.names++
	return fmt.Sprintf("School %d", s.names)
}

func (s *soak) request(tn *soakTenant, name string) adminapi.InstanceRequest {
	return adminapi.InstanceRequest{TenantID: tn.id, TenantName: tn.name, Name: name, InstanceType: "enterprise",
		OdsInstanceContexts:    []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{{DerivativeType: "ReadReplica"}}}
}

// pick is a random instance with one of the statuses, or nil.
func (s *soak) pick(statuses ...string) *simulator.InstanceState {
	var ids []int
	recs := s.records()
	for id, r := range recs {
		if slices.Contains(statuses, r.Status) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Ints(ids)
	r := recs[ids[s.rng.IntN(len(ids))]]
	return &r
}

func (s *soak) tenantOf(r *simulator.InstanceState) *soakTenant {
	for _, tn := range s.tenants {
		if tn.name == r.TenantName {
			return tn
		}
	}
	s.t.Fatalf("instance %d of unknown tenant %q", r.ID, r.TenantName)
	return nil
}

// operate asks for one operation, as the Admin Console would.
func (s *soak) operate() {
	ctx := context.Background()
	switch n := s.rng.IntN(100); {
	case n < 35:
		tn := s.tenant()
		if s.manage {
			s.ops["create"+s.manageCreate(tn, s.freshName())]++
			return
		}
		if _, err := s.console.CreateOdsInstance(ctx, tn.name, s.request(tn, s.freshName())); err != nil {
			s.t.Fatalf("create: %v", err)
		}
		s.ops["create"]++
	case n < 45:
		// A name that maps to the database of another request ("School 3"
		// and "School_3").
		r := s.pick(adminapi.StatusCompleted, adminapi.StatusPending)
		if r == nil || !strings.Contains(r.Name, " ") {
			return
		}
		tn := s.tenantOf(r)
		if s.manage {
			// Ed-Fi's check of a name taken compares names, not the
			// databases they map to: this one is accepted.
			s.ops["create, colliding name"+s.manageCreate(tn, strings.ReplaceAll(r.Name, " ", "_"))]++
			return
		}
		_, err := s.console.CreateOdsInstance(ctx, tn.name, s.request(tn, strings.ReplaceAll(r.Name, " ", "_")))
		var apiErr *adminapi.Error
		switch {
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest:
			s.ops["create, colliding name, refused by the Admin API"]++
		case err != nil:
			s.t.Fatalf("create a colliding name: %v", err)
		default:
			s.ops["create, colliding name"]++
		}
	case n < 52:
		s.handMadeAt()
	case n < 67:
		r := s.pick(adminapi.StatusCompleted, adminapi.StatusRenameFailed)
		if r == nil || s.manage { // the newest Admin API has no rename of a managed instance
			return
		}
		name, kind := s.freshName(), "rename"
		if prev, ok := s.prevName[r.ID]; ok && s.rng.IntN(3) == 0 {
			name, kind = prev, "rename back"
		}
		if err := s.console.UpdateOdsInstance(ctx, r.TenantName, r.ID, s.request(s.tenantOf(r), name)); err != nil {
			s.t.Fatalf("rename %d: %v", r.ID, err)
		}
		s.prevName[r.ID] = r.Name
		s.ops[kind]++
	case n < 80:
		r := s.pick(adminapi.StatusCompleted)
		if r == nil {
			return
		}
		if s.manage {
			s.ops["delete"+s.manageDelete(s.tenantOf(r), r.ID)]++
			return
		}
		kind := "delete"
		if s.rng.IntN(3) == 0 {
			// This one fails once at the Admin API: Delete_Failed.
			s.addFaults(simulator.Fault{Method: "POST", Path: fmt.Sprintf("/adminconsole/instances/%d/deleted", r.ID), Status: 400, Times: 1})
			kind = "delete, to fail"
		}
		if err := s.console.DeleteOdsInstance(ctx, r.TenantName, r.ID); err != nil {
			s.t.Fatalf("delete %d: %v", r.ID, err)
		}
		s.ops[kind]++
	case n < 90:
		s.restore()
	case n < 92:
		s.purgeNow()
	default:
		// A delete that failed, set right by an operator and asked again.
		r := s.pick(adminapi.StatusDeleteFailed)
		if r == nil {
			return
		}
		if s.manage {
			tn := s.tenantOf(r)
			s.setManageStatus(tn, r.ID, managerows.Created)
			asked := s.manageDelete(tn, r.ID)
			if asked == ", no token (token endpoint fault)" || strings.HasPrefix(asked, ", refused") {
				// Refused, so the operator puts the request back as it was:
				// its delete failed (its database may be in trash), and
				// Created would say it is in use.
				s.setManageStatus(tn, r.ID, managerows.DeleteError)
			}
			s.ops["delete asked again"+asked]++
			return
		}
		s.setStatus(r.ID, adminapi.StatusCompleted)
		if err := s.console.DeleteOdsInstance(ctx, r.TenantName, r.ID); err != nil {
			s.t.Fatalf("delete %d again: %v", r.ID, err)
		}
		s.ops["delete asked again"]++
	}
}

// handMadeAt makes a database by hand under the name a request is about
// to get, with a marker table, then asks for that request.
func (s *soak) handMadeAt() {
	ctx := context.Background()
	tn, name := s.tenant(), s.freshName()
	db, err := s.naming.DatabaseName(tn.name, name)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := tn.server.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		s.t.Fatalf("hand-made database: %v", err)
	}
	marker := fmt.Sprintf("hand-made %d", s.rng.Uint64())
	c, err := pgx.Connect(ctx, connFor(tn.server, db))
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `CREATE TABLE marker (v text); INSERT INTO marker VALUES ('`+marker+`')`); err != nil {
		s.t.Fatal(err)
	}
	c.Close(ctx)
	h := handMade{tenant: tn.name, name: name, database: db, server: tn.server, marker: marker}
	if err := tn.server.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, db).Scan(&h.oid); err != nil {
		s.t.Fatal(err)
	}
	s.handMade = append(s.handMade, h)
	if s.manage {
		s.ops["create over a hand-made database"+s.manageCreate(tn, name)]++
		return
	}
	if _, err := s.console.CreateOdsInstance(ctx, tn.name, s.request(tn, name)); err != nil {
		s.t.Fatalf("create over a hand-made database: %v", err)
	}
	s.ops["create over a hand-made database"]++
}

// connFor is a connection string for database on the server of pool.
func connFor(pool *pgxpool.Pool, database string) string {
	cfg := pool.Config().ConnConfig
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, database)
}

// fault injects one fault drawn at random.
func (s *soak) fault() {
	consumers := s.running(s.replicas)
	switch n := s.rng.IntN(9); n {
	case 0, 1:
		if len(consumers) == 0 {
			return
		}
		p := consumers[s.rng.IntN(len(consumers))]
		p.Kill()
		p.Restart()
		s.injected["SIGKILL consumer"]++
	case 2:
		if len(consumers) == 0 {
			return
		}
		p := consumers[s.rng.IntN(len(consumers))]
		p.Signal(syscall.SIGSTOP)
		s.stopped[p] = time.Now().Add(5 * time.Second) // past its lock
		s.injected["SIGSTOP consumer"]++
	case 3:
		bridges := s.running(s.bridges)
		if len(bridges) == 0 {
			return
		}
		p := bridges[s.rng.IntN(len(bridges))]
		if s.rng.IntN(2) == 0 {
			p.Kill()
			p.Restart()
			s.injected["SIGKILL bridge"]++
		} else {
			p.Signal(syscall.SIGSTOP)
			s.stopped[p] = time.Now().Add(3 * time.Second)
			s.injected["SIGSTOP bridge"]++
		}
	case 4:
		s.private.Restart()
		for _, tn := range s.tenants {
			tn.server.Reset()
			tn.admin.Reset()
		}
		s.injected["PostgreSQL restart (private cluster)"]++
	case 5:
		if len(s.down) > 0 {
			return // one node at a time: the cluster keeps its quorum
		}
		leader := s.natsNode(s.streamLeader())
		leader.Kill()
		s.down[leader] = time.Now().Add(3 * time.Second)
		s.injected["NATS stream leader killed and restarted"]++
	case 6:
		if s.manage { // the Admin API authorizing the write calls
			s.addFaults(simulator.Fault{Path: "/v2/odsInstances/manage", Method: "GET", Status: 503, Share: 0.3, Times: 10})
			s.injected["Admin API 5xx on authorizing"]++
			return
		}
		s.addFaults(simulator.Fault{Path: "/adminconsole/instances/*/*", Method: "POST", Status: 503, Share: 0.3, Times: 10})
		s.injected["Admin API 5xx"]++
	case 7:
		if s.manage {
			s.addFaults(simulator.Fault{Path: "/v3/dataStores/manage/*", Method: "GET", Delay: 2500 * time.Millisecond, Share: 0.2, Times: 5})
			s.injected["Admin API timeouts on authorizing"]++
			return
		}
		s.addFaults(simulator.Fault{Path: "/adminconsole/instances/*", Method: "GET", Delay: 2500 * time.Millisecond, Share: 0.2, Times: 5})
		s.injected["Admin API timeouts"]++
	case 8:
		s.addFaults(simulator.Fault{Path: "/connect/token", Method: "POST", Status: 503, Times: 3})
		s.injected["token endpoint 5xx (tokens expire every 3s)"]++
	}
}

func (s *soak) running(ps []*systest.Proc) []*systest.Proc {
	var out []*systest.Proc
	for _, p := range ps {
		if _, frozen := s.stopped[p]; !frozen && p.Alive() {
			out = append(out, p)
		}
	}
	return out
}

// resume wakes frozen processes and restarts NATS nodes whose time came.
func (s *soak) resume(now time.Time) {
	for p, at := range s.stopped {
		if !now.Before(at) {
			p.Signal(syscall.SIGCONT)
			delete(s.stopped, p)
		}
	}
	for p, at := range s.down {
		if !now.Before(at) {
			p.Restart()
			delete(s.down, p)
		}
	}
}

// calm ends every fault: processes resume, nodes restart, the fault plan
// is emptied.
func (s *soak) calm() {
	far := time.Now().Add(time.Hour)
	s.resume(far)
	s.sys.faults(nil)
}

func (s *soak) addFaults(f simulator.Fault) {
	body, _ := json.Marshal([]simulator.Fault{f})
	resp, err := http.Post(s.simURL+"/_simulator/faults", "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("fault refused: %d", resp.StatusCode)
	}
}

func (s *soak) setStatus(id int, status string) {
	resp, err := http.Post(fmt.Sprintf("%s/_simulator/instances/%d/status", s.simURL, id), "application/json", strings.NewReader(`{"status": "`+status+`"}`))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		s.t.Fatalf("set status of %d: %d", id, resp.StatusCode)
	}
}

// pendingStatus is the operation each pending status waits for, and the
// one a create that ended is left in (Error: the newest line's
// CreateError; 2.2.2's stays Pending): each has a dead letter that says why.
var pendingStatus = map[string]jobs.Operation{
	adminapi.StatusPending:       jobs.OpCreate,
	adminapi.StatusError:         jobs.OpCreate,
	adminapi.StatusPendingRename: jobs.OpRename,
	adminapi.StatusPendingDelete: jobs.OpDelete,
}

// deadLetters are the dead letters by (tenant, instance, operation).
func (s *soak) deadLetters(js jetstream.JetStream) map[string][]jobs.DeadLetter {
	out, err := s.tryDeadLetters(js)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// tryDeadLetters is deadLetters, or why the stream could not be read.
func (s *soak) tryDeadLetters(js jetstream.JetStream) (map[string][]jobs.DeadLetter, error) {
	all, err := itest.ReadDeadLetters(context.Background(), js)
	if err != nil {
		return nil, err
	}
	out := map[string][]jobs.DeadLetter{}
	for _, dl := range all {
		var j jobs.Job
		if err := json.Unmarshal(dl.Message, &j); err != nil {
			continue
		}
		k := fmt.Sprintf("%s/%d/%s", j.Tenant, j.InstanceID, j.Operation)
		out[k] = append(out[k], dl)
	}
	return out, nil
}

// drain waits until the consumer has nothing pending or un-acked and
// every request is settled or a dead letter; it returns how long it took.
func (s *soak) drain() time.Duration {
	start := time.Now()
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1))
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	testenv.Eventually(s.t, 4*time.Minute, "the system to drain", func() bool {
		e := s.effects(nil)
		if e.Pending != 0 || e.AckPending != 0 {
			return false
		}
		// Right after the calm a restarted NATS node may still be
		// catching up: the stream answers 503 until it is.
		dead, err := s.tryDeadLetters(js)
		if err != nil {
			return false
		}
		for _, r := range s.records() {
			if op, pending := pendingStatus[r.Status]; pending && len(dead[fmt.Sprintf("%s/%d/%s", r.TenantName, r.ID, op)]) == 0 {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}

// check runs reconcile's comparison of the Admin API, the ledgers, the
// dbo rows, the reservations and the databases, as instancemgr reconcile
// does: each difference must be one the soak caused on purpose (explained
// says which); then the invariants reconcile cannot see. It returns the
// violations by kind, and what it counted.
func (s *soak) check() (violations map[string][]string, info map[string]int) {
	ctx := context.Background()
	violations, info = map[string][]string{}, map[string]int{}
	bad := func(kind, format string, args ...any) {
		violations[kind] = append(violations[kind], fmt.Sprintf(format, args...))
	}
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	dead := s.deadLetters(js)
	recs := s.records()
	for _, r := range recs {
		info["requests "+r.Status]++
	}
	for _, d := range s.reconcile(ctx) {
		if why := s.explained(d, recs, dead); why != "" {
			info[fmt.Sprintf("reconcile: %s, %s", d.Kind, why)]++
			continue
		}
		bad(string(d.Kind), "%s/%d %s: %s", d.Tenant, d.InstanceID, d.Database, d.Detail)
	}

	// Reconcile reports a request whose job is a dead letter, not whether
	// the letter says why: an operator must learn it from the letter.
	for _, r := range recs {
		op, pending := pendingStatus[r.Status]
		dls := dead[fmt.Sprintf("%s/%d/%s", r.TenantName, r.ID, op)]
		if !pending || len(dls) == 0 {
			continue
		}
		last := dls[len(dls)-1]
		if last.Reason == "" || last.Code == "" {
			bad("dead_letter_without_reason", "%s/%d: %+v", r.TenantName, r.ID, last)
		}
		info["dead letters "+last.Code]++
	}
	for _, tn := range s.tenants {
		s.checkRegistrations(ctx, tn, recs, bad)
	}
	s.checkHandMade(ctx, bad)
	s.checkScratch(ctx, bad)
	s.checkTrash(ctx, recs, info, bad)
	return violations, info
}

// reconcile runs instancemgr reconcile's comparison over the soak's
// configuration, read-only. A request still pending after the drain is
// reported at once (pending-after 0) unless its job is a dead letter. The
// manage line's requests are the tenants' manage rows, which reconcile
// reads under that flavor.
func (s *soak) reconcile(ctx context.Context) []reconcile.Difference {
	cfg, err := config.Load(s.cfgPath, func(k string) string {
		if k == "INSTANCEMGR_ADMINAPI_CLIENT_SECRET" {
			return s.secret
		}
		return os.Getenv(k)
	})
	if err != nil {
		s.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := app.ReconcileOptions{}
	rep, err := app.Reconcile(ctx, cfg, o, log)
	if err != nil {
		s.t.Fatalf("reconcile: %v", err)
	}
	return rep.Differences
}

// explained says which of the soak's own doings a difference reconcile
// reports comes from, or "" when none does (a violation).
func (s *soak) explained(d reconcile.Difference, recs map[int]simulator.InstanceState, dead map[string][]jobs.DeadLetter) string {
	r, known := recs[d.InstanceID]
	deadLettered := false
	if op, pending := pendingStatus[r.Status]; known && pending {
		deadLettered = len(dead[fmt.Sprintf("%s/%d/%s", d.Tenant, d.InstanceID, op)]) > 0
	}
	switch {
	case d.Kind == reconcile.DeadRequest && deadLettered:
		return "a request the soak drove into a conflict or past its deliveries"
	case (d.Kind == reconcile.OrphanDatabase || d.Kind == reconcile.StaleReservation) && deadLettered:
		return "what a dead-lettered job left, for its replay to adopt"
	case d.Kind == reconcile.ForeignDatabase && slices.ContainsFunc(s.handMade, func(h handMade) bool { return h.database == d.Database }):
		return "a database made by hand at a requested name"
	case d.Kind == reconcile.MissingDatabase && known && r.Status == adminapi.StatusDeleteFailed:
		return "Delete_Failed after the drop: the Admin API refused \"deleted\", the delete is to be asked again"
	}
	return ""
}

// checkRegistrations checks what reconcile cannot see of one tenant's
// ledger: it follows each entry to its own dbo row and database, so it
// sees neither a second dbo row registering the same database (a job
// that took effect twice) nor a Completed request whose ledger names a
// database other than the one its name maps to (it does not compare the
// Admin API's names).
func (s *soak) checkRegistrations(ctx context.Context, tn *soakTenant, recs map[int]simulator.InstanceState, bad func(kind, format string, args ...any)) {
	rows, err := tn.admin.Query(ctx, `SELECT instance_id, database_name FROM instancemgr.instances WHERE tenant = $1`, tn.name)
	if err != nil {
		s.t.Fatal(err)
	}
	ledger := map[int]string{}
	for rows.Next() {
		var id int
		var db string
		if err := rows.Scan(&id, &db); err != nil {
			s.t.Fatal(err)
		}
		ledger[id] = db
	}
	rows.Close()
	rows, err = tn.admin.Query(ctx, `SELECT connectionstring FROM dbo.odsinstances`)
	if err != nil {
		s.t.Fatal(err)
	}
	css, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.t.Fatal(err)
	}
	registered := map[string]int{} // database -> dbo rows naming it
	for _, cs := range css {
		if s.manage {
			if cs, err = s.key.Decrypt(cs); err != nil {
				bad("registration_unreadable", "%s: %v", tn.name, err)
				continue
			}
		}
		c, err := connstr.ParsePostgres(cs)
		if err != nil {
			bad("registration_unreadable", "%s: %v", tn.name, err)
			continue
		}
		registered[c.Database]++
	}
	for id, db := range ledger {
		if n := registered[db]; n != 1 {
			bad("registration_count", "%s/%d: %d registrations name %q", tn.name, id, n, db)
		}
	}
	for _, r := range recs {
		if r.TenantName != tn.name || r.Status != adminapi.StatusCompleted {
			continue
		}
		want, err := s.naming.DatabaseName(tn.name, r.Name)
		switch {
		case err != nil:
			bad("completed_bad_name", "%s/%d %q: %v", tn.name, r.ID, r.Name, err)
		case ledger[r.ID] != want:
			bad("ledger_elsewhere", "%s/%d: ledger %q, its name maps to %q", tn.name, r.ID, ledger[r.ID], want)
		case s.manage:
			s.checkManageRow(tn, r.ID, want, bad)
		}
	}
}

// checkHandMade checks that every database made by hand is the one made
// (its oid) and holds what it held: reconcile reports such a database as
// not the system's, and cannot tell whether a job touched it.
func (s *soak) checkHandMade(ctx context.Context, bad func(kind, format string, args ...any)) {
	for _, h := range s.handMade {
		var oid uint32
		if err := h.server.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, h.database).Scan(&oid); err != nil || oid != h.oid {
			bad("hand_made_touched", "%q: oid %d (%v), want %d", h.database, oid, err, h.oid)
			continue
		}
		c, err := pgx.Connect(ctx, connFor(h.server, h.database))
		if err != nil {
			s.t.Fatal(err)
		}
		var got string
		err = c.QueryRow(ctx, `SELECT v FROM marker`).Scan(&got)
		c.Close(ctx)
		if err != nil || got != h.marker {
			bad("hand_made_touched", "%q: marker %q (%v)", h.database, got, err)
		}
	}
}

// checkScratch checks that no scratch copy is left on a server: those of
// the soak's tenants' reservations (the shared server holds other tests'
// copies in flight), and any measurement copy of its template (no job
// measures, so there must be none). Reconcile sees a scratch copy only
// while its reservation is being made, and no measurement copy.
func (s *soak) checkScratch(ctx context.Context, bad func(kind, format string, args ...any)) {
	for _, server := range []*pgxpool.Pool{s.tenants[0].server, s.tenants[2].server} {
		rows, err := server.Query(ctx, `SELECT database_name, tenant, instance_id, coalesce(to_jsonb(r)->>'line', 'adminconsole') FROM instancemgr.reservations r WHERE tenant = ANY($1)`, []string{"t1", "t2", "t3"})
		if err != nil {
			s.t.Fatal(err)
		}
		res, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (provisioning.Reservation, error) {
			var r provisioning.Reservation
			err := row.Scan(&r.Database, &r.Owner.Tenant, &r.Owner.InstanceID, &r.Owner.Line)
			return r, err
		})
		if err != nil {
			s.t.Fatal(err)
		}
		var names []string
		for _, r := range res {
			// A trash record's scratch copy is a purge under way, which
			// checkTrash holds to the record's identity.
			if !strings.HasPrefix(r.Database, provisioning.TrashPrefix) {
				names = append(names, provisioning.ScratchName(r))
			}
		}
		for i := range provisioning.MaxCalibrationNames {
			names = append(names, provisioning.CalibrationCopy(s.world.Template, i))
		}
		var left []string
		rows, err = server.Query(ctx, `SELECT datname FROM pg_database WHERE datname = ANY($1)`, names)
		if err == nil {
			left, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			s.t.Fatal(err)
		}
		if len(left) > 0 {
			bad("scratch_left", "scratch copies left on a server: %v", left)
		}
	}
}

// table prints what the soak did and found, in the form of
// docs/reliability.md.
func (s *soak) table(took, drained time.Duration, violations map[string][]string, info map[string]int) {
	e := s.effects(nil)
	var b strings.Builder
	fmt.Fprintf(&b, "SOAK %s, drained in %s, %d deliveries\n\n| what | kind | count |\n|---|---|---|\n", took.Round(time.Second), drained.Round(100*time.Millisecond), e.Deliveries)
	row := func(what string, m map[string]int) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "| %s | %s | %d |\n", what, k, m[k])
		}
	}
	row("operation", s.ops)
	row("fault", s.injected)
	row("outcome", info)
	v := map[string]int{}
	for k, list := range violations {
		v[k] = len(list)
	}
	if len(v) == 0 {
		v["none"] = 0
	}
	row("violation", v)
	s.t.Log(b.String())
}
