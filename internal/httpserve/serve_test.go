package httpserve_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/internal/httpserve"
	"github.com/edfi-tools/instancemgr/internal/httpserve/httpservetest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

var ok = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })

// serve serves h with o on a loopback port until the test ends.
func serve(t *testing.T, h http.Handler, o httpserve.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, ln, h, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestServeWithstandsTheAttacks(t *testing.T) {
	httpservetest.Run(t, func(t *testing.T, l httpserve.Limits) httpservetest.Dial {
		addr := serve(t, ok, httpserve.Options{Limits: l})
		return func() (net.Conn, error) { return net.Dial("tcp", addr) }
	})
}

func TestServeTLSWithstandsTheAttacks(t *testing.T) {
	leaf, certFile, keyFile := httpservetest.WriteCert(t, t.TempDir())
	cert, err := httpserve.LoadCertificate(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	httpservetest.Run(t, func(t *testing.T, l httpserve.Limits) httpservetest.Dial {
		addr := serve(t, ok, httpserve.Options{Limits: l, TLS: cert.TLSConfig()})
		return func() (net.Conn, error) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return tls.Client(conn, trusting(leaf)), nil
		}
	})
}

func TestWithDefaults(t *testing.T) {
	got := httpserve.Limits{ReadTimeout: time.Second}.WithDefaults()
	want := httpserve.Limits{
		ReadHeaderTimeout: httpserve.DefaultReadHeaderTimeout, ReadTimeout: time.Second, WriteTimeout: httpserve.DefaultWriteTimeout,
		IdleTimeout: httpserve.DefaultIdleTimeout, MaxHeaderBytes: httpserve.DefaultMaxHeaderBytes, MaxConns: httpserve.DefaultMaxConns,
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// A renewed certificate is served from the next handshake that looks at the
// files; a broken pair keeps the last good one in service, logged once.
func TestCertificateReloadsWhenTheFilesChange(t *testing.T) {
	dir := t.TempDir()
	first, certFile, keyFile := httpservetest.WriteCert(t, dir)
	var logged testenv.SyncBuffer
	cert, err := httpserve.LoadCertificateEvery(certFile, keyFile, slog.New(slog.NewJSONHandler(&logged, nil)), 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, ok, httpserve.Options{TLS: cert.TLSConfig()})
	served := func() *x509.Certificate {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if got := served(); !got.Equal(first) {
		t.Fatalf("served serial %s, want the first certificate's %s", got.SerialNumber, first.SerialNumber)
	}

	httpservetest.WriteFile(t, certFile, []byte("not a certificate"))
	for range 3 {
		if got := served(); !got.Equal(first) {
			t.Fatalf("with a broken certificate file, served serial %s, want the last good %s", got.SerialNumber, first.SerialNumber)
		}
	}
	if n := strings.Count(logged.String(), "do not load"); n != 1 {
		t.Fatalf("the broken pair was logged %d times, want once:\n%s", n, logged.String())
	}

	second, _, _ := httpservetest.WriteCert(t, dir)
	testenv.Eventually(t, 5*time.Second, "the renewed certificate served", func() bool { return served().Equal(second) })
	if !strings.Contains(logged.String(), "TLS certificate reloaded") {
		t.Fatalf("the reload was not logged:\n%s", logged.String())
	}
}

func TestLoadCertificateRefusesABrokenPair(t *testing.T) {
	_, certFile, _ := httpservetest.WriteCert(t, t.TempDir())
	_, _, otherKey := httpservetest.WriteCert(t, t.TempDir())
	if _, err := httpserve.LoadCertificate(certFile, otherKey, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("a certificate with another's key: %v, want an error naming the file", err)
	}
}

// trusting is a client configuration that trusts only leaf.
func trusting(leaf *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
