// Package app is the composition root: the only place that builds the
// system's components from the configuration (the Admin API client, NATS,
// the per-tenant database connections, the bridge, the consumer, the
// simulator, the dev mode) and runs each role, each in one place
// (startRole, role.bridge, role.consumerDeps and NewConsumer,
// startSimulator) that dev reuses on its embedded parts. cmd/instancemgr
// only parses flags and calls it; the integration tests build the system
// through it too, so they run what production runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/jobs"
)

// AdminClient builds the Admin API client from the configuration.
func AdminClient(cfg *config.Config, log *slog.Logger) (*adminapi.Client, error) {
	return adminClient(cfg, log, nil)
}

// adminClient is AdminClient whose exchanges are measured into reg (nil:
// not measured).
func adminClient(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*adminapi.Client, error) {
	var observe func(endpoint, class string, d time.Duration)
	if reg != nil {
		observe = adminapi.NewMetrics(reg).Observe
	}
	return adminapi.New(adminapi.Config{
		BaseURL:      cfg.AdminAPI.BaseURL,
		TokenURL:     cfg.AdminAPI.TokenURL,
		ClientID:     cfg.AdminAPI.ClientID,
		ClientSecret: cfg.AdminAPI.ClientSecret,
		Timeout:      cfg.AdminAPI.Timeout.D(),
		MaxAttempts:  cfg.AdminAPI.MaxAttempts,
		Logger:       log,
		Observe:      observe,
	})
}

// natsFirstConnectWait bounds how long a role waits for NATS to accept its
// first connection (pods starting together, a cluster still coming up).
const natsFirstConnectWait = 2 * time.Minute

// ConnectNATS connects with endless reconnects: a replica rides out a NATS
// restart instead of dying with jobs in flight. The first connection is
// tried again while no server answers, for up to two minutes; a refusal
// (credentials, TLS) fails at once.
func ConnectNATS(ctx context.Context, cfg *config.Config, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("reconnected to NATS") }),
		// Asynchronous errors, above all a permissions violation naming the
		// subject the role's NATS user may not use.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("NATS error", "subject", sub.Subject, "err", err)
				return
			}
			log.Error("NATS error", "err", err)
		}),
	}
	auth, err := natsSecurity(cfg.NATS)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, auth...)
	deadline := time.Now().Add(natsFirstConnectWait)
	var nc *nats.Conn
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		nc, err = nats.Connect(cfg.NATS.URL, opts...)
		if err == nil {
			break
		}
		if !errors.Is(err, nats.ErrNoServers) || time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("connect to NATS: %w", err)
		}
		log.Warn("NATS does not answer yet; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("connect to NATS: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open JetStream: %w", err)
	}
	return nc, js, nil
}

// DialNATS connects once, for a command an operator runs: no retries and
// no reconnects, so a wrong address fails in seconds with the reason.
func DialNATS(n config.NATS, name string) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := natsSecurity(n)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, nats.Name(name), nats.Timeout(5*time.Second), nats.NoReconnect())
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", config.RedactURL(n.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open JetStream: %w", err)
	}
	return nc, js, nil
}

// natsSecurity turns the configured authentication and TLS into
// connection options; the configuration allowed at most one way to
// authenticate.
func natsSecurity(n config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case n.CredsFile != "":
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	case n.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkeyFile: %w", err)
		}
		opts = append(opts, o)
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token))
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	if n.TLS.Enabled() {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// LogTransport says at start-up, one line per connection, how each is
// protected, and warns about plain transport off this machine.
func LogTransport(cfg *config.Config, log *slog.Logger) {
	notes, warnings := cfg.TransportNotes()
	for _, n := range notes {
		log.Info("transport: " + n)
	}
	for _, w := range warnings {
		log.Warn("transport: " + w)
	}
}

// ConsumerDeps are the parts a consumer replica is built from.
type ConsumerDeps struct {
	JS      jetstream.JetStream
	API     consumer.AdminAPI
	Tenants consumer.Placements
	Log     *slog.Logger
	Metrics *consumer.Metrics
	// Beat is the replica's liveness (ConsumerProbes); nil for none.
	Beat func()
	// Purger drops the replica's share of due trash (RunConsumer runs it
	// beside the consumer).
	Purger *consumer.Purger
	// TestSeams are for tests and the test switches only.
	TestSeams consumer.TestSeams
}

// NewConsumer ensures the stream and durable consumer exist and builds a
// replica.
func NewConsumer(ctx context.Context, cfg *config.Config, d ConsumerDeps) (*consumer.Consumer, error) {
	sc := cfg.StreamConfig().WithDefaults()
	cons, exhausted, err := setUpStreams(ctx, d.JS, sc, d.Log)
	if err != nil {
		return nil, err
	}
	ops := &consumer.Handlers{API: d.API, Placements: d.Tenants, Naming: cfg.Naming(), AllowDelete: cfg.Provisioning.AllowDelete, Log: d.Log,
		DeleteRetention:    cfg.DeleteRetention(),
		InstancesPerTenant: max(cfg.Limits.InstancesPerTenant, 0), Rate: limits.NewRate(cfg.Limits.CreatesPerMinute)}
	line := cfg.Line()
	handlers := map[jobs.Operation]consumer.Handler{
		jobs.OpCreate: consumer.OnLine(line, ops.Create()),
		jobs.OpRename: consumer.OnLine(line, ops.Rename()),
		jobs.OpDelete: consumer.OnLine(line, ops.Delete()),
	}
	js := d.JS
	c := consumer.New(cons, handlers, consumer.Options{
		DeadLetter:      func(ctx context.Context, dl jobs.DeadLetter) error { return jobs.PublishDead(ctx, js, dl) },
		Metrics:         d.Metrics,
		Concurrency:     cfg.Consumer.Concurrency,
		CopiesPerServer: cfg.CopiesPerServer(),
		ServerOf:        serverOf(cfg),
		Heartbeat:       cfg.Consumer.Heartbeat.D(),
		ShutdownGrace:   cfg.Consumer.ShutdownGrace.D(),
		MaxDeliver:      cfg.NATS.MaxDeliver,
		AckWait:         sc.AckWait,
		BackOff:         sc.BackOff,
		RetryDelay:      consumer.ExponentialDelay(cfg.Consumer.RetryDelay.D(), cfg.Consumer.MaxRetryDelay.D()),
		Logger:          d.Log,
		Audit:           audit.New(os.Stderr),
		TestSeams:       d.TestSeams,
		Beat:            d.Beat,
	})
	stop, err := c.WatchExhausted(ctx, js, exhausted, sc.Stream, sc.Consumer)
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); stop() }()
	return c, nil
}

// NewBridge ensures the stream exists and builds a bridge. ledger is where
// it finds the databases of renames and deletes (Ledgers in production).
func NewBridge(ctx context.Context, cfg *config.Config, api bridge.AdminAPI, ledger bridge.Ledger, js jetstream.JetStream, log *slog.Logger, metrics *bridge.Metrics, beat func()) (*bridge.Bridge, error) {
	if err := ensureJobStream(ctx, cfg, js, log); err != nil {
		return nil, err
	}
	return buildBridge(cfg, api, ledger, js, log, metrics, beat), nil
}

// ensureJobStream makes or updates the job stream, retrying while
// JetStream is not ready.
func ensureJobStream(ctx context.Context, cfg *config.Config, js jetstream.JetStream, log *slog.Logger) error {
	return jobs.Retry(ctx, log, "the job stream", func() error {
		_, err := jobs.EnsureStream(ctx, js, cfg.StreamConfig())
		return err
	})
}

// buildBridge builds a bridge from the configuration, without reaching
// anything.
func buildBridge(cfg *config.Config, api bridge.AdminAPI, ledger bridge.Ledger, js jetstream.JetStream, log *slog.Logger, metrics *bridge.Metrics, beat func()) *bridge.Bridge {
	return bridge.New(api, ledger, js, bridge.Options{
		Interval: cfg.Bridge.PollInterval.D(), Stream: cfg.NATS.Stream, Logger: log,
		AllowDelete: cfg.Provisioning.AllowDelete, Metrics: metrics, Beat: beat,
		Concurrency: cfg.Bridge.Concurrency, Line: cfg.Line(),
	})
}

// serverOf names the server each tenant's databases live on, resolved once
// per tenant entry rather than parsed from its connection strings on every
// delivery; a tenant no entry serves gets "" (its handler refuses it).
func serverOf(cfg *config.Config) func(tenant string) string {
	servers := map[string]string{}
	for entry := range cfg.Tenants {
		if s, err := cfg.Servers(entry); err == nil {
			servers[entry] = s.Server()
		}
	}
	return func(tenant string) string {
		if _, ok := cfg.Tenants[tenant]; !ok {
			tenant = config.DefaultTenant
		}
		return servers[tenant]
	}
}
