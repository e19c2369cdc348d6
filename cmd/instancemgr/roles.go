package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
)

// configFlags adds -config to fs and returns a loader for it.
func configFlags(fs *flag.FlagSet) func() (*config.Config, error) {
	path := fs.String("config", os.Getenv("INSTANCEMGR_CONFIG"), "path of the YAML configuration (or INSTANCEMGR_CONFIG)")
	return func() (*config.Config, error) {
		if *path == "" {
			return nil, errors.New("-config is required")
		}
		return config.Load(*path, os.Getenv)
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func runBridge(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("bridge", stderr)
	load := configFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	return app.RunBridge(ctx, cfg, newLogger(stderr, cfg.LogLevel).With("role", "bridge"))
}

func runConsumer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("consumer", stderr)
	load := configFlags(fs)
	enable := fs.Bool("enable-test-switches", false, "honour the INSTANCEMGR_TEST_* switches (fault injection for the chaos suite; never in production)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel).With("role", "consumer")
	seams, err := testSwitches(os.Getenv, *enable, log)
	if err != nil {
		return err
	}
	return app.RunConsumer(ctx, cfg, log, seams)
}

func runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("setup", stderr)
	load := configFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	summary, err := app.Setup(ctx, cfg, newLogger(stderr, cfg.LogLevel).With("role", "setup"))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, summary)
	return nil
}

func runSimulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulator", stderr)
	o := app.SimulatorOptions{}
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8089", "address to serve on")
	tenants := fs.String("tenants", "default", "comma-separated tenant names")
	fs.StringVar(&o.ClientID, "client-id", "", "register this client at start (with -client-secret)")
	fs.StringVar(&o.ClientSecret, "client-secret", os.Getenv("INSTANCEMGR_SIMULATOR_CLIENT_SECRET"), "secret of -client-id (or INSTANCEMGR_SIMULATOR_CLIENT_SECRET)")
	fs.StringVar(&o.Simulator.Engine, "engine", simulator.EnginePostgreSQL, "the Admin API's database engine: PostgreSQL or SqlServer (sets the longest instance name)")
	fs.StringVar(&o.Simulator.Registration, "registration", simulator.RegistrationWorker, "worker (the simulator writes no database) or adminapi (it writes EdFi_Admin as Admin API 2.3 does)")
	edfiAdmin := fs.String("edfi-admin", os.Getenv("INSTANCEMGR_SIMULATOR_EDFI_ADMIN"), "EdFi_Admin connection string (pgx form) for -registration adminapi (or INSTANCEMGR_SIMULATOR_EDFI_ADMIN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Simulator.Tenants = strings.Split(*tenants, ",")
	o.Simulator.Logger = newLogger(stderr, "info").With("role", "simulator")
	if *edfiAdmin != "" {
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
		log.Warn("TEST SWITCH: every job waits after its database change", "wait", d)
		seams.AfterDatabase = func(ctx context.Context, _ consumer.Delivery) error {
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
