package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumer's Prometheus metrics.
type Metrics struct {
	Jobs        *prometheus.CounterVec
	DeadLetters *prometheus.CounterVec
	InFlight    prometheus.Gauge
	Duration    *prometheus.HistogramVec
}

// NewMetrics registers the consumer's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "instancemgr_consumer_deliveries_total",
			Help: "Job deliveries by operation and how they ended (acked, retried, terminated, released).",
		}, []string{"op", "result"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "instancemgr_consumer_dead_letters_total",
			Help: "Jobs that ended without success, by operation and reason code (invalid_name, malformed, conflict, ...).",
		}, []string{"op", "code"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "instancemgr_consumer_jobs_in_flight",
			Help: "Jobs this replica is running now.",
		}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "instancemgr_consumer_job_seconds",
			Help: "Time from pull to settle, by operation.",
			// 50 ms to about 27 min: a large template copy takes minutes.
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
		}, []string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(m.Jobs, m.DeadLetters, m.InFlight, m.Duration)
	}
	return m
}
