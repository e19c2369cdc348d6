package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// DevOptions are dev's flags.
type DevOptions struct {
	Postgres string // maintenance database, URL or Npgsql form
	Listen   string // the simulator's address
	NATSPort int    // 0 picks a free port
	DataDir  string // the simulator's instances and JetStream's jobs, kept between runs
	Template string
	// TemplateShape is what the templates dev creates when absent hold:
	// TemplateShapeMinimal or TemplateShapeODS.
	TemplateShape string
	AdminDatabase string
	NamePattern   string
	PollInterval  time.Duration
	Replicas      int
	Registration  string // config.RegistrationWorker or RegistrationAdminAPI
	// Flavor is the Admin API line the simulator plays:
	// config.FlavorAdminConsole (2.2.2's /adminconsole/) or FlavorManage (the
	// newest line's /v2/odsInstances/manage and /v3/dataStores/manage).
	Flavor string
	// Templates are the manage flavor's template databases by
	// databaseTemplate; nil for Ed-Fi's.
	Templates map[string]string
	LogLevel  string
	HTTP      string // where /healthz and /readyz are served
	// Reset starts clean: the instance databases this data directory's
	// EdFi_Admin records (each dropped only while it is the database the
	// system made), that EdFi_Admin (only when it belongs to this data
	// directory), and the data directory; nothing dev did not make.
	Reset bool
	// AllowNonLoopback lets Listen be an address other machines reach
	// (CheckSimulatorListen).
	AllowNonLoopback bool
}

// The shapes of the templates dev creates: one small table, or the
// counts of Ed-Fi's Data Standard 6.1 ODS (postgres.EnsureODSShapedTemplate).
const (
	TemplateShapeMinimal = "minimal"
	TemplateShapeODS     = "ods"
)

// devWorkers is each dev replica's consumer.concurrency.
const devWorkers = 2

// CopiesAtOnce is how many copies dev's replicas make at once: what
// `instancemgr calibrate` measures at for it.
func (o DevOptions) CopiesAtOnce() int { return max(o.Replicas, 1) * devWorkers }

// DefaultDevOptions are dev's defaults.
func DefaultDevOptions() DevOptions {
	return DevOptions{
		Postgres: "postgres://postgres@127.0.0.1:5432/postgres", Listen: "127.0.0.1:8089", DataDir: defaultDevDataDir(),
		Template: "Ods_Minimal_Template", TemplateShape: TemplateShapeMinimal, AdminDatabase: "EdFi_Admin", NamePattern: provisioning.DefaultNamePattern,
		PollInterval: 2 * time.Second, Replicas: 2, Registration: config.RegistrationWorker, Flavor: config.FlavorAdminConsole, LogLevel: "info", HTTP: "127.0.0.1:8090",
	}
}

// RunDev runs the whole system in one process until ctx ends: embedded
// NATS, the Admin API simulator, the bridge and the consumer replicas,
// against a local PostgreSQL. The banner goes to stdout.
func RunDev(ctx context.Context, o DevOptions, stdout io.Writer, log *slog.Logger) error {
	// Refused before -reset removes anything.
	if err := CheckSimulatorListen(o.Listen, o.AllowNonLoopback); err != nil {
		return err
	}
	if o.TemplateShape != TemplateShapeMinimal && o.TemplateShape != TemplateShapeODS {
		return fmt.Errorf("template-shape: %q is neither %s nor %s", o.TemplateShape, TemplateShapeMinimal, TemplateShapeODS)
	}
	master, err := connstr.ParsePostgres(o.Postgres)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if o.Reset {
		if err := resetDev(ctx, o, master, log); err != nil {
			return err
		}
	}

	// Everything dev keeps lives in the data directory and in PostgreSQL,
	// so two runs behave like one long run: the simulator numbers new
	// instances after the old ones, as the real Admin API would.
	store := filepath.Join(o.DataDir, "jetstream")
	_, err = os.Stat(filepath.Join(o.DataDir, "simulator.json"))
	freshDataDir := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(store, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	ns, err := embednats.Start(embednats.Options{Port: o.NATSPort, StoreDir: store})
	if err != nil {
		return err
	}
	defer ns.Shutdown()

	manageFlavor := o.Flavor == config.FlavorManage
	switch {
	case o.Flavor != config.FlavorAdminConsole && !manageFlavor:
		return fmt.Errorf("adminapi-flavor: %q is neither %s nor %s", o.Flavor, config.FlavorAdminConsole, config.FlavorManage)
	case manageFlavor && o.Registration != config.RegistrationWorker:
		return fmt.Errorf("registration: the manage flavor registers with the worker: instancemgr writes dbo.OdsInstances in the transaction that completes the request")
	}
	simOpts := simulator.Options{Logger: log.With("role", "simulator"), Registration: o.Registration, Manage: manageFlavor,
		AdminDatabases: map[string]string{"*": master.WithDatabase(o.AdminDatabase).PgxConnString()}}
	if o.Registration != config.RegistrationAdminAPI && !manageFlavor {
		simOpts.AdminDatabases = nil
	}
	workerID, workerSecret := "instancemgr-dev-worker", randomHex(16)
	// Served until dev has stopped, so that its replicas can settle their
	// jobs while they drain.
	simURL, stopSim, err := startSimulator(context.WithoutCancel(ctx), SimulatorOptions{Listen: o.Listen, AllowNonLoopback: o.AllowNonLoopback, Simulator: simOpts,
		ClientID: workerID, ClientSecret: workerSecret, State: filepath.Join(o.DataDir, "simulator.json")})
	if err != nil {
		return err
	}
	defer stopSim()

	cfg := &config.Config{
		AdminAPI: config.AdminAPI{BaseURL: simURL, ClientID: workerID, ClientSecret: workerSecret},
		NATS:     config.NATS{URL: ns.ClientURL()},
		Bridge:   config.Bridge{PollInterval: config.Duration(o.PollInterval)},
		Consumer: config.Consumer{Concurrency: devWorkers},
		// dev is a sandbox: deletion is on, and the banner says so, and a
		// delete drops at once (its databases are throwaway; trash would
		// only fill the developer's disk). Its replicas share the one
		// server: all their copies are at once.
		Provisioning: config.Provisioning{Template: o.Template, NamePattern: o.NamePattern, AllowDelete: true, Registration: o.Registration,
			CopiesAtOnce: o.CopiesAtOnce(), DeleteRetention: new(config.Duration)},
		Tenants: map[string]config.TenantEntry{config.DefaultTenant: {
			Master: master.ADONet(),
			Admin:  master.WithDatabase(o.AdminDatabase).ADONet(),
			ODS:    master.WithDatabase("{0}").ADONet(),
		}},
		LogLevel:    o.LogLevel,
		MetricsAddr: o.HTTP,
	}
	if manageFlavor {
		// That Admin API encrypts every connection string; dev keeps its key
		// beside its other state, so a restart reads what it wrote.
		key, err := devEncryptionKey(filepath.Join(o.DataDir, "encryption.key"))
		if err != nil {
			return err
		}
		cfg.AdminAPI = config.AdminAPI{Flavor: config.FlavorManage}
		cfg.Provisioning.EncryptionKey, cfg.Provisioning.Templates = key, o.Templates
	}
	if err := cfg.Complete(func(string) string { return "" }); err != nil {
		return err
	}
	templates := []string{o.Template}
	for _, key := range slices.Sorted(maps.Keys(cfg.Provisioning.Templates)) {
		templates = append(templates, cfg.Provisioning.Templates[key])
	}
	if err := prepareDevDatabases(ctx, master, o.AdminDatabase, templates, o.TemplateShape, manageFlavor, devDataDir{path: o.DataDir, fresh: freshDataDir}); err != nil {
		return err
	}

	// dev builds the bridge and its replicas as their roles do, on one
	// role: one NATS connection and one set of metrics and probes for all.
	return runRole(ctx, cfg, "dev", log, func(r *role) ([]func(context.Context) error, error) {
		b, err := r.bridge(ctx, log.With("role", "bridge"))
		if err != nil {
			return nil, err
		}
		deps := r.consumerDeps(log.With("role", "consumer"))
		loops := []func(context.Context) error{b.Run, deps.Purger.Run} // one purger: the replicas share a server
		for i := range o.Replicas {
			deps.Log = log.With("role", "consumer", "replica", i+1)
			c, err := NewConsumer(ctx, cfg, deps)
			if err != nil {
				return nil, err
			}
			loops = append(loops, c.Run)
		}
		banner := devBanner{simURL: simURL, natsURL: ns.ClientURL(), master: master, adminDB: o.AdminDatabase, template: o.Template, dataDir: o.DataDir, poll: o.PollInterval, replicas: o.Replicas, registration: o.Registration, probes: r.probes}
		if manageFlavor {
			banner.template = strings.Join(templates[1:], ", ")
			printManageBanner(stdout, banner)
		} else {
			printDevBanner(stdout, banner)
		}
		return loops, nil
	})
}

// prepareDevDatabases creates EdFi_Admin with the registration tables (and
// the newest Admin API's manage tables, with manage) and templates of
// shape, when they are absent.
func prepareDevDatabases(ctx context.Context, master connstr.Conn, adminDB string, templates []string, shape string, manage bool, dir devDataDir) error {
	engine, err := postgres.NewEngine(ctx, master.PgxConnString(), nil)
	if err != nil {
		return fmt.Errorf("PostgreSQL at %s: %w", master.Redacted(), err)
	}
	defer engine.Close()
	if err := engine.EnsureDatabase(ctx, adminDB); err != nil {
		return err
	}
	connectTo := func(db string) string { return master.WithDatabase(db).PgxConnString() }
	for _, template := range templates {
		var err error
		if shape == TemplateShapeODS {
			err = engine.EnsureODSShapedTemplate(ctx, template, connectTo, 0)
		} else {
			err = engine.EnsureMinimalTemplate(ctx, template, connectTo)
		}
		if err != nil {
			return err
		}
	}
	reg, err := postgres.NewRegistry(ctx, master.WithDatabase(adminDB).PgxConnString(), nil)
	if err != nil {
		return err
	}
	defer reg.Close()
	if err := reg.EnsureAdminSchema(ctx); err != nil {
		return err
	}
	if err := dir.claim(ctx, master.WithDatabase(adminDB).PgxConnString(), adminDB); err != nil {
		return err
	}
	if !manage {
		return nil
	}
	// What that Admin API's migrations would have made.
	conn, err := pgx.Connect(ctx, master.WithDatabase(adminDB).PgxConnString())
	if err != nil {
		return fmt.Errorf("connect to %s: %w", adminDB, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, simulator.ManageSchema); err != nil {
		return fmt.Errorf("create the manage tables in %s: %w", adminDB, err)
	}
	return nil
}

// devDataDir is dev's data directory, and whether this run found it new
// (no simulator state in it yet).
type devDataDir struct {
	path  string
	fresh bool
}

// claim binds the data directory and EdFi_Admin to each other: the
// simulator in one numbers instances on from its state, and the ledger in
// the other holds what those numbers made, so a data directory meeting
// another's EdFi_Admin would reuse ids the ledger holds (a conflict, and a
// request pending for ever). The directory keeps a random id (dev.id);
// EdFi_Admin keeps the id and path of the one directory it belongs to. A
// mismatch stops dev before anything runs, saying what to do.
func (d devDataDir) claim(ctx context.Context, adminConn, adminDB string) error {
	idFile := filepath.Join(d.path, "dev.id")
	b, err := os.ReadFile(idFile)
	id := strings.TrimSpace(string(b))
	switch {
	case errors.Is(err, os.ErrNotExist) || err == nil && id == "":
		id = randomHex(16)
		if err := os.WriteFile(idFile, []byte(id+"\n"), 0o600); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	}
	conn, err := pgx.Connect(ctx, adminConn)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", adminDB, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS instancemgr.dev_data_directory (
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    id         text        NOT NULL,
    path       text        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("bind %s to the data directory: %w", adminDB, err)
	}
	var owner, ownerPath string
	err = conn.QueryRow(ctx, `SELECT id, path FROM instancemgr.dev_data_directory`).Scan(&owner, &ownerPath)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if d.fresh {
			// Made by a dev run from before directories were bound, with
			// another directory: its instances' ids are not this one's.
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM instancemgr.instances`).Scan(&n); err != nil {
				return fmt.Errorf("read the ledger of %s: %w", adminDB, err)
			}
			if n > 0 {
				return fmt.Errorf("dev: %s holds %d instances made with another data directory, and %s is new: their ids would collide. Run dev with that run's -data-dir, or with -admin-database and a new name, or drop %s and its instance databases to start clean", adminDB, n, d.path, adminDB)
			}
		}
		if _, err := conn.Exec(ctx, `INSERT INTO instancemgr.dev_data_directory (id, path) VALUES ($1, $2) ON CONFLICT (one) DO NOTHING`, id, d.path); err != nil {
			return fmt.Errorf("bind %s to the data directory: %w", adminDB, err)
		}
		if err := conn.QueryRow(ctx, `SELECT id, path FROM instancemgr.dev_data_directory`).Scan(&owner, &ownerPath); err != nil {
			return fmt.Errorf("bind %s to the data directory: %w", adminDB, err)
		}
	case err != nil:
		return fmt.Errorf("read which data directory %s belongs to: %w", adminDB, err)
	}
	if owner != id {
		return fmt.Errorf("dev: %s belongs to the data directory %s, not to %s: their instance ids would collide. Run dev with -data-dir %s (add -reset to start clean), or with -admin-database and a new name", adminDB, ownerPath, d.path, ownerPath)
	}
	return nil
}

// resetDev removes what dev made with o's data directory: the instance
// databases its EdFi_Admin's ledger records (each through the engine's
// drop, which drops only the very database the system made and refuses a
// protected one), that EdFi_Admin once they are gone, and the data
// directory. An EdFi_Admin that does not belong to this data directory is
// never touched: dev says so and stops.
func resetDev(ctx context.Context, o DevOptions, master connstr.Conn, log *slog.Logger) error {
	id, _ := os.ReadFile(filepath.Join(o.DataDir, "dev.id"))
	adminConn := master.WithDatabase(o.AdminDatabase).PgxConnString()
	engine, err := postgres.NewEngine(ctx, master.PgxConnString(), log)
	if err != nil {
		return fmt.Errorf("PostgreSQL at %s: %w", master.Redacted(), err)
	}
	defer engine.Close()
	exists, err := engine.DatabaseExists(ctx, o.AdminDatabase)
	if err != nil {
		return err
	}
	if exists {
		conn, err := pgx.Connect(ctx, adminConn)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", o.AdminDatabase, err)
		}
		var owner, ownerPath string
		err = conn.QueryRow(ctx, `SELECT id, path FROM instancemgr.dev_data_directory`).Scan(&owner, &ownerPath)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil || owner != strings.TrimSpace(string(id)) {
			return fmt.Errorf("dev -reset: %s does not belong to the data directory %s (it belongs to %q), so dev did not make it there; nothing was removed", o.AdminDatabase, o.DataDir, ownerPath)
		}
		naming := provisioning.Naming{Pattern: o.NamePattern}
		if o.Flavor == config.FlavorManage {
			naming = provisioning.Naming{Rule: provisioning.RuleAdminAPI}
		}
		engine.Guard = &provisioning.Guard{Naming: naming, Protected: append([]string{o.Template, o.AdminDatabase}, slices.Collect(maps.Values(o.Templates))...)}
		reg, err := postgres.NewRegistry(ctx, adminConn, log)
		if err != nil {
			return err
		}
		recs, err := reg.Records(ctx)
		reg.Close()
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if _, err := engine.DropDatabase(ctx, rec.Database, rec.Owner()); err != nil {
				return fmt.Errorf("dev -reset: %w; %s is kept, so that nothing is lost track of", err, o.AdminDatabase)
			}
			if err := engine.Release(ctx, rec.Database, rec.Owner()); err != nil {
				return err
			}
			log.Info("dev -reset: dropped", "database", rec.Database)
		}
		conn, err = pgx.Connect(ctx, master.PgxConnString())
		if err != nil {
			return fmt.Errorf("PostgreSQL at %s: %w", master.Redacted(), err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{o.AdminDatabase}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dev -reset: drop %s: %w", o.AdminDatabase, err)
		}
		log.Info("dev -reset: dropped", "database", o.AdminDatabase)
	}
	if err := os.RemoveAll(o.DataDir); err != nil {
		return fmt.Errorf("dev -reset: %w", err)
	}
	return nil
}

// devEncryptionKey reads dev's connection-string key from path, making a
// random one there on first use.
func devEncryptionKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read dev's encryption key: %w", err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write dev's encryption key: %w", err)
	}
	return key, nil
}

func registeredBy(mode string) string {
	if mode == config.RegistrationAdminAPI {
		return "Admin API simulator, as Admin API 2.2.2 does"
	}
	return "worker"
}

// defaultDevDataDir is where dev keeps its state unless told otherwise.
func defaultDevDataDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "instancemgr", "dev")
}

type devBanner struct {
	simURL, natsURL   string
	master            connstr.Conn
	adminDB, template string
	dataDir           string
	poll              time.Duration
	replicas          int
	registration      string
	probes            string
}

func printDevBanner(w io.Writer, b devBanner) {
	fmt.Fprintf(w, `
instancemgr dev is running (Ctrl-C to stop)

  Admin API simulator  %[1]s
  NATS (embedded)      %[2]s
  PostgreSQL           %[3]s
  template database    %[4]s, registrations in %[5]s (written by the %[9]s)
  bridge polls every %[7]s; %[8]d consumer replicas
  probes, metrics      %[10]s/healthz, %[10]s/readyz, %[10]s/metrics
  jobs and dead letters  instancemgr jobs dead list -server %[2]s
  DELETION IS ENABLED (dev is a sandbox; production needs provisioning.allowDelete)

  State is kept between runs: the simulator's instances and the jobs in
  %[6]s, the databases and registrations in PostgreSQL. To start clean,
  stop dev, remove that directory, and drop %[5]s and the databases dev made.

Ask for an instance, as the Admin Console would:

  curl -s -X POST %[1]s/connect/register -d ClientId=me -d ClientSecret=s3cret-Value -d DisplayName=me
  TOKEN=$(curl -s -X POST %[1]s/connect/token -d client_id=me -d client_secret=s3cret-Value \
      -d grant_type=client_credentials -d scope=edfi_admin_api/full_access | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s -X POST %[1]s/adminconsole/odsInstances -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d '{"tenantId":1,"tenantName":"default","name":"District 9 - 2025","instanceType":"enterprise","odsInstanceContexts":[{"contextKey":"schoolYearFromRoute","contextValue":"2025"}]}'
  curl -s %[1]s/adminconsole/instances/1 -H "Authorization: Bearer $TOKEN"

Then: psql -h 127.0.0.1 -U postgres -l | grep EdFi_Ods_  and
      psql -h 127.0.0.1 -U postgres -d %[5]s -c 'table dbo.odsinstances'

`, b.simURL, b.natsURL, b.master.Redacted(), b.template, b.adminDB, b.dataDir, b.poll, b.replicas, registeredBy(b.registration), b.probes)
}

func printManageBanner(w io.Writer, b devBanner) {
	fmt.Fprintf(w, `
instancemgr dev is running the newest Admin API's flavor (manage; Ctrl-C to stop)

  Admin API simulator  %[1]s (/v2/odsInstances/manage, /v3/dataStores/manage)
  NATS (embedded)      %[2]s
  PostgreSQL           %[3]s
  template databases   %[4]s; requests and registrations in %[5]s
  encryption key       %[6]s/encryption.key (connection strings are stored IV|ciphertext|HMAC)
  bridge polls every %[7]s; %[8]d consumer replicas
  probes, metrics      %[9]s/healthz, %[9]s/readyz, %[9]s/metrics
  DELETION IS ENABLED (dev is a sandbox; production needs provisioning.allowDelete)

Ask for an instance, as a client of that Admin API would:

  curl -s -X POST %[1]s/connect/register -d ClientId=me -d ClientSecret=s3cret-Value -d DisplayName=me
  TOKEN=$(curl -s -X POST %[1]s/connect/token -d client_id=me -d client_secret=s3cret-Value \
      -d grant_type=client_credentials -d scope=edfi_admin_api/full_access | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -si -X POST %[1]s/v2/odsInstances/manage -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d '{"name":"District 9","databaseTemplate":"Minimal"}'
  curl -s %[1]s/v2/odsInstances/manage/1 -H "Authorization: Bearer $TOKEN"
  curl -s -X DELETE %[1]s/v2/odsInstances/manage/1 -H "Authorization: Bearer $TOKEN"

Then: psql -h 127.0.0.1 -U postgres -l | grep EdFi_Ods_  and
      psql -h 127.0.0.1 -U postgres -d %[5]s -c 'table adminapi.odsinstancemanages' -c 'table dbo.odsinstances'

`, b.simURL, b.natsURL, b.master.Redacted(), b.template, b.adminDB, b.dataDir, b.poll, b.replicas, b.probes)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
