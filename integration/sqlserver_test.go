package integration

import (
	"context"
	"database/sql"
	"log/slog"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/internal/testenv/mssqltest"
)

// The whole system with a SQL Server tenant: create (restore of a backup
// the test makes), rename and delete, one row per live instance. It runs
// where a SQL Server is reachable (INSTANCEMGR_TEST_SQLSERVER, or Docker);
// mssqltest skips it with the reason elsewhere.
func TestLifecycleOnSQLServer(t *testing.T) {
	t.Parallel()
	s := mssqltest.Start(t)
	ctx := context.Background()
	count := func(conn *sql.DB, query string, args ...any) int {
		t.Helper()
		var n int
		if err := conn.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	prefix, db := s.Prefix, s.DB
	template := prefix + "_tmpl"
	bak := s.Backup(t, template)
	for _, name := range []string{prefix + "_im", prefix + "_admin"} {
		s.Exec(t, "CREATE DATABASE ["+name+"]")
	}
	admin, err := sql.Open("sqlserver", s.For(prefix+"_admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.ExecContext(ctx, testenv.AdminFixtureSQLServer()); err != nil {
		t.Fatal(err)
	}

	sim := simulatortest.Start(t, simulator.Options{Engine: simulator.EngineSQLServer})
	natsURL := testenv.NATS(t)
	cfg := &config.Config{
		AdminAPI:     config.AdminAPI{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret},
		NATS:         config.NATS{URL: natsURL, AckWait: config.Duration(5 * time.Second), BackOff: []config.Duration{config.Duration(5 * time.Second)}},
		Bridge:       config.Bridge{PollInterval: config.Duration(200 * time.Millisecond)},
		Provisioning: config.Provisioning{Engine: config.EngineSQLServer, Template: template, NamePattern: prefix + "_{name}", AllowDelete: true, DeleteRetention: new(config.Duration)},
		Tenants: map[string]config.TenantEntry{config.DefaultTenant: {
			Engine: config.EngineSQLServer, Backup: bak,
			Master: s.For(prefix + "_im"), Admin: s.For(prefix + "_admin"), ODS: s.For("{0}"),
		}},
	}
	if err := cfg.Complete(func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	api, err := app.AdminClient(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	_, js := testenv.JetStream(t, natsURL)
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	placements := app.NewPlacements(cfg, log)
	t.Cleanup(placements.Close)
	c, err := app.NewConsumer(runCtx, cfg, app.ConsumerDeps{JS: js, API: api, Tenants: placements, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ledgers := app.NewLedgers(cfg, log)
	t.Cleanup(ledgers.Close)
	b, err := app.NewBridge(runCtx, cfg, api, ledgers, js, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = c.Run(runCtx); done <- struct{}{} }()
	go func() { _ = b.Run(runCtx); done <- struct{}{} }()
	t.Cleanup(func() { stop(); <-done; <-done })

	wait := func(id int, status, what string) {
		t.Helper()
		testenv.Eventually(t, 3*time.Minute, what, func() bool {
			r, _ := sim.Instance(id)
			return r.Status == status
		})
	}
	req := adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "District", InstanceType: "enterprise"}
	inst, err := sim.CreateInstance("", req)
	if err != nil {
		t.Fatal(err)
	}
	wait(inst.ID, adminapi.StatusCompleted, "the create")
	if n := count(admin, `SELECT COUNT(*) FROM dbo.OdsInstances WHERE Name = N'District'`); n != 1 {
		t.Fatalf("%d rows after the create", n)
	}
	if n := count(db, `SELECT COUNT(*) FROM sys.databases WHERE name = @p1`, prefix+"_District"); n != 1 {
		t.Fatal("the database was not restored")
	}

	req.Name = "Renamed"
	console, err := adminapi.New(adminapi.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := console.UpdateOdsInstance(ctx, "", inst.ID, req); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Minute, "the rename", func() bool {
		r, _ := sim.Instance(inst.ID)
		return r.Status == adminapi.StatusCompleted && r.Calls["renamed"] == 1
	})
	if n := count(db, `SELECT COUNT(*) FROM sys.databases WHERE name IN (@p1, @p2)`, prefix+"_District", prefix+"_Renamed"); n != 1 ||
		count(admin, `SELECT COUNT(*) FROM dbo.OdsInstances WHERE Name = N'Renamed'`) != 1 {
		t.Fatal("the rename did not move the database and its registration")
	}

	if err := console.DeleteOdsInstance(ctx, "", inst.ID); err != nil {
		t.Fatal(err)
	}
	wait(inst.ID, adminapi.StatusDeleted, "the delete")
	testenv.Eventually(t, time.Minute, "the rows to go", func() bool {
		return count(admin, `SELECT COUNT(*) FROM dbo.OdsInstances`) == 0
	})
	if n := count(db, `SELECT COUNT(*) FROM sys.databases WHERE name = @p1`, prefix+"_Renamed"); n != 0 {
		t.Fatal("the database survived the delete")
	}
}
