package integration

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

// documentedUsers reads the NATS users and permissions that
// deployments/kubernetes/nats-permissions.md tells operators to configure
// (its Helm values block).
func documentedUsers(t *testing.T) map[string]*server.User {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deployments", "kubernetes", "nats-permissions.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("nats-permissions.md has no yaml block")
	}
	var values struct {
		Config struct {
			Merge struct {
				Authorization struct {
					Users []itest.DocUser `json:"users"`
				} `json:"authorization"`
			} `json:"merge"`
		} `json:"config"`
	}
	if err := yaml.Unmarshal([]byte(block), &values); err != nil {
		t.Fatalf("nats-permissions.md: %v", err)
	}
	users := map[string]*server.User{}
	for _, u := range values.Config.Merge.Authorization.Users {
		users[u.User] = u.Server()
	}
	return users
}

// The NATS permissions the deployment documents are enough, and used: with
// each role connected as its own user, limited to its documented subjects,
// setup puts the streams in place, a create completes, a refused job ends
// as a dead letter, and no role meets a permissions violation.
func TestDocumentedNATSPermissionsSuffice(t *testing.T) {
	t.Parallel()
	users := documentedUsers(t)
	roles := []string{"instancemgr-setup", "instancemgr-bridge", "instancemgr-consumer"}
	serverUsers := []*server.User{{Username: "observer", Password: "observer-pass"}} // the test's own, unrestricted
	for _, name := range roles {
		u, ok := users[name]
		if !ok {
			t.Fatalf("nats-permissions.md has no user %q", name)
		}
		serverUsers = append(serverUsers, u)
	}
	ns, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Users: serverUsers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)

	world := itest.NewWorld(t, "")
	_, adminDB := world.AdminDatabase(t, "admin")
	sim := simulatortest.Start(t, simulator.Options{})
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the roles' logs:\n%s", logs)
		}
	})
	as := func(user string) *config.Config {
		cfg := &config.Config{
			AdminAPI:     config.AdminAPI{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret},
			NATS:         config.NATS{URL: ns.ClientURL(), User: user, Password: users[user].Password, AckWait: config.Duration(5 * time.Second)},
			Bridge:       config.Bridge{PollInterval: config.Duration(200 * time.Millisecond)},
			Provisioning: config.Provisioning{Template: world.Template, NamePattern: world.Prefix + "_{name}"},
			Tenants: map[string]config.TenantEntry{config.DefaultTenant: {
				Master: world.Master.ADONet(),
				Admin:  world.Master.WithDatabase(adminDB).ADONet(),
				ODS:    world.Master.WithDatabase("{0}").ADONet(),
			}},
		}
		if err := cfg.Complete(func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	ctx, cancel := context.WithCancel(context.Background())
	if _, err := app.Setup(ctx, as("instancemgr-setup"), log); err != nil {
		t.Fatalf("setup as instancemgr-setup: %v\n%s", err, logs)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- app.RunBridge(ctx, as("instancemgr-bridge"), log) })
	wg.Go(func() { errs <- app.RunConsumer(ctx, as("instancemgr-consumer"), log, consumer.TestSeams{}) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("role: %v", err)
			}
		}
	})

	created, err := sim.CreateInstance(config.DefaultTenant, adminapi.InstanceRequest{TenantID: sim.TenantID(config.DefaultTenant), TenantName: config.DefaultTenant, Name: "Permitted", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	// A name the naming rule refuses: a job that can only end as a dead
	// letter.
	if _, err := sim.CreateInstance(config.DefaultTenant, adminapi.InstanceRequest{TenantID: sim.TenantID(config.DefaultTenant), TenantName: config.DefaultTenant, Name: "Café", InstanceType: "enterprise"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the create Completed", func() bool {
		in, ok := sim.Instance(created.ID)
		return ok && in.Status == adminapi.StatusCompleted
	})

	observerCfg := config.NATS{URL: ns.ClientURL(), User: "observer", Password: "observer-pass"}
	_, js, err := app.ConnectNATS(ctx, &config.Config{NATS: observerCfg}, "observer", log)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the refused job dead-lettered", func() bool {
		st, err := js.Stream(ctx, jobs.DeadStream)
		return err == nil && st.CachedInfo().State.Msgs == 1
	})
	if out := logs.String(); strings.Contains(strings.ToLower(out), "permissions violation") {
		t.Fatalf("a role met a permissions violation with the documented permissions:\n%s", out)
	}
}
