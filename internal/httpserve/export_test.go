package httpserve

import (
	"log/slog"
	"time"
)

// LoadCertificateEvery is LoadCertificate checking the files every interval
// (0: on every handshake), for tests.
func LoadCertificateEvery(certFile, keyFile string, log *slog.Logger, every time.Duration) (*Certificate, error) {
	return loadCertificate(certFile, keyFile, log, every)
}
