// Command instancemgr creates, renames and deletes Ed-Fi ODS/API database
// instances for the Ed-Fi Admin Console. One binary, a subcommand per role:
//
//	instancemgr dev                 the whole system in one process, for a laptop
//	instancemgr bridge   -config F  Admin API → JetStream poller
//	instancemgr consumer -config F  JetStream → databases worker (run any number)
//	instancemgr setup    -config F  create or update the stream and consumer
//	instancemgr simulator           the Admin API simulator alone
//	instancemgr jobs ...            dead letters, replay, an instance's jobs
//	instancemgr reconcile -config F where the Admin API, ledger, rows and databases disagree
//	instancemgr trash ...           deleted databases kept in trash: list, restore, purge
//	instancemgr version
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app.Version = buildVersion()
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h asked for the usage, which is printed
		}
		fmt.Fprintln(os.Stderr, "instancemgr:", err)
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			os.Exit(coded.ExitCode()) // reconcile: 3 when differences remain
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no subcommand")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "bridge":
		return runBridge(ctx, rest, stderr)
	case "consumer":
		return runConsumer(ctx, rest, stderr)
	case "setup":
		return runSetup(ctx, rest, stdout, stderr)
	case "simulator":
		return runSimulator(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "instancemgr", buildVersion())
		return nil
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "config":
		return runConfig(ctx, rest, stdout, stderr)
	case "jobs":
		return runJobs(ctx, rest, stdout, stderr)
	case "reconcile":
		return runReconcile(ctx, rest, stdout, stderr)
	case "calibrate":
		return runCalibrate(ctx, rest, stdout, stderr)
	case "trash":
		return runTrash(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown subcommand %q", cmd)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: instancemgr <subcommand> [flags]

  dev        run everything in one process against local PostgreSQL
  bridge     poll the Admin API and publish jobs to JetStream
  consumer   pull jobs and carry them out (run any number of replicas)
  setup      create or update the JetStream stream and durable consumer
  simulator  serve the Admin API simulator alone
  healthcheck  ask a running role's probe (for container healthchecks)
  config check  validate a configuration and print it, secrets redacted
  jobs       inspect dead letters and an instance's jobs; replay a dead letter
  reconcile  compare Admin API, ledger, registrations and databases; exit 3 on differences
  calibrate  measure FILE_COPY against WAL_LOG on each server, within a budget; print what they recommend
  trash      deleted databases kept for provisioning.deleteRetention: list, restore one, purge one now
  version    print the version

Run "instancemgr <subcommand> -h" for its flags.
`)
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if rev := app.Revision(); len(rev) >= 12 {
		return "dev-" + rev[:12]
	}
	return version
}

// newLogger writes level and above to w as JSON (one object per line) or
// as text; dev and the simulator log text for people.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// configFlags adds -config and -log-format to fs and returns a loader for
// them.
func configFlags(fs *flag.FlagSet) func() (*config.Config, error) {
	path := fs.String("config", os.Getenv("INSTANCEMGR_CONFIG"), "path of the YAML configuration (or INSTANCEMGR_CONFIG)")
	format := fs.String("log-format", "", "json or text (default: logFormat of the configuration, or INSTANCEMGR_LOG_FORMAT, else json)")
	return func() (*config.Config, error) {
		if *path == "" {
			return nil, errors.New("-config is required")
		}
		environ := os.Environ()
		if *format != "" {
			environ = append(environ, "INSTANCEMGR_LOG_FORMAT="+*format)
		}
		return config.LoadEnviron(*path, environ)
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseConfig parses a role's -config and the flags more adds, and loads
// the configuration.
func parseConfig(name string, args []string, stderr io.Writer, more ...func(*flag.FlagSet)) (*config.Config, *slog.Logger, error) {
	fs := newFlagSet(name, stderr)
	load := configFlags(fs)
	for _, add := range more {
		add(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	cfg, err := load()
	if err != nil {
		return nil, nil, err
	}
	return cfg, newLogger(stderr, cfg.LogLevel, cfg.LogFormat).With("role", name), nil
}

func runBridge(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, log, err := parseConfig("bridge", args, stderr)
	if err != nil {
		return err
	}
	return app.RunBridge(ctx, cfg, log)
}

func runConsumer(ctx context.Context, args []string, stderr io.Writer) error {
	var enable bool
	cfg, log, err := parseConfig("consumer", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&enable, "enable-test-switches", false, "honour the INSTANCEMGR_TEST_* switches (fault injection for the chaos suite; never in production)")
	})
	if err != nil {
		return err
	}
	seams, err := testSwitches(os.Getenv, enable, log)
	if err != nil {
		return err
	}
	return app.RunConsumer(ctx, cfg, log, seams)
}

func runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, log, err := parseConfig("setup", args, stderr)
	if err != nil {
		return err
	}
	summary, err := app.Setup(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, summary)
	return nil
}

func runSimulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulator", stderr)
	o := app.SimulatorOptions{}
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8089", "address to serve on: loopback only, unless -allow-non-loopback-for-tests")
	fs.BoolVar(&o.AllowNonLoopback, "allow-non-loopback-for-tests", false, "let -listen be an address other machines reach (a test network): anyone who reaches the simulator can register a client with full access")
	tenants := fs.String("tenants", "default", "comma-separated tenant names")
	fs.StringVar(&o.ClientID, "client-id", "", "register this client at start (with -client-secret)")
	fs.StringVar(&o.ClientSecret, "client-secret", os.Getenv("INSTANCEMGR_SIMULATOR_CLIENT_SECRET"), "secret of -client-id (or INSTANCEMGR_SIMULATOR_CLIENT_SECRET)")
	fs.StringVar(&o.Simulator.Engine, "engine", simulator.EnginePostgreSQL, "the Admin API's database engine: PostgreSQL or SqlServer (sets the longest instance name)")
	fs.StringVar(&o.Simulator.Registration, "registration", simulator.RegistrationWorker, "worker (the simulator writes no database) or adminapi (it writes EdFi_Admin as Admin API 2.2.2 does)")
	fs.DurationVar(&o.Simulator.TokenTTL, "token-ttl", 0, "how long a token lasts (0: an hour); short to test expired tokens")
	edfiAdmin := fs.String("edfi-admin", os.Getenv("INSTANCEMGR_SIMULATOR_EDFI_ADMIN"), "EdFi_Admin connection string (pgx form) for -registration adminapi and -manage (or INSTANCEMGR_SIMULATOR_EDFI_ADMIN)")
	fs.BoolVar(&o.Simulator.Manage, "manage", false, "also serve the newest Admin API's /v2/odsInstances/manage and /v3/dataStores/manage, rows in -edfi-admin")
	fs.BoolVar(&o.Simulator.ManageDisabled, "manage-disabled", false, "with -manage: as EnableDataStoreManagement false, every manage route answers 400")
	perTenant := map[string]string{}
	fs.Func("edfi-admin-tenant", "TENANT=CONN: that tenant's EdFi_Admin (pgx form), in place of -edfi-admin; repeat for each tenant", func(v string) error {
		tenant, conn, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(tenant) == "" || conn == "" {
			return errors.New("want TENANT=CONNECTION-STRING")
		}
		perTenant[strings.TrimSpace(tenant)] = conn
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Simulator.Tenants = strings.Split(*tenants, ",")
	o.Simulator.Logger = newLogger(stderr, "info", "text").With("role", "simulator")
	switch {
	case len(perTenant) > 0 && *edfiAdmin != "":
		return errors.New("simulator: -edfi-admin and -edfi-admin-tenant are alternatives; give one")
	case len(perTenant) > 0:
		o.Simulator.AdminDatabases = perTenant
	case *edfiAdmin != "":
		o.Simulator.AdminDatabases = map[string]string{"*": *edfiAdmin}
	}
	return app.RunSimulator(ctx, o, stdout)
}

// testSwitches reads the switches the chaos suite uses to make faults
// reproducible in a real process. They are refused unless enabled
// (--enable-test-switches), and each one is logged loudly when set:
//
//	INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=3s  every job waits this long after its
//	                                         database change (a slow template copy)
//	INSTANCEMGR_TEST_SLOW_TENANTS=a,b        only these tenants' jobs wait: a server
//	                                         whose disk is slow, not its CPU (bench)
//	INSTANCEMGR_TEST_DISABLE_HEARTBEAT=1     running jobs do not renew their lock
func testSwitches(env func(string) string, enabled bool, log *slog.Logger) (consumer.TestSeams, error) {
	var seams consumer.TestSeams
	slow, noHeartbeat := env("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE"), env("INSTANCEMGR_TEST_DISABLE_HEARTBEAT")
	if slow == "" && noHeartbeat == "" {
		return seams, nil
	}
	if !enabled {
		return seams, errors.New("INSTANCEMGR_TEST_* switches are set, but they are for tests only: give --enable-test-switches to use them, or unset them")
	}
	if slow != "" {
		d, err := time.ParseDuration(slow)
		if err != nil {
			return seams, fmt.Errorf("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE: %w", err)
		}
		tenants := env("INSTANCEMGR_TEST_SLOW_TENANTS")
		log.Warn("TEST SWITCH: jobs wait after their database change", "wait", d, "tenants", cmp.Or(tenants, "all"))
		seams.AfterDatabase = func(ctx context.Context, del consumer.Delivery) error {
			if tenants != "" && !slices.Contains(strings.Split(tenants, ","), del.Job.Tenant) {
				return nil
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if noHeartbeat == "1" {
		log.Warn("TEST SWITCH: heartbeats are off; locks expire under running jobs")
		seams.DisableHeartbeat = true
	}
	return seams, nil
}
