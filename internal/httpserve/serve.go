package httpserve

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// The defaults of Limits. Every listener serves small requests and small
// answers to a few clients (Prometheus, the kubelet, a reverse proxy, the
// roles of one deployment), so each bound is far above what they need and
// far below what lets one client hold the listener.
const (
	// DefaultReadHeaderTimeout is how long a client has to send the
	// request line and headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout is how long a client has to send a whole
	// request, body included: the bodies here are a few hundred bytes.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds a request from the end of its headers
	// to the end of the answer. It is above what the slowest handler
	// takes: a manage write waits for the Admin API (adminApi.timeout,
	// 10s by default) and EdFi_Admin; a pprof CPU profile takes 30s by
	// default.
	DefaultWriteTimeout = 60 * time.Second
	// DefaultIdleTimeout closes a kept-alive connection that sends no
	// request, longer than a scrape interval so Prometheus keeps its
	// connection.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes is far above a bearer token (a JWT of a few
	// kilobytes) and the proxy headers, far below Go's 1 MB.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxConns is how many connections a listener serves at once;
	// more wait in the kernel's accept queue until one closes.
	DefaultMaxConns = 256
	// ShutdownTimeout is how long a stopping server lets the requests in
	// flight finish.
	ShutdownTimeout = 5 * time.Second
)

// Limits bound what clients can hold of a server. The zero value of a
// field means its default; tests set short ones.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	MaxConns          int
}

// WithDefaults fills each zero field with its default.
func (l Limits) WithDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	return l
}

// Options are a server's limits and, for HTTPS, its TLS configuration.
type Options struct {
	Limits Limits
	// TLS, when set, serves HTTPS: it must give a certificate
	// (Certificates or GetCertificate).
	TLS *tls.Config
}

// Serve serves h on ln within o's limits until ctx ends, then shuts down,
// letting requests in flight finish for up to ShutdownTimeout. It is the
// one place a listener of instancemgr is served.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, o Options) error {
	l := o.Limits.WithDefaults()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		TLSConfig:         o.TLS,
	}
	ln = netutil.LimitListener(ln, l.MaxConns)
	errc := make(chan error, 1)
	go func() {
		if o.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(shutCtx)
}
