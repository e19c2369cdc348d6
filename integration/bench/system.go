package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// SystemOptions are one run of the whole system: N requests into the
// simulator, through the bridge, JetStream and Replicas consumer processes
// of the real binary, to PostgreSQL, EdFi_Admin and completed.
type SystemOptions struct {
	Harness     *systest.Harness
	Bin         string // the instancemgr binary (systest.Build)
	Master      connstr.Conn
	Template    Template
	N           int
	Replicas    int
	Concurrency int // per replica (consumer.concurrency)
	Poll        time.Duration
	// Spacing, when set, sends the requests one at a time this far apart
	// instead of all at once: pickup at low load, where no job waits for
	// a free worker.
	Spacing    time.Duration
	Strategy   string
	NamePrefix string // the run's databases start with it; dropped after
	// ProfileDir, when set, receives a CPU profile (pprof) of the first
	// consumer process, from the first request for profileFor, named after
	// NamePrefix: where a consumer's CPU goes.
	ProfileDir string
}

// profileFor is how long a system run's consumer is profiled.
const profileFor = 5 * time.Second

// SystemResult is what one run measured.
type SystemResult struct {
	Template    string `json:"template"`
	N           int    `json:"n"`
	Replicas    int    `json:"replicas"`
	Concurrency int    `json:"concurrencyPerReplica"`
	// Elapsed is from the first job stored in JetStream to the last
	// completed the Admin API received: the part to compare with Raw.
	Elapsed time.Duration `json:"elapsedNs"`
	// Latency is each request's time from the Admin Console's request to
	// completed; Pickup from the request to the first consumer reading it.
	LatencyP50 time.Duration `json:"latencyP50Ns"`
	LatencyP95 time.Duration `json:"latencyP95Ns"`
	LatencyP99 time.Duration `json:"latencyP99Ns"`
	PickupP50  time.Duration `json:"pickupP50Ns"`
	PickupP99  time.Duration `json:"pickupP99Ns"`
	Poll       time.Duration `json:"pollNs"`
	// PeakRSS is each consumer process's peak resident set (VmHWM), bytes.
	PeakRSS []int64 `json:"peakRssBytes"`
	// ProcessCPU is the CPU time (user + system) the consumer and bridge
	// processes used from the first request to the last completed;
	// HarnessCPU the same for the benchmark's own process, which holds
	// the embedded NATS server and the simulator. Both share the
	// machine's cores with PostgreSQL.
	ProcessCPU time.Duration `json:"processCpuNs"`
	HarnessCPU time.Duration `json:"harnessCpuNs"`
	// ServerCPU is the PostgreSQL server's from the first request to the
	// last completed (serverCPU).
	ServerCPU time.Duration `json:"serverCpuNs"`
	// CopiedWith counts the jobs' copies by the strategy they used
	// (instancemgr_copy_seconds; "" for the server's default).
	CopiedWith map[string]int `json:"copiedWith"`
	// PerJob is the mean time per job the consumers' own metrics give, by
	// phase (adminapi, database, registration) and in all ("job": pull to
	// settle).
	PerJob map[string]time.Duration `json:"perJobNs"`
}

// System runs the whole system once and measures it.
func System(t testing.TB, o SystemOptions) SystemResult {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	maint := pool(t, o.Master.PgxConnString(), 1)
	defer maint.Close()
	defer dropPrefix(t, maint, o.NamePrefix)
	// A fresh EdFi_Admin: the simulator numbers instances from 1 in every
	// run, and the ledger must not know them from an earlier one.
	adminDB := o.NamePrefix + "_admin"
	if _, err := maint.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{adminDB}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, o.Master.WithDatabase(adminDB).PgxConnString())
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(ctx, testenv.AdminFixture(t))
	admin.Close(ctx)
	if err != nil {
		t.Fatalf("load the EdFi_Admin fixture: %v", err)
	}

	ns, err := embednats.Start(embednats.Options{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"default"}})
	defer sim.Close()
	if err := sim.RegisterClient("console", "console-"+o.NamePrefix); err != nil {
		t.Fatal(err)
	}
	console, err := adminapi.New(adminapi.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: "console", ClientSecret: "console-" + o.NamePrefix})
	if err != nil {
		t.Fatal(err)
	}

	// The roles, as deployed: one bridge, Replicas consumers, each its own
	// process with its own metrics and probes address; every replica
	// serves the one server, so copiesAtOnce is all their workers. No
	// limits: the bench measures how fast the system goes.
	env := []string{"INSTANCEMGR_ADMINAPI_CLIENT_SECRET=" + sim.ClientSecret}
	strategy := ""
	if o.Strategy != "" {
		strategy = ", copyStrategy: " + o.Strategy
	}
	config := func(role string, i int) (path, probes string) {
		port := testenv.FreePort(t)
		path = filepath.Join(dir, fmt.Sprintf("%s-%d.yaml", role, i))
		body := fmt.Sprintf(`adminApi: {baseUrl: %q, tokenUrl: %q, clientId: %q}
nats: {url: %q}
bridge: {pollInterval: %s}
consumer: {concurrency: %d}
provisioning: {template: %q, namePattern: %q, copiesAtOnce: %d%s}
limits: {instancesPerTenant: -1, createsPerMinute: -1, createsPerMinutePerClient: -1}
metricsAddr: 127.0.0.1:%d
pprof: %t
logLevel: warn
tenants:
  default: {master: %q, admin: %q, ods: %q}
`, sim.URL, sim.TokenURL, sim.ClientID, ns.ClientURL(), o.Poll, o.Concurrency, o.Template.Name, o.NamePrefix+"_{name}", o.Replicas*o.Concurrency, strategy, port, o.ProfileDir != "",
			o.Master.ADONet(), o.Master.WithDatabase(adminDB).ADONet(), o.Master.WithDatabase("{0}").ADONet())
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	var procs, consumers []*role
	defer func() {
		for _, p := range procs {
			p.stop(t)
		}
	}()
	// One after another, each ready before the next starts: each sets the
	// stream up as it starts, and the embedded server's file store races
	// a stream update against a consumer create made at the same moment
	// (nats-server v2.15.2, filestore UpdateConfig against ConsumerStore,
	// seen by the race detector); the run measures nothing of the start.
	for i := range o.Replicas {
		cfg, probes := config("consumer", i)
		p := start(o, env, probes, "consumer", i, cfg)
		procs, consumers = append(procs, p), append(consumers, p)
		p.waitReady(t)
	}
	cfg, probes := config("bridge", 0)
	bridge := start(o, env, probes, "bridge", 0, cfg)
	procs = append(procs, bridge)
	bridge.waitReady(t)

	settle(t, maint)
	profiled := profile(t, o, consumers[0])
	defer profiled()
	cpuBefore, harnessBefore, server := procsCPU(t, procs), processCPU(), serverCPU(t, maint)
	// The Admin Console's requests, eight at a time.
	ids := make([]int, o.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, o.N)
	for i := range o.N {
		if o.Spacing > 0 && i > 0 {
			time.Sleep(o.Spacing) // the load itself: requests arriving apart
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			inst, err := console.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: fmt.Sprintf("B%d", i+1), InstanceType: "enterprise"})
			ids[i] = inst.ID
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Read in process: no Admin API call of the measurement competes
	// with the system's.
	testenv.Eventually(t, 2*time.Minute+time.Duration(o.N)*10*time.Second, fmt.Sprintf("%d requests Completed", o.N), func() bool {
		for _, id := range ids {
			if st, _ := sim.Instance(id); st.Status != adminapi.StatusCompleted {
				for _, p := range procs {
					p.CheckAlive()
				}
				return false
			}
		}
		return true
	})
	r := SystemResult{Template: o.Template.Spec.Label, N: o.N, Replicas: o.Replicas, Concurrency: o.Concurrency, Poll: o.Poll,
		ProcessCPU: procsCPU(t, procs) - cpuBefore, HarnessCPU: processCPU() - harnessBefore, ServerCPU: server()}
	sums := map[string]float64{}
	r.CopiedWith = map[string]int{}
	for _, p := range consumers {
		families := testenv.Scrape(t, p.probes+"/metrics")
		for s, n := range copiesByStrategy(families) {
			r.CopiedWith[s] += n
		}
		r.PeakRSS = append(r.PeakRSS, p.peakRSS(t))
		for k, v := range jobSeconds(families) {
			sums[k] += v
		}
	}
	r.PerJob = map[string]time.Duration{}
	for k, v := range sums {
		r.PerJob[k] = time.Duration(v / float64(o.N) * float64(time.Second))
	}
	var latency, pickup []time.Duration
	var lastDone time.Time
	for _, id := range ids {
		st, _ := sim.Instance(id)
		tl := st.Timeline
		latency = append(latency, tl.Completed.Sub(tl.Requested))
		pickup = append(pickup, tl.FirstWorkerRead.Sub(tl.Requested))
		if tl.Completed.After(lastDone) {
			lastDone = tl.Completed
		}
	}
	r.Elapsed = lastDone.Sub(firstStored(t, ns.ClientURL()))
	r.LatencyP50, r.LatencyP95, r.LatencyP99 = Quantile(latency, 0.5), Quantile(latency, 0.95), Quantile(latency, 0.99)
	r.PickupP50, r.PickupP99 = Quantile(pickup, 0.5), Quantile(pickup, 0.99)
	return r
}

// firstStored is when JetStream stored the first job of the run.
func firstStored(t testing.TB, url string) time.Time {
	t.Helper()
	first, _ := storedSpan(t, url, 1)
	return first
}

// storedSpan is when JetStream stored the first job and the n-th.
func storedSpan(t testing.TB, url string, n int) (first, nth time.Time) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), "INSTANCES")
	if err != nil {
		t.Fatal(err)
	}
	for i, seq := range []uint64{1, uint64(n)} {
		m, err := s.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) || err != nil {
			t.Fatalf("job %d: %v", seq, err)
		}
		if i == 0 {
			first = m.Time
		} else {
			nth = m.Time
		}
	}
	return first, nth
}

// dropPrefix drops the run's databases and their reservations.
func dropPrefix(t testing.TB, maint *pgxpool.Pool, prefix string) {
	t.Helper()
	ctx := context.Background()
	rows, err := maint.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, prefix+"_")
	if err != nil {
		t.Error(err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Error(err)
		return
	}
	dropAll(t, maint, names)
	if _, err := maint.Exec(ctx, `DELETE FROM instancemgr.reservations WHERE starts_with(database_name, $1)`, prefix+"_"); err != nil {
		t.Error(err)
	}
}

// role is one role's process, with its metrics and probes address.
type role struct {
	*systest.Proc
	probes string
}

// start starts role number i with the configuration at cfg.
func start(o SystemOptions, env []string, probes, name string, i int, cfg string) *role {
	return &role{Proc: o.Harness.Start(fmt.Sprintf("%s-%s-%d", o.NamePrefix, name, i), o.Bin, env, name, "-config", cfg), probes: probes}
}

func (p *role) waitReady(t testing.TB) {
	t.Helper()
	testenv.Eventually(t, time.Minute, p.Name+" ready", func() bool {
		p.CheckAlive()
		resp, err := http.Get(p.probes + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// peakRSS is the process's peak resident set size so far (VmHWM).
func (p *role) peakRSS(t testing.TB) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("%s: no VmHWM in /proc status", p.Name)
	return 0
}

// cpu is the CPU time the process has used so far: the sum of its
// threads' time on a CPU from /proc/PID/task/*/schedstat, in nanoseconds.
// /proc/PID/stat counts in clock ticks (10 ms), more than a small run's
// consumers use in all; it is the fallback where schedstat is missing. A
// Go process keeps its threads, so what the live threads sum to is the
// process's whole time.
func (p *role) cpu(t testing.TB) time.Duration {
	t.Helper()
	if d, ok := p.schedCPU(); ok {
		return d
	}
	fields, ok := procStat(p.Pid())
	if !ok {
		t.Fatalf("%s: no /proc stat", p.Name)
	}
	return time.Duration(ticks(fields[11:13])) * time.Second / clockTicks // utime, stime
}

// schedCPU sums the first field of every thread's schedstat (time on a
// CPU, ns); false when the kernel keeps no schedstat.
func (p *role) schedCPU() (time.Duration, bool) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p.Pid()))
	if err != nil || len(files) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that ended between the listing and the read
		}
		fields := strings.Fields(string(raw))
		if len(fields) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += time.Duration(ns)
	}
	return sum, true
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times: 100
// on every Linux architecture Go supports.
const clockTicks = 100

func procsCPU(t testing.TB, procs []*role) time.Duration {
	var sum time.Duration
	for _, p := range procs {
		sum += p.cpu(t)
	}
	return sum
}

// stop sends SIGTERM and waits for the process to drain and exit.
func (p *role) stop(t testing.TB) {
	t.Helper()
	if err := p.Stop(syscall.SIGTERM, time.Minute); err != nil {
		t.Error(err)
	}
	if os.Getenv("INSTANCEMGR_BENCH_LOGS") != "" {
		t.Logf("%s's log:\n%s", p.Name, p.Log())
	}
}

// jobSeconds reads a consumer's time spent on jobs from its metrics: the
// sum of instancemgr_consumer_phase_seconds by phase, and of
// instancemgr_consumer_job_seconds as "job".
func jobSeconds(families map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range families["instancemgr_consumer_phase_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "phase" {
				out[l.GetValue()] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	for _, m := range families["instancemgr_consumer_job_seconds"].GetMetric() {
		out["job"] += m.GetHistogram().GetSampleSum()
	}
	// The copies alone, inside the database phase.
	for _, m := range families["instancemgr_copy_seconds"].GetMetric() {
		out["copy"] += m.GetHistogram().GetSampleSum()
	}
	return out
}

// copiesByStrategy counts a consumer's copies by their strategy.
func copiesByStrategy(families map[string]*dto.MetricFamily) map[string]int {
	out := map[string]int{}
	for _, m := range families["instancemgr_copy_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "strategy" {
				out[l.GetValue()] += int(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// profile starts a CPU profile of p for profileFor when o.ProfileDir is
// set, written to o.ProfileDir/<NamePrefix>.pprof; the returned func waits
// for it.
func profile(t testing.TB, o SystemOptions, p *role) (wait func()) {
	if o.ProfileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.probes, int(profileFor.Seconds())))
		if err != nil {
			t.Errorf("profile the consumer: %v", err)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(o.ProfileDir, o.NamePrefix+".pprof"), body, 0o644)
		}
		if err != nil {
			t.Errorf("profile the consumer: %v", err)
		}
	}()
	return func() { <-done }
}
