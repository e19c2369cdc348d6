package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/health"
	"github.com/edfi-tools/instancemgr/internal/httpserve"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// role is what every role is built on: the Admin API client (nil with the
// manage flavor, which reads EdFi_Admin instead), NATS, one metrics
// registry and one set of probes, served at metricsAddr. The bridge and
// the consumer are each built on one by the builders below; dev builds
// both on one.
type role struct {
	cfg     *config.Config
	api     *adminapi.Client
	js      jetstream.JetStream
	metrics *prometheus.Registry
	checks  *health.Checks
	probes  string // the URL metrics and probes are served at; "" for none
	closers []func()
}

// startRole connects what every role needs and serves its metrics and
// probes.
func startRole(ctx context.Context, cfg *config.Config, name string, log *slog.Logger) (*role, error) {
	LogTransport(cfg, log)
	r := &role{cfg: cfg, metrics: newRegistry(), checks: health.New(0)}
	if !cfg.Manage() {
		var err error
		if r.api, err = adminClient(cfg, log, r.metrics); err != nil {
			return nil, err
		}
	}
	nc, js, err := ConnectNATS(ctx, cfg, "instancemgr-"+name, log)
	if err != nil {
		return nil, err
	}
	r.js = js
	r.onClose(nc.Close)
	r.checks.Ready("nats", natsReady(nc))
	if r.api != nil {
		r.checks.Ready("admin api", r.api.CheckToken)
	}
	// Served until the role has stopped, so they answer while it drains.
	probes, stop, err := ServeHTTP(context.WithoutCancel(ctx), cfg.MetricsAddr, cfg.Pprof, r.metrics, r.checks, log, httpserve.Limits{})
	if err != nil {
		r.close()
		return nil, err
	}
	r.probes = probes
	r.onClose(stop)
	return r, nil
}

// onClose adds f to what close runs.
func (r *role) onClose(f func()) { r.closers = append(r.closers, f) }

// close closes what the role opened, the last first.
func (r *role) close() {
	for _, f := range slices.Backward(r.closers) {
		f()
	}
}

// bridge builds the bridge on r: the tenants' ledgers, the bridge with its
// metrics and probes, and the manage flavor's write routes when
// adminApi.manageListen is set, which publish each request's job through
// the bridge as soon as they have written it. The routes serve before the
// job stream is ensured: a request written while NATS is away is
// published by a poll.
func (r *role) bridge(ctx context.Context, log *slog.Logger) (*bridge.Bridge, error) {
	ledgers := NewLedgers(r.cfg, log)
	r.onClose(ledgers.Close)
	b := buildBridge(r.cfg, BridgeAPI(r.cfg, r.api, ledgers, log), ledgers, r.js, log, bridge.NewMetrics(r.metrics), BridgeProbes(r.checks, r.cfg, r.js, ledgers))
	stopManage, err := serveManage(ctx, r.cfg, ledgers, b, log, r.metrics, httpserve.Limits{})
	if err != nil {
		return nil, err
	}
	r.onClose(stopManage)
	if err := ensureJobStream(ctx, r.cfg, r.js, log); err != nil {
		return nil, err
	}
	return b, nil
}

// consumerDeps builds what the consumer replicas on r share: the tenants'
// placements, whose copies are measured, the metrics, the stream's lag and
// the probes. NewConsumer builds each replica from them.
func (r *role) consumerDeps(log *slog.Logger) ConsumerDeps {
	placements := NewPlacements(r.cfg, log)
	placements.OnCopied = CopyReport(r.metrics)
	r.onClose(placements.Close)
	sc := r.cfg.StreamConfig().WithDefaults()
	r.metrics.MustRegister(jobs.NewLagCollector(r.js, sc.Stream, sc.Consumer))
	return ConsumerDeps{JS: r.js, API: ConsumerAPI(r.cfg, r.api, placements, log), Tenants: placements, Log: log, Metrics: consumer.NewMetrics(r.metrics),
		Beat: ConsumerProbes(r.checks, r.cfg, r.js, placements), Purger: NewPurger(r.cfg, placements, log, r.metrics)}
}

// runRole starts a role, builds its loops on it with build, runs them
// until ctx ends and closes what the role opened. A role stopped, perhaps
// while still setting up, has not failed.
func runRole(ctx context.Context, cfg *config.Config, name string, log *slog.Logger, build func(r *role) ([]func(context.Context) error, error)) error {
	r, err := startRole(ctx, cfg, name, log)
	if err != nil {
		return err
	}
	defer r.close()
	loops, err := build(r)
	if err != nil {
		return failed(ctx, err)
	}
	errs := make([]error, len(loops))
	var wg sync.WaitGroup
	for i, loop := range loops {
		wg.Go(func() { errs[i] = loop(ctx) })
	}
	wg.Wait()
	log.Info(name + " stopped")
	for _, err := range errs {
		if err := failed(ctx, err); err != nil {
			return err
		}
	}
	return nil
}

// failed is err unless it only says that ctx has ended.
func failed(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// RunBridge runs the bridge role until ctx ends.
func RunBridge(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return runRole(ctx, cfg, "bridge", log, func(r *role) ([]func(context.Context) error, error) {
		b, err := r.bridge(ctx, log)
		if err != nil {
			return nil, err
		}
		log.Info("bridge started", "poll_interval", cfg.Bridge.PollInterval.D(), "allow_delete", cfg.Provisioning.AllowDelete)
		return []func(context.Context) error{b.Run}, nil
	})
}

// RunConsumer runs one consumer replica until ctx ends, then drains.
// seams are zero except under the binary's test switches.
func RunConsumer(ctx context.Context, cfg *config.Config, log *slog.Logger, seams consumer.TestSeams) error {
	return runRole(ctx, cfg, "consumer", log, func(r *role) ([]func(context.Context) error, error) {
		deps := r.consumerDeps(log)
		deps.TestSeams = seams
		c, err := NewConsumer(ctx, cfg, deps)
		if err != nil {
			return nil, err
		}
		log.Info("consumer started", "concurrency", cfg.Consumer.Concurrency, "ack_wait", cfg.NATS.AckWait.D(), "delete_retention", cfg.DeleteRetention())
		return []func(context.Context) error{c.Run, deps.Purger.Run}, nil
	})
}

// Setup creates or updates the job stream, its durable consumer and the
// dead-letter stream, and says what is in place.
func Setup(ctx context.Context, cfg *config.Config, log *slog.Logger) (string, error) {
	nc, js, err := ConnectNATS(ctx, cfg, "instancemgr-setup", log)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	sc := cfg.StreamConfig().WithDefaults()
	if _, _, err := setUpStreams(ctx, js, sc, log); err != nil {
		return "", err
	}
	log.Info("streams and durable consumer in place", "stream", sc.Stream, "consumer", sc.Consumer, "dead_letters", jobs.DeadStream)
	return fmt.Sprintf("stream %s (subjects %s, replicas %d, max age %s), durable consumer %s (ack wait %s, max deliver %d, backoff %v), advisory stream %s with consumer %s and dead-letter stream %s are in place",
		sc.Stream, strings.Join(jobs.Subjects(), " "), sc.Replicas, sc.MaxAge, sc.Consumer, sc.AckWait, sc.MaxDeliver, sc.BackOff, sc.ExhaustedStream(), sc.ExhaustedConsumer(), jobs.DeadStream), nil
}

// setUpStreams ensures the job stream, its durable consumer, the stream
// that keeps its max-deliveries advisories with their consumer, and the
// dead-letter stream, retrying while JetStream is not ready.
func setUpStreams(ctx context.Context, js jetstream.JetStream, sc jobs.Config, log *slog.Logger) (cons, exhausted jetstream.Consumer, err error) {
	err = jobs.Retry(ctx, log, "the job stream and consumer", func() error {
		var err error
		if cons, err = jobs.Ensure(ctx, js, sc); err != nil {
			return err
		}
		if exhausted, err = jobs.EnsureExhausted(ctx, js, sc); err != nil {
			return err
		}
		return jobs.EnsureDeadStream(ctx, js, sc.Replicas, 0)
	})
	return cons, exhausted, err
}

// SimulatorOptions are the simulator role's settings.
type SimulatorOptions struct {
	Listen string
	// AllowNonLoopback lets Listen be an address other machines reach,
	// for a test deployment that needs it (a container network).
	AllowNonLoopback bool
	Simulator        simulator.Options
	ClientID         string // registered at start, with ClientSecret, when set
	ClientSecret     string
	Limits           httpserve.Limits // zero: the defaults
	// State is the file the simulator keeps its instances in between
	// runs (dev's); "" keeps them in memory only.
	State string
}

// RunSimulator serves the Admin API simulator until ctx ends.
func RunSimulator(ctx context.Context, o SimulatorOptions, stdout io.Writer) error {
	url, stop, err := startSimulator(ctx, o)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "Admin API simulator on %s\n", url)
	<-ctx.Done()
	return nil
}

// startSimulator builds the simulator o describes and serves it at
// o.Listen until stop is called or ctx ends; it returns the URL served.
func startSimulator(ctx context.Context, o SimulatorOptions) (url string, stop func(), err error) {
	if err := CheckSimulatorListen(o.Listen, o.AllowNonLoopback); err != nil {
		return "", nil, err
	}
	if err := o.Simulator.Validate(); err != nil {
		return "", nil, err
	}
	sim := simulator.New(o.Simulator)
	defer func() {
		if err != nil {
			sim.Close()
		}
	}()
	if o.State != "" {
		if err := sim.Persist(o.State); err != nil {
			return "", nil, err
		}
	}
	if o.ClientID != "" {
		if err := sim.RegisterClient(o.ClientID, o.ClientSecret); err != nil {
			return "", nil, err
		}
	}
	bound, stopServing, err := serve(ctx, o.Listen, sim, httpserve.Options{Limits: o.Limits})
	if err != nil {
		return "", nil, fmt.Errorf("listen for the simulator: %w", err)
	}
	return "http://" + bound, func() { stopServing(); sim.Close() }, nil
}

// CheckSimulatorListen refuses an address other machines can reach unless
// allowed: the simulator registers any client that asks, with full access,
// and serves its fault plan without a token, so it is safe only where
// nothing but this machine reaches it.
func CheckSimulatorListen(addr string, allowNonLoopback bool) error {
	if allowNonLoopback {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("simulator listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("simulator listen address %q is not loopback (127.0.0.0/8, ::1, localhost): the simulator hands a full-access token to anyone who asks; pass -allow-non-loopback-for-tests for a test network", addr)
}

// ServeHTTP serves reg at addr/metrics and the probes at /healthz and
// /readyz until the returned stop is called, and returns their base URL;
// an empty addr serves nothing. Zero limits are the defaults.
func ServeHTTP(ctx context.Context, addr string, profiles bool, reg *prometheus.Registry, checks *health.Checks, log *slog.Logger, limits httpserve.Limits) (url string, stop func(), err error) {
	if addr == "" {
		return "", func() {}, nil
	}
	h, paths := metricsAndProbes(reg, checks), "/metrics /healthz /readyz"
	if profiles {
		h, paths = withProfiles(h), paths+" /debug/pprof/"
	}
	bound, stop, err := serve(ctx, addr, h, httpserve.Options{Limits: limits})
	if err != nil {
		return "", nil, fmt.Errorf("serve metrics and probes: %w", err)
	}
	url = "http://" + bound
	log.Info("metrics and probes served", "url", url, "paths", paths)
	return url, stop, nil
}

// withProfiles adds net/http/pprof's handlers under /debug/pprof/ to h.
func withProfiles(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}

// metricsAndProbes serves reg at /metrics and the probes at /healthz and
// /readyz.
func metricsAndProbes(reg *prometheus.Registry, checks *health.Checks) http.Handler {
	probes := checks.Handler()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", probes)
	mux.Handle("/readyz", probes)
	return mux
}

// serve listens on addr and serves h until stop is called or ctx ends, and
// returns the address it listens on.
func serve(ctx context.Context, addr string, h http.Handler, o httpserve.Options) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = httpserve.Serve(ctx, ln, h, o) }()
	return ln.Addr().String(), func() { cancel(); <-done }, nil
}

// Ledgers reads each tenant's ledger for the bridge, which needs nothing
// else: EdFi_Admin connections only, none to a server's maintenance
// database.
type Ledgers struct {
	cfg     *config.Config
	log     *slog.Logger
	mu      sync.Mutex
	byEntry map[string]registry
}

// NewLedgers returns a reader over cfg.Tenants.
func NewLedgers(cfg *config.Config, log *slog.Logger) *Ledgers {
	return &Ledgers{cfg: cfg, log: log, byEntry: map[string]registry{}}
}

// Lookup implements bridge.Ledger.
func (l *Ledgers) Lookup(ctx context.Context, tenant string, instanceID int) (provisioning.Record, error) {
	reg, err := l.registry(ctx, tenant)
	if err != nil {
		return provisioning.Record{}, err
	}
	return reg.Lookup(ctx, tenant, instanceID)
}

// registry is the tenant's entry's registry, opened on first use.
func (l *Ledgers) registry(ctx context.Context, tenant string) (registry, error) {
	servers, err := l.cfg.Servers(tenant)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	reg, ok := l.byEntry[servers.Entry]
	if !ok {
		if reg, err = openRegistry(ctx, l.cfg, servers, l.log); err != nil {
			return nil, fmt.Errorf("tenant %q: %w", tenant, err)
		}
		l.byEntry[servers.Entry] = reg
	}
	return reg, nil
}

// Close closes every connection opened.
func (l *Ledgers) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for entry, r := range l.byEntry {
		delete(l.byEntry, entry)
		r.Close()
	}
}
