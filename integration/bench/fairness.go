package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// FairServer is one server of a fairness run and the template it copies;
// both servers' templates have the same name (provisioning.template).
type FairServer struct {
	Master   connstr.Conn
	Template Template
}

// FairnessOptions are one fairness run: tenant "slow" on Slow, tenant
// "fast" on Fast, one consumer process with Concurrency slots. SlowN slow
// requests come first, and once their jobs are in the stream, FastN fast
// ones: the fast server's jobs behind a slow server's backlog.
type FairnessOptions struct {
	Harness      *systest.Harness
	Bin          string
	Slow, Fast   FairServer
	SlowN, FastN int
	Concurrency  int
	// CopiesPerServer is consumer.copiesPerServer; 0 for its default
	// (concurrency ÷ 2 with two servers).
	CopiesPerServer int
	// SlowWait, when set, is how long each slow job waits after its copy,
	// holding its slot without using the CPU: a server with a slow disk,
	// where the servers of the run share this machine's cores
	// (INSTANCEMGR_TEST_SLOW_AFTER_DATABASE for tenant "slow").
	SlowWait   time.Duration
	NamePrefix string
}

// FairnessResult is when each server's jobs were done, from the first of
// its requests to the last Completed.
type FairnessResult struct {
	Fast, Slow time.Duration
	FastP50    time.Duration // a fast request's own time, request to Completed
	// FastPickupP50 is a fast request's time to the first worker reading
	// it: the wait for a free slot, with the bridge's poll.
	FastPickupP50 time.Duration
}

// Fairness runs the system once with two tenants on two servers.
func Fairness(t testing.TB, o FairnessOptions) FairnessResult {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	tenants := map[string]FairServer{"slow": o.Slow, "fast": o.Fast}
	entries := ""
	for _, name := range []string{"slow", "fast"} {
		s := tenants[name]
		maint := pool(t, s.Master.PgxConnString(), 1)
		defer maint.Close()
		defer dropPrefix(t, maint, o.NamePrefix)
		adminDB := o.NamePrefix + "_admin"
		if _, err := maint.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{adminDB}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		admin, err := pgx.Connect(ctx, s.Master.WithDatabase(adminDB).PgxConnString())
		if err != nil {
			t.Fatal(err)
		}
		_, err = admin.Exec(ctx, testenv.AdminFixture(t))
		admin.Close(ctx)
		if err != nil {
			t.Fatalf("load the EdFi_Admin fixture: %v", err)
		}
		settle(t, maint)
		entries += fmt.Sprintf("  %s: {master: %q, admin: %q, ods: %q}\n", name, s.Master.ADONet(), s.Master.WithDatabase(adminDB).ADONet(), s.Master.WithDatabase("{0}").ADONet())
	}

	ns, err := embednats.Start(embednats.Options{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"slow", "fast"}})
	defer sim.Close()
	if err := sim.RegisterClient("console", "console-"+o.NamePrefix); err != nil {
		t.Fatal(err)
	}
	console, err := adminapi.New(adminapi.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: "console", ClientSecret: "console-" + o.NamePrefix})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"INSTANCEMGR_ADMINAPI_CLIENT_SECRET=" + sim.ClientSecret}
	so := SystemOptions{Harness: o.Harness, Bin: o.Bin, NamePrefix: o.NamePrefix}
	copies := ""
	if o.CopiesPerServer > 0 {
		copies = fmt.Sprintf(", copiesPerServer: %d", o.CopiesPerServer)
	}
	config := func(role string) (path, probes string) {
		port := testenv.FreePort(t)
		path = filepath.Join(dir, role+".yaml")
		body := fmt.Sprintf(`adminApi: {baseUrl: %q, tokenUrl: %q, clientId: %q}
nats: {url: %q}
bridge: {pollInterval: 200ms}
consumer: {concurrency: %d%s}
provisioning: {template: %q, namePattern: %q}
limits: {instancesPerTenant: -1, createsPerMinute: -1, createsPerMinutePerClient: -1}
metricsAddr: 127.0.0.1:%d
logLevel: warn
tenants:
%s`, sim.URL, sim.TokenURL, sim.ClientID, ns.ClientURL(), o.Concurrency, copies, o.Slow.Template.Name, o.NamePrefix+"_{name}", port, entries)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	var procs []*role
	defer func() {
		for _, p := range procs {
			p.stop(t)
		}
	}()
	for _, name := range []string{"consumer", "bridge"} {
		cfg, probes := config(name)
		var p *role
		if name == "consumer" && o.SlowWait > 0 {
			slowEnv := append(slices.Clip(env), "INSTANCEMGR_TEST_SLOW_AFTER_DATABASE="+o.SlowWait.String(), "INSTANCEMGR_TEST_SLOW_TENANTS=slow")
			p = &role{Proc: o.Harness.Start(o.NamePrefix+"-consumer-0", o.Bin, slowEnv, name, "-config", cfg, "--enable-test-switches"), probes: probes}
		} else {
			p = start(so, env, probes, name, 0, cfg)
		}
		procs = append(procs, p)
		p.waitReady(t)
	}

	request := func(tenant string, n int) []int {
		ids := make([]int, n)
		for i := range ids {
			inst, err := console.CreateOdsInstance(ctx, tenant, adminapi.InstanceRequest{TenantID: sim.TenantID(tenant), TenantName: tenant, Name: fmt.Sprintf("%s%d", tenant, i+1), InstanceType: "enterprise"})
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = inst.ID
		}
		return ids
	}
	slow := request("slow", o.SlowN)
	if o.SlowN > 0 {
		testenv.Eventually(t, time.Minute, "the slow server's jobs in the stream", func() bool { return stored(t, ns.ClientURL()) >= uint64(o.SlowN) })
	}
	fast := request("fast", o.FastN)
	done := func(ids []int) bool {
		for _, id := range ids {
			if st, _ := sim.Instance(id); st.Status != adminapi.StatusCompleted {
				for _, p := range procs {
					p.CheckAlive()
				}
				return false
			}
		}
		return true
	}
	testenv.Eventually(t, 10*time.Minute, "every request Completed", func() bool { return done(fast) && done(slow) })
	span := func(ids []int) (time.Duration, []time.Duration, []time.Duration) {
		var first, last time.Time
		var each, pickup []time.Duration
		for _, id := range ids {
			st, _ := sim.Instance(id)
			tl := st.Timeline
			if first.IsZero() || tl.Requested.Before(first) {
				first = tl.Requested
			}
			if tl.Completed.After(last) {
				last = tl.Completed
			}
			each = append(each, tl.Completed.Sub(tl.Requested))
			pickup = append(pickup, tl.FirstWorkerRead.Sub(tl.Requested))
		}
		return last.Sub(first), each, pickup
	}
	var r FairnessResult
	var each, pickup []time.Duration
	r.Fast, each, pickup = span(fast)
	r.FastP50, r.FastPickupP50 = Quantile(each, 0.5), Quantile(pickup, 0.5)
	if len(slow) > 0 {
		r.Slow, _, _ = span(slow)
	}
	return r
}

// stored is how many jobs the job stream holds.
func stored(t testing.TB, url string) uint64 {
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
		return 0 // not made yet
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
