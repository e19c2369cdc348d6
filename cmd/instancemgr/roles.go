package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/jobstream"
)

func loadConfig(name string, args []string, stderr io.Writer) (*config.Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("INSTANCEMGR_CONFIG"), "path of the YAML configuration (or INSTANCEMGR_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *path == "" {
		return nil, errors.New("-config is required")
	}
	return config.Load(*path, os.Getenv)
}

// role is what the bridge and the consumer both start from.
type role struct {
	cfg     *config.Config
	log     *slog.Logger
	api     *adminapi.Client
	js      jetstream.JetStream
	targets *app.TenantPool
	metrics *prometheus.Registry
	close   func()
}

func startRole(ctx context.Context, name string, args []string, stderr io.Writer) (*role, error) {
	cfg, err := loadConfig(name, args, stderr)
	if err != nil {
		return nil, err
	}
	log := newLogger(stderr, cfg.LogLevel).With("role", name)
	app.LogTransport(cfg, log)
	api, err := app.AdminClient(cfg, log)
	if err != nil {
		return nil, err
	}
	nc, js, err := app.ConnectNATS(ctx, cfg, "instancemgr-"+name, log)
	if err != nil {
		return nil, err
	}
	targets := app.NewTenantPool(cfg, log)
	reg := prometheus.NewRegistry()
	stopMetrics, err := serveMetrics(ctx, cfg.MetricsAddr, reg, log)
	if err != nil {
		targets.Close()
		nc.Close()
		return nil, err
	}
	return &role{cfg: cfg, log: log, api: api, js: js, targets: targets, metrics: reg,
		close: func() { stopMetrics(); targets.Close(); nc.Close() }}, nil
}

func runBridge(ctx context.Context, args []string, stderr io.Writer) error {
	r, err := startRole(ctx, "bridge", args, stderr)
	if err != nil {
		return err
	}
	defer r.close()
	b, err := app.NewBridge(ctx, r.cfg, r.api, r.targets, r.js, r.log, bridge.NewMetrics(r.metrics))
	if err != nil {
		return err
	}
	r.log.Info("bridge started", "poll_interval", r.cfg.Bridge.PollInterval.D(), "allow_delete", r.cfg.Provisioning.AllowDelete)
	return b.Run(ctx)
}

func runConsumer(ctx context.Context, args []string, stderr io.Writer) error {
	r, err := startRole(ctx, "consumer", args, stderr)
	if err != nil {
		return err
	}
	defer r.close()
	deps := app.ConsumerDeps{JS: r.js, API: r.api, Tenants: r.targets, Log: r.log, Metrics: consumer.NewMetrics(r.metrics)}
	if err := applyTestSwitches(&deps, os.Getenv); err != nil {
		return err
	}
	c, err := app.NewConsumer(ctx, r.cfg, deps)
	if err != nil {
		return err
	}
	r.log.Info("consumer started", "concurrency", r.cfg.Consumer.Concurrency, "ack_wait", r.cfg.NATS.AckWait.D())
	err = c.Run(ctx)
	r.log.Info("consumer stopped")
	return err
}

func runSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("setup", args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel).With("role", "setup")
	nc, js, err := app.ConnectNATS(ctx, cfg, "instancemgr-setup", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	sc := cfg.StreamConfig().WithDefaults()
	if _, err := jobstream.Ensure(ctx, js, sc); err != nil {
		return err
	}
	if err := jobstream.EnsureDeadStream(ctx, js, sc.Replicas, 0); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stream %s (subjects %s, replicas %d, max age %s), durable consumer %s (ack wait %s, max deliver %d, backoff %v) and dead-letter stream %s are in place\n",
		sc.Stream, strings.Join(jobstream.Subjects(), " "), sc.Replicas, sc.MaxAge, sc.Consumer, sc.AckWait, sc.MaxDeliver, sc.BackOff, jobstream.DeadStream)
	return nil
}

func runSimulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", "127.0.0.1:8089", "address to serve on")
	tenants := fs.String("tenants", "default", "comma-separated tenant names")
	clientID := fs.String("client-id", "", "register this client at start (with -client-secret)")
	clientSecret := fs.String("client-secret", os.Getenv("INSTANCEMGR_SIMULATOR_CLIENT_SECRET"), "secret of -client-id (or INSTANCEMGR_SIMULATOR_CLIENT_SECRET)")
	engine := fs.String("engine", simulator.EnginePostgreSQL, "the Admin API's database engine: PostgreSQL or SqlServer (sets the longest instance name)")
	registration := fs.String("registration", simulator.RegistrationWorker, "worker (the simulator writes no database) or adminapi (it writes EdFi_Admin as Admin API 2.3 does)")
	edfiAdmin := fs.String("edfi-admin", os.Getenv("INSTANCEMGR_SIMULATOR_EDFI_ADMIN"), "EdFi_Admin connection string (pgx form) for -registration adminapi (or INSTANCEMGR_SIMULATOR_EDFI_ADMIN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr, "info").With("role", "simulator")
	opts := simulator.Options{Tenants: strings.Split(*tenants, ","), Logger: log, Engine: *engine, Registration: *registration}
	if *edfiAdmin != "" {
		opts.AdminDatabases = map[string]string{"*": *edfiAdmin}
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	sim := simulator.New(opts)
	defer sim.Close()
	if *clientID != "" {
		if err := sim.RegisterClient(*clientID, *clientSecret); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Admin API simulator on http://%s\n", ln.Addr())
	return serve(ctx, ln, sim)
}

// applyTestSwitches reads the switches the chaos suite uses to make faults
// reproducible in a real process. They are for tests only, and each one is
// logged loudly when set:
//
//	INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=3s  every job waits this long after its
//	                                         database change (a slow template copy)
//	INSTANCEMGR_TEST_DISABLE_HEARTBEAT=1     running jobs do not renew their lock
func applyTestSwitches(deps *app.ConsumerDeps, env func(string) string) error {
	if v := env("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE: %w", err)
		}
		deps.Log.Warn("TEST SWITCH: every job waits after its database change", "wait", d)
		deps.Hooks.AfterDatabase = func(ctx context.Context, _ consumer.Delivery) error {
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if env("INSTANCEMGR_TEST_DISABLE_HEARTBEAT") == "1" {
		deps.Log.Warn("TEST SWITCH: heartbeats are off; locks expire under running jobs")
		deps.DisableHeartbeat = true
	}
	return nil
}

// serveMetrics serves reg at addr/metrics until the returned stop is
// called; an empty addr serves nothing.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metricsAddr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = serve(ctx, ln, mux) }()
	log.Info("metrics served", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { cancel(); <-done }, nil
}

// serve runs h on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}
