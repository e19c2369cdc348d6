package bridge

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bridge's Prometheus metrics.
type Metrics struct {
	Jobs *prometheus.CounterVec
}

// NewMetrics registers the bridge's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "instancemgr_bridge_jobs_total",
		Help: "Pending requests seen by the bridge, by operation and what became of them (published, already_queued, failed, skipped_disabled).",
	}, []string{"op", "result"})}
	if reg != nil {
		reg.MustRegister(m.Jobs)
	}
	return m
}
