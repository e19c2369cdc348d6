// Package embednats runs a NATS server with JetStream inside the process,
// for the dev mode and for tests that need one server.
package embednats

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for an embedded server.
type Options struct {
	// Port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// StoreDir holds JetStream's files; required.
	StoreDir string
	// TLS, when set, makes the server require TLS of every client.
	TLS *tls.Config
	// Token, when set, is the token every client must present.
	Token string
	// Users, when set, are the only users that may connect, each with its
	// permissions.
	Users []*server.User
}

// Start runs a server and waits until it accepts clients.
func Start(o Options) (*server.Server, error) {
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		ServerName:    "instancemgr-embedded",
		Host:          "127.0.0.1",
		Port:          port,
		JetStream:     true,
		StoreDir:      o.StoreDir,
		NoSigs:        true,
		NoLog:         true,
		TLS:           o.TLS != nil,
		TLSConfig:     o.TLS,
		Authorization: o.Token,
		Users:         o.Users,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not become ready")
	}
	return s, nil
}
