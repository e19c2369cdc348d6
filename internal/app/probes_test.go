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
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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

// probeConfig is a consumer's configuration with its probes on addr and
// the default tenant on master.
func probeConfig(t *testing.T, natsURL, addr string, master connstr.Conn, adminDB string) *config.Config {
	t.Helper()
	sim := simulatortest.Start(t, simulator.Options{})
	cfg := &config.Config{
		AdminAPI:     config.AdminAPI{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret},
		NATS:         config.NATS{URL: natsURL},
		Provisioning: config.Provisioning{Template: "edfi_ods_template", NamePattern: "probe_{name}"},
		Tenants: map[string]config.Tenant{config.DefaultTenant: {
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

// runConsumer runs a consumer role until the test ends.
func runConsumer(t *testing.T, cfg *config.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.RunConsumer(ctx, cfg, slog.New(slog.DiscardHandler), consumer.TestSeams{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
}

// A consumer is ready while NATS, its durable consumer, the Admin API and
// its tenant's databases answer; it stops being ready while NATS is down
// (and says so), stays alive, and is ready again when NATS is back.
func TestConsumerProbesFollowNATS(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	prefix := testenv.Prefix()
	testenv.DropDatabasesWithPrefix(t, pg, prefix)
	adminDB := prefix + "_admin"
	testenv.CreateDatabase(t, pg, adminDB)
	testenv.LoadAdminFixture(t, adminDB)
	master, err := connstr.ParsePostgres(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}

	store := t.TempDir()
	ns, err := embednats.Start(embednats.Options{StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	port := ns.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { ns.Shutdown() })

	addr := freeAddr(t)
	runConsumer(t, probeConfig(t, ns.ClientURL(), addr, master, adminDB))
	base := "http://" + addr

	waitFor := func(path string, want int, what string) string {
		t.Helper()
		var body string
		testenv.Eventually(t, time.Minute, what, func() bool {
			var code int
			code, body = probe(base + path)
			return code == want
		})
		return body
	}
	waitFor("/readyz", http.StatusOK, "the consumer ready")

	ns.Shutdown()
	ns.WaitForShutdown()
	body := waitFor("/readyz", http.StatusServiceUnavailable, "the consumer not ready without NATS")
	if !strings.Contains(body, "nats:") {
		t.Fatalf("/readyz without NATS does not name it:\n%s", body)
	}
	if code, body := probe(base + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while NATS is down: %d %s", code, body)
	}

	ns, err = embednats.Start(embednats.Options{StoreDir: store, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("/readyz", http.StatusOK, "the consumer ready again with NATS back")
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
	runConsumer(t, probeConfig(t, testenv.NATS(t), addr, dead, "edfi_admin"))

	var body string
	testenv.Eventually(t, time.Minute, "the consumer not ready", func() bool {
		var code int
		code, body = probe("http://" + addr + "/readyz")
		// Once the stream is set up, only the tenant is missing.
		return code == http.StatusServiceUnavailable && strings.HasPrefix(body, "tenant "+config.DefaultTenant+":") && !strings.Contains(body, "jetstream:")
	})
	if strings.Contains(body, password) {
		t.Fatalf("/readyz shows the tenant's password:\n%s", body)
	}
}
