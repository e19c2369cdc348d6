package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/managerows"
)

// env is one test's private world: its own template, EdFi_Admin (loaded
// from the ODS/API's fixture), naming prefix, NATS server and simulator.
type env struct {
	t      *testing.T
	world  *itest.World
	prefix string
	pg     *pgxpool.Pool // maintenance database
	// reservations is the database the servers keep their reservations
	// in: the maintenance database unless a test has its own
	// (ownReservations).
	reservations *pgxpool.Pool
	admin        *pgxpool.Pool // the first tenant's EdFi_Admin
	// firstTenant is the tenant a request without a Tenant header is for.
	firstTenant string
	admins      map[string]*pgxpool.Pool
	sim         *simulatortest.Server
	natsURL     string
	cfg         *config.Config
	console     *adminapi.Client // what the Admin Console would use
	manage      bool             // the newest Admin API's flavor
	doorURL     string           // with manage: instancemgr's write routes (door)
	key         odscrypt.Key     // with manage: the connection strings' key
	log         *slog.Logger
	outcomes    chan consumer.Outcome
}

type envOptions struct {
	ackWait     time.Duration
	maxAttempts int // Admin API client attempts per call
	retryDelay  time.Duration
	maxDeliver  int
	// tenants the simulator serves, each mapped in the configuration to an
	// EdFi_Admin of its own; unmapped ones are served but not mapped.
	tenants     []string
	unmapped    []string
	namePattern string // default "<prefix>_{name}"
	allowDelete bool
	// deleteRetention is provisioning.deleteRetention; the tests' default
	// is 0, deletes dropping at once, unless a test is about trash.
	deleteRetention time.Duration
	encryptKey      string // base64 ODS encryption key
	// natsURL is the NATS server to use (credentials in the URL); "" starts
	// an embedded one open to every client.
	natsURL string
	// registration is config.RegistrationWorker (default) or
	// RegistrationAdminAPI, where the simulator writes the dbo rows as
	// Admin API 2.2.2 does.
	registration string
	// manage runs the newest Admin API's flavor: the simulator serves the
	// manage routes on each tenant's EdFi_Admin, both templates are the
	// test's template, and names follow Ed-Fi's rule
	// (EdFi_Ods_{name}_{template}: put the prefix in the request's name).
	manage bool
	// pattern keeps namePattern with manage (provisioning.naming:
	// pattern), so that a test reads the same in both flavors.
	pattern bool
}

// flavors runs fn once for each Admin API line, each in its own world made
// from o: Admin API 2.2.2's /adminconsole/ endpoints, and the newest line's
// manage routes with the same naming pattern.
func flavors(t *testing.T, o envOptions, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, manage := range []bool{false, true} {
		name := config.FlavorAdminConsole
		if manage {
			name = config.FlavorManage
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := o
			o.manage, o.pattern = manage, manage
			fn(t, newEnv(t, o))
		})
	}
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.ackWait == 0 {
		o.ackWait = 2 * time.Second
	}
	if o.maxAttempts == 0 {
		o.maxAttempts = 3
	}
	if o.retryDelay == 0 {
		o.retryDelay = 100 * time.Millisecond
	}
	if o.maxDeliver == 0 {
		o.maxDeliver = 20
	}
	if len(o.tenants) == 0 {
		o.tenants = []string{config.DefaultTenant}
	}
	e := &env{t: t, world: itest.NewWorld(t, ""), outcomes: make(chan consumer.Outcome, 1000)}
	e.prefix, e.pg, e.reservations = e.world.Prefix, e.world.PG, e.world.PG
	e.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	master, template := e.world.Master, e.world.Template
	mapping := map[string]config.TenantEntry{}
	adminDBs := map[string]string{}
	e.admins = map[string]*pgxpool.Pool{}
	for _, tenant := range o.tenants {
		suffix := "admin"
		if tenant != config.DefaultTenant {
			suffix += "_" + tenant
		}
		pool, adminDB := e.world.AdminDatabase(t, suffix)
		e.admins[tenant] = pool
		adminDBs[tenant] = master.WithDatabase(adminDB).PgxConnString()
		mapping[tenant] = config.TenantEntry{
			Master: master.ADONet(),
			Admin:  master.WithDatabase(adminDB).ADONet(),
			ODS:    master.WithDatabase("{0}").ADONet(),
		}
	}
	e.admin, e.firstTenant = e.admins[o.tenants[0]], o.tenants[0]
	if o.namePattern == "" {
		o.namePattern = "PREFIX_{name}"
	}
	o.namePattern = strings.ReplaceAll(o.namePattern, "PREFIX", e.prefix)

	simOpts := simulator.Options{Tenants: append(append([]string{}, o.tenants...), o.unmapped...)}
	if o.registration == config.RegistrationAdminAPI {
		simOpts.Registration, simOpts.AdminDatabases = simulator.RegistrationAdminAPI, adminDBs
	}
	if o.manage {
		simOpts.Manage, simOpts.AdminDatabases = true, adminDBs
		if o.encryptKey == "" {
			o.encryptKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
		}
	}
	var err error
	e.sim = simulatortest.Start(t, simOpts)
	t.Cleanup(e.sim.Close)
	e.natsURL = o.natsURL
	if e.natsURL == "" {
		e.natsURL = testenv.NATS(t)
	}

	retention := config.Duration(o.deleteRetention)
	e.cfg = &config.Config{
		AdminAPI: config.AdminAPI{BaseURL: e.sim.URL, TokenURL: e.sim.TokenURL, ClientID: e.sim.ClientID, ClientSecret: e.sim.ClientSecret, MaxAttempts: o.maxAttempts},
		// One backoff step: redeliveries and nak delays are not stretched by
		// growing steps, which keeps the tests fast.
		NATS:         config.NATS{URL: e.natsURL, AckWait: config.Duration(o.ackWait), BackOff: []config.Duration{config.Duration(o.ackWait)}, MaxDeliver: o.maxDeliver},
		Bridge:       config.Bridge{PollInterval: config.Duration(200 * time.Millisecond)},
		Consumer:     config.Consumer{Concurrency: 2, ShutdownGrace: config.Duration(10 * time.Second), RetryDelay: config.Duration(o.retryDelay), MaxRetryDelay: config.Duration(time.Second)},
		Provisioning: config.Provisioning{Template: template, NamePattern: o.namePattern, AllowDelete: o.allowDelete, DeleteRetention: &retention, EncryptionKey: o.encryptKey, Registration: o.registration},
		Tenants:      mapping,
	}
	if o.manage {
		e.manage = true
		e.cfg.AdminAPI.Flavor = config.FlavorManage
		if o.pattern {
			e.cfg.Provisioning.Naming = provisioning.RulePattern
		} else {
			// Ed-Fi's names start EdFi_Ods_ and then the request's name,
			// which the tests start with the prefix.
			e.cfg.Provisioning.NamePattern = ""
			testenv.DropDatabasesWithPrefix(t, e.pg, "EdFi_Ods_"+e.prefix)
		}
		e.cfg.Provisioning.Templates = map[string]string{"Minimal": template, "Sample": template}
		for _, pool := range e.admins {
			if _, err := pool.Exec(context.Background(), simulator.ManageSchema); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.cfg.Complete(func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if o.manage {
		if e.key, err = odscrypt.ParseKey(o.encryptKey); err != nil {
			t.Fatal(err)
		}
	}
	e.console, err = adminapi.New(adminapi.Config{BaseURL: e.sim.URL, TokenURL: e.sim.TokenURL, ClientID: e.sim.ClientID, ClientSecret: e.sim.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("INSTANCEMGR_TEST_LOG") != "" {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// requestInstances asks for n instances the way the Admin Console does.
func (e *env) requestInstances(n int) []adminapi.OdsInstance {
	e.t.Helper()
	var out []adminapi.OdsInstance
	for i := range n {
		inst, err := e.console.CreateOdsInstance(context.Background(), "", adminapi.InstanceRequest{
			TenantID: 1, TenantName: "default", Name: fmt.Sprintf("District %d - 2025", i+1), InstanceType: "enterprise",
			OdsInstanceContexts:    []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
			OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{{DerivativeType: "ReadReplica"}},
		})
		if err != nil {
			e.t.Fatalf("request instance %d: %v", i+1, err)
		}
		out = append(out, inst)
	}
	return out
}

// replica is one consumer replica with its own NATS connection.
type replica struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

// startReplica runs a consumer replica until the test ends or stop is called.
func (e *env) startReplica(deps app.ConsumerDeps) *replica {
	e.t.Helper()
	nc, js := testenv.JetStream(e.t, e.natsURL)
	api, err := app.AdminClient(e.cfg, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	placements := app.NewPlacements(e.cfg, e.log)
	if deps.API == nil {
		deps.API = app.ConsumerAPI(e.cfg, api, placements, e.log)
	}
	deps.JS, deps.Tenants = js, placements
	if deps.Log == nil {
		deps.Log = e.log
	}
	deps.TestSeams.Observe = func(o consumer.Outcome) { e.outcomes <- o }
	ctx, cancel := context.WithCancel(context.Background())
	c, err := app.NewConsumer(ctx, e.cfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &replica{nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer placements.Close()
		if err := c.Run(ctx); err != nil {
			e.t.Errorf("consumer: %v", err)
		}
	}()
	e.t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// startBridge runs the bridge until the test ends.
func (e *env) startBridge() *bridge.Bridge {
	e.t.Helper()
	b := e.newBridge()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Run(ctx) })
	e.t.Cleanup(func() { cancel(); wg.Wait() })
	return b
}

func (e *env) newBridge() *bridge.Bridge {
	e.t.Helper()
	_, js := testenv.JetStream(e.t, e.natsURL)
	api, err := app.AdminClient(e.cfg, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	ledger := app.NewLedgers(e.cfg, e.log)
	e.t.Cleanup(ledger.Close)
	b, err := app.NewBridge(context.Background(), e.cfg, app.BridgeAPI(e.cfg, api, ledger, e.log), ledger, js, e.log, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) waitCompleted(ids []int, timeout time.Duration) {
	e.t.Helper()
	testenv.Eventually(e.t, timeout, fmt.Sprintf("%d instances Completed", len(ids)), func() bool {
		for _, id := range ids {
			if r, ok := e.sim.Instance(id); !ok || r.Status != adminapi.StatusCompleted {
				return false
			}
		}
		return true
	})
	e.waitSettled()
}

// waitSettled waits until the durable consumer has nothing pending or
// un-acked. The Admin API hears "completed" (or "deleted") inside the
// registration transaction, just before its commit, so a status alone does
// not say the EdFi_Admin rows are visible yet; the ack, after the commit,
// does.
func (e *env) waitSettled() {
	e.t.Helper()
	testenv.Eventually(e.t, 30*time.Second, "the consumer to have nothing pending or un-acked", func() bool {
		info := e.consumerInfo()
		return info.NumAckPending == 0 && info.NumPending == 0
	})
}

// databases lists the instance databases the test made.
func (e *env) databases() []string {
	e.t.Helper()
	return e.world.Databases(e.t)
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	return itest.Count(e.t, e.admin, sql, args...)
}

// consumerInfo is the durable consumer's state.
func (e *env) consumerInfo() *jetstream.ConsumerInfo {
	e.t.Helper()
	_, js := testenv.JetStream(e.t, e.natsURL)
	c, err := js.Consumer(context.Background(), e.cfg.NATS.Stream, e.cfg.NATS.Consumer)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

func (e *env) streamMessages() uint64 {
	e.t.Helper()
	_, js := testenv.JetStream(e.t, e.natsURL)
	s, err := js.Stream(context.Background(), e.cfg.NATS.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) countIn(tenant, sql string, args ...any) int {
	e.t.Helper()
	return itest.Count(e.t, e.admins[tenant], sql, args...)
}

// deadLetters reads every dead letter stored so far.
func (e *env) deadLetters() []jobs.DeadLetter {
	e.t.Helper()
	_, js := testenv.JetStream(e.t, e.natsURL)
	return itest.DeadLetters(e.t, js)
}

// waitDeadLetters waits until n dead letters are stored and returns them.
func (e *env) waitDeadLetters(n int) []jobs.DeadLetter {
	e.t.Helper()
	var got []jobs.DeadLetter
	testenv.Eventually(e.t, time.Minute, fmt.Sprintf("%d dead letters", n), func() bool {
		got = e.deadLetters()
		return len(got) >= n
	})
	return got
}

// waitStatus waits until request id of the first tenant has status (in
// the /adminconsole/ words: e.status) and the consumer has settled.
func (e *env) waitStatus(id int, status string) {
	e.t.Helper()
	testenv.Eventually(e.t, time.Minute, fmt.Sprintf("instance %d %s", id, status), func() bool {
		return e.status("", id) == status
	})
	e.waitSettled()
}

// status is request id of tenant ("" for the first) in the /adminconsole/
// words the bridge reads, in either flavor; "" when there is none.
func (e *env) status(tenant string, id int) string {
	e.t.Helper()
	if !e.manage {
		r, _ := e.sim.Instance(id)
		return r.Status
	}
	if tenant == "" {
		tenant = e.firstTenant
	}
	var status string
	if err := e.admins[tenant].QueryRow(context.Background(), `SELECT status FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status); err != nil {
		return ""
	}
	return managerows.BridgeStatus(status)
}

// endedCreate is the status (in the /adminconsole/ words) of a request
// whose create ended without success: Admin API 2.2.2 has no failed create,
// so it stays Pending; the newest line's is CreateError.
func (e *env) endedCreate() string {
	if e.manage {
		return adminapi.StatusError
	}
	return adminapi.StatusPending
}

// calls is how often the worker endpoint call was made for instance id,
// and whether the flavor has worker calls at all: the manage flavor
// settles its rows in EdFi_Admin, not through calls.
func (e *env) calls(id int, call string) (n int, counted bool) {
	if e.manage {
		return 0, false
	}
	r, _ := e.sim.Instance(id)
	return r.Calls[call], true
}

func (e *env) databaseExists(name string) bool {
	e.t.Helper()
	var ok bool
	if err := e.pg.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&ok); err != nil {
		e.t.Fatal(err)
	}
	return ok
}

// startCrashingReplica runs a replica that, the first time a job passes its
// database change, cuts itself off from NATS (no ack, no nak, no heartbeat:
// as if killed) and fails the job. crashed is closed at that moment.
func (e *env) startCrashingReplica() (r *replica, crashed <-chan struct{}) {
	e.t.Helper()
	c := make(chan struct{})
	var once sync.Once
	ready := make(chan *replica, 1)
	r = e.startReplica(app.ConsumerDeps{TestSeams: consumer.TestSeams{
		AfterDatabase: func(ctx context.Context, d consumer.Delivery) error {
			once.Do(func() { (<-ready).nc.Close(); close(c) })
			return errors.New("crashed")
		},
	}})
	ready <- r
	return r, c
}

func (e *env) waitCrash(crashed <-chan struct{}) {
	e.t.Helper()
	select {
	case <-crashed:
	case <-time.After(time.Minute):
		e.t.Fatal("the job never reached the crash point")
	}
}
