package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/provisioning/connstr"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// runDev starts the whole system in one process: embedded NATS, the Admin
// API simulator, the bridge and two consumer replicas, against a local
// PostgreSQL.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pgURL := fs.String("postgres", envOr("INSTANCEMGR_DEV_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"), "PostgreSQL maintenance database (URL or Npgsql form)")
	listen := fs.String("listen", "127.0.0.1:8089", "address of the Admin API simulator")
	natsPort := fs.Int("nats-port", 0, "port of the embedded NATS server (0: a free one)")
	dataDir := fs.String("data-dir", "", "JetStream storage directory (default: a temporary one, removed at exit)")
	template := fs.String("template", "Ods_Minimal_Template", "template database (created small if absent)")
	replicas := fs.Int("replicas", 2, "consumer replicas")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr, *logLevel)

	master, err := connstr.ParsePostgres(*pgURL)
	if err != nil {
		return fmt.Errorf("-postgres: %w", err)
	}

	store := *dataDir
	if store == "" {
		if store, err = os.MkdirTemp("", "instancemgr-dev-js-"); err != nil {
			return err
		}
		defer os.RemoveAll(store)
	}
	ns, err := embednats.Start(embednats.Options{Port: *natsPort, StoreDir: store})
	if err != nil {
		return err
	}
	defer ns.Shutdown()

	sim := simulator.New(simulator.Options{Logger: log.With("role", "simulator")})
	workerID, workerSecret := "instancemgr-dev-worker", randomHex(16)
	if err := sim.RegisterClient(workerID, workerSecret); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen for the simulator: %w", err)
	}
	simURL := "http://" + ln.Addr().String()
	simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
	simDone := make(chan error, 1)
	go func() { simDone <- serve(simCtx, ln, sim) }()
	defer func() { stopSim(); <-simDone }()

	cfg := &config.Config{
		AdminAPI: config.AdminAPI{BaseURL: simURL, ClientID: workerID, ClientSecret: workerSecret},
		NATS:     config.NATS{URL: ns.ClientURL()},
		Bridge:   config.Bridge{PollInterval: config.Duration(2 * time.Second)},
		Consumer: config.Consumer{Concurrency: 2},
		// dev is a sandbox: deletion is on, and the banner says so.
		Provisioning: config.Provisioning{Template: *template, AllowDelete: true},
		Tenants: map[string]config.Tenant{config.DefaultTenant: {
			Master: master.ADONet(),
			Admin:  master.WithDatabase("EdFi_Admin").ADONet(),
			ODS:    master.WithDatabase("{0}").ADONet(),
		}},
		LogLevel: *logLevel,
	}
	if err := cfg.Complete(func(string) string { return "" }); err != nil {
		return err
	}
	if err := prepareDevDatabases(ctx, master, *template); err != nil {
		return err
	}

	api, err := app.AdminClient(cfg, log)
	if err != nil {
		return err
	}
	nc, js, err := app.ConnectNATS(cfg, "instancemgr-dev", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	targets := app.NewTargets(cfg, log)
	defer targets.Close()
	b, err := app.NewBridge(ctx, cfg, api, targets, js, log.With("role", "bridge"), nil)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, *replicas+1)
	for i := range *replicas {
		c, err := app.NewConsumer(ctx, cfg, app.ConsumerDeps{JS: js, API: api, Targets: targets, Log: log.With("role", "consumer", "replica", i+1)})
		if err != nil {
			return err
		}
		wg.Go(func() { errc <- c.Run(ctx) })
	}
	wg.Go(func() { errc <- b.Run(ctx) })

	printDevBanner(stdout, simURL, ns.ClientURL(), master, *template)
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	log.Info("dev stopped")
	return nil
}

// prepareDevDatabases creates EdFi_Admin with the registration tables and a
// small template, when they are absent.
func prepareDevDatabases(ctx context.Context, master connstr.Conn, template string) error {
	engine, err := postgres.NewEngine(ctx, master.PgxConnString(), nil)
	if err != nil {
		return fmt.Errorf("PostgreSQL at %s: %w", master.Redacted(), err)
	}
	defer engine.Close()
	if err := engine.EnsureDatabase(ctx, "EdFi_Admin"); err != nil {
		return err
	}
	if err := engine.EnsureMinimalTemplate(ctx, template, func(db string) string { return master.WithDatabase(db).PgxConnString() }); err != nil {
		return err
	}
	reg, err := postgres.NewRegistry(ctx, master.WithDatabase("EdFi_Admin").PgxConnString(), nil)
	if err != nil {
		return err
	}
	defer reg.Close()
	return reg.EnsureAdminSchema(ctx)
}

func printDevBanner(w io.Writer, simURL, natsURL string, master connstr.Conn, template string) {
	fmt.Fprintf(w, `
instancemgr dev is running (Ctrl-C to stop)

  Admin API simulator  %[1]s
  NATS (embedded)      %[2]s
  PostgreSQL           %[3]s
  template database    %[4]s, registrations in EdFi_Admin
  bridge polls every 2s; 2 consumer replicas
  DELETION IS ENABLED (dev is a sandbox; production needs provisioning.allowDelete)

Ask for an instance, as the Admin Console would:

  curl -s -X POST %[1]s/connect/register -d ClientId=me -d ClientSecret=s3cret-Value -d DisplayName=me
  TOKEN=$(curl -s -X POST %[1]s/connect/token -d client_id=me -d client_secret=s3cret-Value \
      -d grant_type=client_credentials -d scope=edfi_admin_api/full_access | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s -X POST %[1]s/adminconsole/odsInstances -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d '{"tenantId":1,"name":"District 9 - 2025","instanceType":"enterprise","odsInstanceContexts":[{"contextKey":"schoolYearFromRoute","contextValue":"2025"}]}'
  curl -s %[1]s/adminconsole/instances/1 -H "Authorization: Bearer $TOKEN"

Then: psql -h 127.0.0.1 -U postgres -l | grep EdFi_Ods_  and
      psql -h 127.0.0.1 -U postgres -d EdFi_Admin -c 'table dbo.odsinstances'

`, simURL, natsURL, master.Redacted(), template)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
