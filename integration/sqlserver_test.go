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
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/internal/testenv/mssqltest"
)

// The whole system with a SQL Server tenant: create (restore of a backup
// the test makes), rename and delete, one row per live instance. It runs
// where a SQL Server is reachable (INSTANCEMGR_TEST_SQLSERVER, or Docker);
// mssqltest skips it with the reason elsewhere.
func TestLifecycleOnSQLServer(t *testing.T) {
	t.Parallel()
	cs := mssqltest.ConnString(t)
	ctx := context.Background()
	server, err := connstr.ParseSQLServer(cs)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlserver", cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	prefix := testenv.Prefix()
	at := func(database string) string { c := server; c.Database = database; return c.ADONet() }
	exec := func(conn *sql.DB, stmt string, args ...any) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, stmt, args...); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	count := func(conn *sql.DB, query string, args ...any) int {
		t.Helper()
		var n int
		if err := conn.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	t.Cleanup(func() {
		rows, err := db.QueryContext(ctx, `SELECT name FROM sys.databases WHERE name LIKE @p1 + '%'`, prefix)
		if err != nil {
			return
		}
		var names []string
		for rows.Next() {
			var n string
			if rows.Scan(&n) == nil {
				names = append(names, n)
			}
		}
		rows.Close()
		for _, n := range names {
			_, _ = db.ExecContext(ctx, "ALTER DATABASE ["+n+"] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ["+n+"]")
		}
	})
	template := prefix + "_tmpl"
	var backupDir string
	if err := db.QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(4000))`).Scan(&backupDir); err != nil {
		t.Fatal(err)
	}
	bak := backupDir + "/" + template + ".bak"
	exec(db, "CREATE DATABASE ["+template+"]")
	exec(db, "BACKUP DATABASE ["+template+"] TO DISK = @p1 WITH INIT", bak)
	for _, name := range []string{prefix + "_im", prefix + "_admin"} {
		exec(db, "CREATE DATABASE ["+name+"]")
	}
	admin, err := sql.Open("sqlserver", at(prefix+"_admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	exec(admin, testenv.AdminFixtureSQLServer())

	sim := simulatortest.Start(t, simulator.Options{Engine: simulator.EngineSQLServer})
	natsURL := testenv.NATS(t)
	cfg := &config.Config{
		AdminAPI:     config.AdminAPI{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret},
		NATS:         config.NATS{URL: natsURL, AckWait: config.Duration(5 * time.Second), BackOff: []config.Duration{config.Duration(5 * time.Second)}},
		Bridge:       config.Bridge{PollInterval: config.Duration(200 * time.Millisecond)},
		Provisioning: config.Provisioning{Engine: config.EngineSQLServer, Template: template, NamePattern: prefix + "_{name}", AllowDelete: true},
		Tenants: map[string]config.Tenant{config.DefaultTenant: {
			Engine: config.EngineSQLServer, Backup: bak,
			Master: at(prefix + "_im"), Admin: at(prefix + "_admin"), ODS: at("{0}"),
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
	tenants := app.NewTenantPool(cfg, log)
	t.Cleanup(tenants.Close)
	c, err := app.NewConsumer(runCtx, cfg, app.ConsumerDeps{JS: js, API: api, Tenants: tenants, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ledgers := app.NewLedgers(cfg, log)
	t.Cleanup(ledgers.Close)
	b, err := app.NewBridge(runCtx, cfg, api, ledgers, js, log, nil)
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
