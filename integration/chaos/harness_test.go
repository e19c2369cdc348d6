package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// bins are the binaries under test, built once for the package.
var bins systest.Binaries

func TestMain(m *testing.M) {
	dir, err := systest.TempDir()
	if err == nil {
		bins, err = systest.Build(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// full reports whether the full-size suite was asked for.
func full() bool { return os.Getenv("INSTANCEMGR_CHAOS_FULL") == "1" }

// size picks the CI size or the full size.
func size(ci, fullSize int) int {
	if full() {
		return fullSize
	}
	return ci
}

// sys is one system under test: its own NATS, simulator, EdFi_Admin,
// template and naming prefix on the local PostgreSQL.
type sys struct {
	t        *testing.T
	h        *systest.Harness
	prefix   string
	pg       *pgxpool.Pool
	admin    *pgxpool.Pool
	world    *itest.World
	private  *systest.Postgres // when the system runs on one
	natsURL  string
	nats     []*systest.Proc
	simURL   string
	sim      *systest.Proc
	console  *adminapi.Client
	cfgPath  string
	env      []string
	replicas []*systest.Proc
	bridge   *systest.Proc
}

type sysOptions struct {
	ackWait     time.Duration
	maxDeliver  int
	concurrency int
	grace       time.Duration
	// consumerEnv are extra environment variables (test switches).
	consumerEnv []string
	// private runs the system on a private PostgreSQL server instead of
	// the local one.
	private bool
	// cluster starts three nats-server nodes instead of one, and the
	// stream with three replicas.
	cluster bool
}

func newSys(t *testing.T, o sysOptions) *sys {
	t.Helper()
	if o.ackWait == 0 {
		o.ackWait = 2 * time.Second
	}
	if o.maxDeliver == 0 {
		o.maxDeliver = 50
	}
	if o.concurrency == 0 {
		o.concurrency = 4
	}
	if o.grace == 0 {
		o.grace = 15 * time.Second
	}
	s := &sys{t: t, h: systest.New(t)}
	pgURL := ""
	if o.private {
		s.private = s.h.Postgres("")
		pgURL = s.private.URL
	}
	s.world = itest.NewWorld(t, pgURL)
	s.prefix, s.pg = s.world.Prefix, s.world.PG
	master, template := s.world.Master, s.world.Template
	var adminDB string
	s.admin, adminDB = s.world.AdminDatabase(t, "admin")

	replicas := 1
	if o.cluster {
		replicas = 3
	}
	s.natsURL, s.nats = s.h.NATS(bins.NATSServer, replicas)

	simPort := testenv.FreePort(t)
	s.simURL = fmt.Sprintf("http://127.0.0.1:%d", simPort)
	secret := "chaos-" + s.prefix
	s.sim = s.h.Start("simulator", bins.Instancemgr, []string{"INSTANCEMGR_SIMULATOR_CLIENT_SECRET=" + secret},
		"simulator", "-listen", fmt.Sprintf("127.0.0.1:%d", simPort), "-client-id", "worker")
	s.env = append([]string{"INSTANCEMGR_ADMINAPI_CLIENT_SECRET=" + secret}, o.consumerEnv...)
	s.cfgPath = filepath.Join(s.h.Dir(), "instancemgr.yaml")
	cfg := fmt.Sprintf(`adminApi: {baseUrl: %q, clientId: worker, timeout: 2s, maxAttempts: 3}
nats: {url: %q, replicas: %d, ackWait: %s, maxDeliver: %d, backoff: [%s]}
bridge: {pollInterval: 300ms}
consumer: {concurrency: %d, shutdownGrace: %s, retryDelay: 200ms, maxRetryDelay: 2s}
provisioning: {template: %q, namePattern: %q, allowDelete: true, deleteRetention: 0s}
limits: {instancesPerTenant: -1, createsPerMinute: -1, createsPerMinutePerClient: -1}
logFormat: text
tenants:
  default: {master: %q, admin: %q, ods: %q}
`, s.simURL, s.natsURL, replicas, o.ackWait, o.maxDeliver, o.ackWait, o.concurrency, o.grace, template, s.prefix+"_{name}",
		master.ADONet(), master.WithDatabase(adminDB).ADONet(), master.WithDatabase("{0}").ADONet())
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.connectConsole(secret)
	return s
}

// connectConsole is the Admin Console's client of the simulator, once the
// simulator answers.
func (s *sys) connectConsole(secret string) {
	s.t.Helper()
	var err error
	s.console, err = adminapi.New(adminapi.Config{BaseURL: s.simURL, TokenURL: s.simURL + "/connect/token", ClientID: "worker", ClientSecret: secret, MaxAttempts: 10, RetryBaseDelay: 50 * time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	testenv.Eventually(s.t, 30*time.Second, "the simulator to answer", func() bool {
		_, err := s.console.Tenants(context.Background())
		return err == nil
	})
}

// natsNode returns the process of the node with that server name.
func (s *sys) natsNode(name string) *systest.Proc {
	for _, p := range s.nats {
		if p.Name == "nats-"+name {
			return p
		}
	}
	s.t.Fatalf("no NATS node %q", name)
	return nil
}

// streamLeader is the server name leading the job stream.
func (s *sys) streamLeader() string {
	s.t.Helper()
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var leader string
	testenv.Eventually(s.t, time.Minute, "the job stream to have a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "INSTANCES")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		leader = info.Cluster.Leader
		return leader != ""
	})
	return leader
}

func (s *sys) startReplica(extraEnv ...string) *systest.Proc {
	s.t.Helper()
	env := append(append([]string{}, s.env...), extraEnv...)
	p := s.h.Start(fmt.Sprintf("consumer-%d", len(s.replicas)+1), bins.Instancemgr, env, "consumer", "-config", s.cfgPath, "--enable-test-switches")
	s.replicas = append(s.replicas, p)
	return p
}

func (s *sys) startBridge() {
	s.t.Helper()
	s.bridge = s.h.Start("bridge", bins.Instancemgr, s.env, "bridge", "-config", s.cfgPath)
}

// request asks for n instances named <label> 1..n.
func (s *sys) request(label string, n int) []int {
	s.t.Helper()
	var ids []int
	for i := range n {
		inst, err := s.console.CreateOdsInstance(context.Background(), "", adminapi.InstanceRequest{
			TenantID: 1, TenantName: "default", Name: fmt.Sprintf("%s %d", label, i+1), InstanceType: "enterprise",
			OdsInstanceContexts: []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
		})
		if err != nil {
			s.t.Fatalf("request %d: %v", i+1, err)
		}
		ids = append(ids, inst.ID)
	}
	return ids
}

// records reads the simulator's records over HTTP.
func (s *sys) records() map[int]simulator.InstanceState {
	s.t.Helper()
	resp, err := http.Get(s.simURL + "/_simulator/instances")
	if err != nil {
		s.t.Fatalf("read simulator records: %v", err)
	}
	defer resp.Body.Close()
	var recs []simulator.InstanceState
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		s.t.Fatal(err)
	}
	out := map[int]simulator.InstanceState{}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out
}

func (s *sys) countStatus(ids []int, status string) int {
	recs := s.records()
	n := 0
	for _, id := range ids {
		if recs[id].Status == status {
			n++
		}
	}
	return n
}

// waitStatus waits until every id has status, and says how long it took.
func (s *sys) waitStatus(ids []int, status string, timeout time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	testenv.Eventually(s.t, timeout, fmt.Sprintf("%d instances %s", len(ids), status), func() bool {
		return s.countStatus(ids, status) == len(ids)
	})
	return time.Since(start)
}

// faults replaces the simulator's fault plan.
func (s *sys) faults(plan []simulator.Fault) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, s.simURL+"/_simulator/faults", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		s.t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if len(plan) == 0 {
		return
	}
	body, _ := json.Marshal(plan)
	resp, err := http.Post(s.simURL+"/_simulator/faults", "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("fault plan refused: %d", resp.StatusCode)
	}
}

// effects are what a scenario counts at its end.
type effects struct {
	Completed, Databases, Rows, Ledger, DeadLetters int
	CompletedCalls                                  int
	Pending, AckPending                             uint64
	// Deliveries counts every delivery of every job (consumer sequence).
	Deliveries uint64
}

func (s *sys) count(sql string, args ...any) int {
	s.t.Helper()
	return itest.Count(s.t, s.admin, sql, args...)
}

func (s *sys) effects(ids []int) effects {
	s.t.Helper()
	var e effects
	recs := s.records()
	for _, id := range ids {
		if recs[id].Status == adminapi.StatusCompleted {
			e.Completed++
		}
		e.CompletedCalls += recs[id].Calls["completed"]
	}
	e.Databases = len(s.world.Databases(s.t))
	e.Rows = s.count(`SELECT count(*) FROM dbo.odsinstances`)
	// The ledger table appears when a replica first opens the tenant.
	if s.count(`SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'instancemgr' AND tablename = 'instances'`) == 1 {
		e.Ledger = s.count(`SELECT count(*) FROM instancemgr.instances`)
	}
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1))
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := js.Consumer(ctx, "INSTANCES", "instancemgr"); err == nil {
		if info, err := c.Info(ctx); err == nil {
			e.Pending, e.AckPending = info.NumPending, uint64(info.NumAckPending)
			e.Deliveries = info.Delivered.Consumer
		}
	}
	if st, err := js.Stream(ctx, jobs.DeadStream); err == nil {
		if info, err := st.Info(ctx); err == nil {
			e.DeadLetters = int(info.State.Msgs)
		}
	}
	return e
}

// settle waits until the durable consumer has nothing pending or un-acked,
// and returns the effects then.
func (s *sys) settle(ids []int) effects {
	s.t.Helper()
	var e effects
	testenv.Eventually(s.t, time.Minute, "the stream to drain", func() bool {
		e = s.effects(ids)
		return e.Pending == 0 && e.AckPending == 0
	})
	return e
}

// expectOnce asserts the promise: every job took effect once, nothing lost.
func (s *sys) expectOnce(ids []int, e effects, deadLetters int) {
	s.t.Helper()
	n := len(ids)
	if e.Completed != n || e.Databases != n || e.Rows != n || e.Ledger != n || e.DeadLetters != deadLetters {
		s.t.Fatalf("effects %+v; want %d completed, databases, rows and ledger entries, %d dead letters", e, n, deadLetters)
	}
}

// report prints one line of figures for docs/reliability.md.
func report(t *testing.T, scenario string, jobs int, faults string, e effects, recovered time.Duration) {
	t.Helper()
	dup := max(0, e.Databases-jobs) + max(0, e.Rows-jobs)
	lost := max(0, jobs-e.Completed-e.DeadLetters)
	t.Logf("REPORT | %s | %d | %s | %d deliveries; %d completed, %d databases, %d rows, %d completed calls, %d dead letters | %d | %d | %s |",
		scenario, jobs, faults, e.Deliveries, e.Completed, e.Databases, e.Rows, e.CompletedCalls, e.DeadLetters, dup, lost, recovered.Round(100*time.Millisecond))
}
