package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/jackc/pgx/v5/pgxpool"
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

// probe returns a GET's status and body, or 0 while nothing answers.
func probe(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// probeConfig is a consumer's configuration with its probes on addr, the
// Admin API at sim and the default tenant on master.
func probeConfig(t *testing.T, natsURL, addr string, sim *simulatortest.Server, master connstr.Conn, adminDB string) *config.Config {
	t.Helper()
	cfg := &config.Config{
		AdminAPI:     config.AdminAPI{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret},
		NATS:         config.NATS{URL: natsURL},
		Provisioning: config.Provisioning{Template: "edfi_ods_template", NamePattern: "probe_{name}"},
		Tenants: map[string]config.TenantEntry{config.DefaultTenant: {
			Master: master.ADONet(),
			Admin:  master.WithDatabase(adminDB).ADONet(),
			ODS:    master.WithDatabase("{0}").ADONet(),
		}},
		MetricsAddr: addr,
	}
	if err := cfg.Complete(func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runRole runs a role until the test ends, which it must survive.
func runRole(t *testing.T, name string, run func(ctx context.Context, log *slog.Logger) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
}

// runConsumer runs a consumer role until the test ends.
func runConsumer(t *testing.T, cfg *config.Config) {
	t.Helper()
	runRole(t, "consumer", func(ctx context.Context, log *slog.Logger) error {
		return app.RunConsumer(ctx, cfg, log, consumer.TestSeams{})
	})
}

// adminOnLocalPostgres is the name of an EdFi_Admin database, not yet
// created, on the local PostgreSQL, whose connection it returns too.
func adminOnLocalPostgres(t *testing.T) (pg *pgxpool.Pool, master connstr.Conn, adminDB string) {
	t.Helper()
	pg = testenv.Postgres(t)
	prefix := testenv.Prefix()
	testenv.DropDatabasesWithPrefix(t, pg, prefix)
	master, err := connstr.ParsePostgres(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	return pg, master, prefix + "_admin"
}

// readiness waits until /readyz at base fails for exactly the checks named
// in failing (none: 200), and returns its body.
func readiness(t *testing.T, base, what string, failing ...string) string {
	t.Helper()
	var body string
	testenv.Eventually(t, time.Minute, what, func() bool {
		var code int
		code, body = probe(base + "/readyz")
		if len(failing) == 0 {
			return code == http.StatusOK
		}
		if code != http.StatusServiceUnavailable {
			return false
		}
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
			name, _, _ := strings.Cut(line, ":")
			names = append(names, name)
		}
		return strings.Join(names, ",") == strings.Join(failing, ",")
	})
	return body
}

// A consumer is ready exactly while NATS is connected, its durable consumer
// exists, an Admin API token can be had and its tenant's EdFi_Admin
// answers. Each condition false makes it not ready, naming that condition
// alone (the token and EdFi_Admin from the start, the token again when its
// renewal is refused, the durable consumer when deleted, EdFi_Admin when
// it refuses connections, NATS when it stops), and it is ready again when
// the condition is back; the replica stays alive throughout.
func TestConsumerReadinessFollowsEachCondition(t *testing.T) {
	t.Parallel()
	pg, master, adminDB := adminOnLocalPostgres(t)
	store := t.TempDir()
	ns, err := embednats.Start(embednats.Options{StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	port := ns.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { ns.Shutdown() })

	// The worker's client is not registered yet, and EdFi_Admin is missing.
	// Tokens last 2 s, so a refused renewal shows soon.
	sim := simulatortest.Start(t, simulator.Options{TokenTTL: 2 * time.Second})
	late := *sim
	late.ClientID, late.ClientSecret = "probe-worker", "Probe-Worker-Secret-1"
	addr := freeAddr(t)
	cfg := probeConfig(t, ns.ClientURL(), addr, &late, master, adminDB)
	runConsumer(t, cfg)
	base := "http://" + addr
	readiness(t, base, "not ready: no token, no EdFi_Admin", "admin api", "tenant "+config.DefaultTenant)

	if err := sim.RegisterClient(late.ClientID, late.ClientSecret); err != nil {
		t.Fatal(err)
	}
	readiness(t, base, "not ready: no EdFi_Admin", "tenant "+config.DefaultTenant)

	testenv.CreateDatabase(t, pg, adminDB)
	testenv.LoadAdminFixture(t, adminDB)
	readiness(t, base, "ready")

	// The token endpoint refuses the worker: not ready once the cached
	// token is due for renewal, ready again when it is accepted.
	sim.InjectFault(simulator.Fault{Path: "/connect/token", Status: http.StatusUnauthorized})
	readiness(t, base, "not ready: the token refused", "admin api")
	sim.ClearFaults()
	readiness(t, base, "ready with a token again")

	// The durable consumer removed by hand: not ready until setup runs.
	nc, js := testenv.JetStream(t, ns.ClientURL())
	sc := cfg.StreamConfig().WithDefaults()
	if err := js.DeleteConsumer(context.Background(), sc.Stream, sc.Consumer); err != nil {
		t.Fatal(err)
	}
	readiness(t, base, "not ready: no durable consumer", "jetstream")
	if _, err := app.Setup(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	readiness(t, base, "ready after setup")
	nc.Close()

	// EdFi_Admin refuses connections (an outage): not ready, then back.
	ctx := context.Background()
	if _, err := pg.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q WITH ALLOW_CONNECTIONS false`, adminDB)); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, adminDB); err != nil {
		t.Fatal(err)
	}
	readiness(t, base, "not ready: EdFi_Admin refuses connections", "tenant "+config.DefaultTenant)
	if _, err := pg.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q WITH ALLOW_CONNECTIONS true`, adminDB)); err != nil {
		t.Fatal(err)
	}
	readiness(t, base, "ready with EdFi_Admin back")

	ns.Shutdown()
	ns.WaitForShutdown()
	// Without NATS the stream cannot be looked up either.
	readiness(t, base, "not ready without NATS", "nats", "jetstream")
	if code, body := probe(base + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while NATS is down: %d %s", code, body)
	}
	ns, err = embednats.Start(embednats.Options{StoreDir: store, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	readiness(t, base, "ready with NATS back")

	// The consumer exports its durable consumer's backlog.
	if code, metrics := probe(base + "/metrics"); code != http.StatusOK || !strings.Contains(metrics, "instancemgr_consumer_lag_pending 0") {
		t.Fatalf("consumer /metrics (%d) has no backlog:\n%s", code, metrics)
	}
}

// A tenant whose server does not answer makes the consumer not ready; the
// answer names the tenant and never holds its password.
func TestConsumerNotReadyWithoutItsTenantServer(t *testing.T) {
	t.Parallel()
	const password = "Pr0be-Secret-Value"
	dead, err := connstr.ParsePostgres(fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable", password, freeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	runConsumer(t, probeConfig(t, testenv.NATS(t), addr, simulatortest.Start(t, simulator.Options{}), dead, "edfi_admin"))
	body := readiness(t, "http://"+addr, "not ready: the tenant's server is down", "tenant "+config.DefaultTenant)
	if strings.Contains(body, password) {
		t.Fatalf("/readyz shows the tenant's password:\n%s", body)
	}
}

// The bridge is ready while it can find the databases of renames and
// deletes: not before its tenant's EdFi_Admin exists, and as soon as it does.
func TestBridgeReadinessFollowsItsTenant(t *testing.T) {
	t.Parallel()
	pg, master, adminDB := adminOnLocalPostgres(t)
	addr := freeAddr(t)
	cfg := probeConfig(t, testenv.NATS(t), addr, simulatortest.Start(t, simulator.Options{}), master, adminDB)
	runRole(t, "bridge", func(ctx context.Context, log *slog.Logger) error { return app.RunBridge(ctx, cfg, log) })
	base := "http://" + addr
	readiness(t, base, "bridge not ready: no EdFi_Admin", "tenant "+config.DefaultTenant)
	testenv.CreateDatabase(t, pg, adminDB)
	testenv.LoadAdminFixture(t, adminDB)
	readiness(t, base, "bridge ready")
	if code, body := probe(base + "/healthz"); code != http.StatusOK {
		t.Fatalf("bridge /healthz: %d %s", code, body)
	}
	// Beside its own metrics, the role exports the Go runtime's, the
	// process's and which build runs.
	wants := []string{"go_goroutines ", "process_resident_memory_bytes ", `instancemgr_build_info{goversion="go`, `version="` + app.Version + `"`,
		`instancemgr_adminapi_request_seconds_count{class="2xx",endpoint="GET /adminconsole/tenants"}`, "instancemgr_bridge_last_success_timestamp_seconds "}
	var metrics string
	testenv.Eventually(t, time.Minute, "the bridge's metrics after a poll", func() bool {
		var code int
		code, metrics = probe(base + "/metrics")
		return code == http.StatusOK && strings.Contains(metrics, wants[4])
	})
	for _, want := range wants {
		if !strings.Contains(metrics, want) {
			t.Errorf("bridge /metrics has no %s", want)
		}
	}
}
