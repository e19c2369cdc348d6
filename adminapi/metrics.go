package adminapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics measure a client's exchanges with the Admin API; pass Observe as
// Config.Observe.
type Metrics struct {
	Seconds *prometheus.HistogramVec
}

// NewMetrics registers the Admin API client's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "instancemgr_adminapi_request_seconds",
		Help:    "Exchanges with the Admin API by endpoint (ids as {id}) and answer class (2xx, 4xx, 5xx, network).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"endpoint", "class"})}
	if reg != nil {
		reg.MustRegister(m.Seconds)
	}
	return m
}

// Observe records one exchange.
func (m *Metrics) Observe(endpoint, class string, d time.Duration) {
	m.Seconds.WithLabelValues(endpoint, class).Observe(d.Seconds())
}
