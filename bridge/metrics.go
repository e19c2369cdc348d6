package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/adminapi"
)

// Metrics are the bridge's Prometheus metrics.
type Metrics struct {
	Jobs *prometheus.CounterVec
	// PollFailures counts polls that read nothing, by reason (auth,
	// server, network, other); LastSuccess is when a poll last read the
	// Admin API, in Unix seconds. A rejected client secret shows as auth
	// failures and a LastSuccess that stops moving.
	PollFailures *prometheus.CounterVec
	LastSuccess  prometheus.Gauge
}

// NewMetrics registers the bridge's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "instancemgr_bridge_jobs_total",
		Help: "Pending requests seen by the bridge, by operation and what became of them (published, already_queued, failed, skipped_disabled).",
	}, []string{"op", "result"}),
		PollFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "instancemgr_bridge_poll_failures_total",
			Help: "Polls that could read nothing from the Admin API, by reason (auth, server, network, other).",
		}, []string{"reason"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "instancemgr_bridge_last_success_timestamp_seconds",
			Help: "When a poll last read the Admin API (Unix seconds; 0 until the first).",
		}),
	}
	// Every reason exists from the start: increase() sees the first
	// failure, and the dashboard shows 0 rather than nothing.
	for _, r := range adminapi.FailureReasons {
		m.PollFailures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Jobs, m.PollFailures, m.LastSuccess)
	}
	return m
}
