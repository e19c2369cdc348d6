package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/health"
	"github.com/edfi-tools/instancemgr/internal/httpserve"
	"github.com/edfi-tools/instancemgr/internal/httpserve/httpservetest"
)

// Every listener the product starts withstands the same attacks: slow
// headers, a body never sent, a huge header, too many connections.
func TestEveryListenerWithstandsTheAttacks(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	tcp := func(addr string) httpservetest.Dial {
		return func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	manageConfig := func(t *testing.T, addr string) *config.Config {
		return &config.Config{
			AdminAPI: config.AdminAPI{Flavor: config.FlavorManage, ManageListen: addr, BaseURL: "http://127.0.0.1:1"},
			Tenants:  map[string]config.TenantEntry{config.DefaultTenant: {}},
		}
	}
	serveManage := func(t *testing.T, cfg *config.Config, l httpserve.Limits) {
		t.Helper()
		ledgers := app.NewLedgers(cfg, discard)
		t.Cleanup(ledgers.Close)
		stop, err := app.ServeManage(context.Background(), cfg, ledgers, nil, discard, nil, l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	for _, tt := range []struct {
		name  string
		start httpservetest.Start
	}{
		{"metrics and probes", func(t *testing.T, l httpserve.Limits) httpservetest.Dial {
			addr := freeAddr(t)
			_, stop, err := app.ServeHTTP(context.Background(), addr, true, prometheus.NewRegistry(), health.New(0), discard, l)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			return tcp(addr)
		}},
		{"manage write routes", func(t *testing.T, l httpserve.Limits) httpservetest.Dial {
			addr := freeAddr(t)
			serveManage(t, manageConfig(t, addr), l)
			return tcp(addr)
		}},
		{"manage write routes over TLS", func(t *testing.T, l httpserve.Limits) httpservetest.Dial {
			addr := freeAddr(t)
			cfg := manageConfig(t, addr)
			leaf, certFile, keyFile := httpservetest.WriteCert(t, t.TempDir())
			cfg.AdminAPI.ManageTLS = config.ManageTLS{CertFile: certFile, KeyFile: keyFile}
			serveManage(t, cfg, l)
			pool := x509.NewCertPool()
			pool.AddCert(leaf)
			return func() (net.Conn, error) {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					return nil, err
				}
				return tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}), nil
			}
		}},
		{"simulator", func(t *testing.T, l httpserve.Limits) httpservetest.Dial {
			addr := freeAddr(t)
			startSimulator(t, app.SimulatorOptions{Listen: addr, Limits: l})
			return tcp(addr)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) { httpservetest.Run(t, tt.start) })
	}
}

// The simulator hands a full-access client to anyone who asks, so it
// listens only where nothing but this machine reaches it, unless told the
// network is a test's.
func TestSimulatorListensOnLoopbackOnly(t *testing.T) {
	// Port 0: each simulator that may serve gets a port of its own at
	// bind. A port found free beforehand can be taken meanwhile, as the
	// source port of any outgoing connection on this machine (the
	// ephemeral range), and was, once, in CI.
	const port = 0
	for _, tt := range []struct {
		listen string
		allow  bool
		serves bool
	}{
		{fmt.Sprintf("127.0.0.1:%d", port), false, true},
		{fmt.Sprintf("localhost:%d", port), false, true},
		{fmt.Sprintf("0.0.0.0:%d", port), false, false},
		{fmt.Sprintf(":%d", port), false, false},
		{fmt.Sprintf("[::]:%d", port), false, false},
		{fmt.Sprintf("0.0.0.0:%d", port), true, true},
	} {
		t.Run(fmt.Sprintf("%s allowed %v", tt.listen, tt.allow), func(t *testing.T) {
			err := startSimulator(t, app.SimulatorOptions{Listen: tt.listen, AllowNonLoopback: tt.allow})
			switch {
			case tt.serves && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.serves && err == nil:
				t.Fatal("served on an address other machines reach")
			case !tt.serves && !strings.Contains(err.Error(), "-allow-non-loopback-for-tests"):
				t.Fatalf("the refusal does not say how to allow it: %v", err)
			}
		})
	}
}

func TestCheckSimulatorListen(t *testing.T) {
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8089", true},
		{"127.4.5.6:8089", true},
		{"[::1]:8089", true},
		{"localhost:8089", true},
		{"LocalHost:0", true},
		{"0.0.0.0:8089", false},
		{":8089", false},
		{"[::]:8089", false},
		{"10.0.0.5:8089", false},
		{"simulator:8089", false},
		{"127.0.0.1", false}, // no port
	} {
		if err := app.CheckSimulatorListen(tt.addr, false); (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok %v", tt.addr, err, tt.ok)
		}
		if err := app.CheckSimulatorListen(tt.addr, true); err != nil {
			t.Errorf("%s allowed: %v", tt.addr, err)
		}
	}
}

// startSimulator runs the simulator role until the test ends, and returns
// once it serves, or with the error it stopped with.
func startSimulator(t *testing.T, o app.SimulatorOptions) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	banner := &signalWriter{written: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- app.RunSimulator(ctx, o, banner) }()
	select {
	case err := <-done:
		cancel()
		if err == nil {
			t.Fatal("the simulator stopped without an error before serving")
		}
		return err
	case <-banner.written:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("simulator: %v", err)
			}
		})
		return nil
	}
}

// signalWriter closes written on the first write: the simulator's banner,
// printed once it listens.
type signalWriter struct {
	once    sync.Once
	written chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.written) })
	return len(p), nil
}

var _ io.Writer = (*signalWriter)(nil)
