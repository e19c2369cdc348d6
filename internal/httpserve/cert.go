package httpserve

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertCheckInterval is how often a handshake looks at the certificate and
// key files for a change: cheap (two stats), and often enough that a renewed
// certificate is served within seconds.
const CertCheckInterval = 5 * time.Second

// Certificate serves a certificate and key pair from files and reloads them
// when either changes (a renewal by cert-manager, certbot or a mounted
// secret), without a restart. A pair that does not load keeps the last
// good one in service, and is logged once.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	every             time.Duration // CertCheckInterval; 0 checks on every handshake
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	serving [2]os.FileInfo // the files cert was loaded from
	broken  [2]os.FileInfo // the files that last failed to load
	warned  bool           // since the last pair loaded
	checked time.Time
}

// LoadCertificate loads the pair from certFile and keyFile, checking them
// again at most every CertCheckInterval.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	return loadCertificate(certFile, keyFile, log, CertCheckInterval)
}

func loadCertificate(certFile, keyFile string, log *slog.Logger, every time.Duration) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log, every: every, now: time.Now}
	files, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the certificate %s and key %s: %w", certFile, keyFile, err)
	}
	c.cert, c.serving, c.checked = &cert, files, c.now()
	return c, nil
}

// TLSConfig is a server configuration that serves c, TLS 1.2 or later.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

// GetCertificate is tls.Config.GetCertificate: the current pair, reloaded
// first if its files changed since it was loaded.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= c.every {
		c.checked = now
		c.reload()
	}
	return c.cert, nil
}

// reload loads the pair again when its files are not the ones served. A
// pair that cannot be read or loaded is warned about once, until a pair
// loads again.
func (c *Certificate) reload() {
	files, err := c.stat()
	if err == nil && (sameFiles(files, c.serving) || sameFiles(files, c.broken)) {
		return
	}
	if err == nil {
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(c.certFile, c.keyFile); err == nil {
			c.cert, c.serving, c.broken, c.warned = &cert, files, [2]os.FileInfo{}, false
			var notAfter time.Time
			if cert.Leaf != nil { // nil under GODEBUG=x509keypairleaf=0
				notAfter = cert.Leaf.NotAfter
			}
			c.log.Info("TLS certificate reloaded", "cert_file", c.certFile, "key_file", c.keyFile, "not_after", notAfter)
			return
		}
		c.broken = files
	}
	if !c.warned {
		c.warned = true
		c.log.Warn("TLS certificate files changed but do not load; serving the last good pair", "cert_file", c.certFile, "key_file", c.keyFile, "error", err)
	}
}

func (c *Certificate) stat() ([2]os.FileInfo, error) {
	var files [2]os.FileInfo
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return files, err
		}
		files[i] = fi
	}
	return files, nil
}

// sameFiles reports whether a and b are the same files, unchanged: the same
// inode (a file renamed into place, as a mounted secret is), size and
// modification time.
func sameFiles(a, b [2]os.FileInfo) bool {
	for i := range a {
		if a[i] == nil || b[i] == nil {
			return false
		}
		if !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}
