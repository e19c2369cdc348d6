package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// selfSigned makes a CA and a server certificate for 127.0.0.1 signed by
// it, and writes the CA to caFile.
func selfSigned(t *testing.T) (server tls.Certificate, caFile string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "instancemgr test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}, caFile
}

func natsConfig(url string, n config.NATS) *config.Config {
	n.URL = url
	return &config.Config{NATS: n}
}

// The worker reaches a NATS server that requires TLS when given the CA
// that signed its certificate, and does not without it.
func TestNATSOverTLS(t *testing.T) {
	cert, caFile := selfSigned(t)
	s, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	log := slog.New(slog.DiscardHandler)

	nc, js, err := app.ConnectNATS(context.Background(), natsConfig(s.ClientURL(), config.NATS{TLS: config.NATSTLS{CAFile: caFile}}), "tls-test", log)
	if err != nil {
		t.Fatalf("connect with the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the connection is not over TLS")
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("JetStream over TLS: %v", err)
	}

	if nc, _, err := app.ConnectNATS(context.Background(), natsConfig(s.ClientURL(), config.NATS{}), "no-tls", log); err == nil {
		nc.Close()
		t.Fatal("connected to a TLS-only server without TLS")
	}
}

func TestNATSToken(t *testing.T) {
	s, err := embednats.Start(embednats.Options{StoreDir: t.TempDir(), Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	log := slog.New(slog.DiscardHandler)
	nc, _, err := app.ConnectNATS(context.Background(), natsConfig(s.ClientURL(), config.NATS{Token: "s3cret"}), "token", log)
	if err != nil {
		t.Fatalf("connect with the token: %v", err)
	}
	nc.Close()
	if nc, _, err := app.ConnectNATS(context.Background(), natsConfig(s.ClientURL(), config.NATS{Token: "wrong"}), "token", log); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong token")
	}
}

// A role started before NATS answers waits for it instead of exiting
// (pods and cluster nodes start together).
func TestNATSFirstConnectWaitsForTheServer(t *testing.T) {
	port := testenv.FreePort(t)
	type result struct {
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, _, err := app.ConnectNATS(context.Background(), natsConfig(fmt.Sprintf("nats://127.0.0.1:%d", port), config.NATS{}), "early", slog.New(slog.DiscardHandler))
		if err == nil {
			nc.Close()
		}
		done <- result{err}
	}()
	select {
	case r := <-done:
		t.Fatalf("returned before any server was up: %v", r.err)
	default:
	}
	s, err := embednats.Start(embednats.Options{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("connect once the server is up: %v", r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("never connected to the server once it was up")
	}
}
