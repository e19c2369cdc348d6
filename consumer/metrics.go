package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumer's Prometheus metrics.
type Metrics struct {
	Jobs        *prometheus.CounterVec
	DeadLetters *prometheus.CounterVec
	InFlight    prometheus.Gauge
	Parked      prometheus.Gauge
	Duration    *prometheus.HistogramVec
	Phases      *prometheus.HistogramVec
	LockLosses  *prometheus.CounterVec
}

// jobBuckets reach from 50 ms to about 27 min: a large template copy takes
// minutes.
var jobBuckets = prometheus.ExponentialBuckets(0.05, 2, 16)

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
		Parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "instancemgr_consumer_jobs_parked",
			Help: "Jobs this replica holds, locked but not running, until their server is under its share (consumer.copiesPerServer).",
		}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "instancemgr_consumer_job_seconds",
			Help:    "Time from pull to settle, by operation.",
			Buckets: jobBuckets,
		}, []string{"op"}),
		Phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "instancemgr_consumer_phase_seconds",
			Help:    "Time one delivery spent in each phase: adminapi (Admin API calls), database (the tenant's server: reserve, create, rename, drop), registration (EdFi_Admin: ledger and dbo rows, without the Admin API calls inside).",
			Buckets: jobBuckets,
		}, []string{"op", "phase"}),
		LockLosses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "instancemgr_consumer_lock_losses_total",
			Help: "Running jobs whose lock was not renewed: heartbeat_failed (the renewal could not be sent) or expired (renewed too late; another replica may get the job).",
		}, []string{"reason"}),
	}
	// Every series exists from the start, so that rate() and increase()
	// see the first event, and a dashboard shows 0 rather than nothing.
	for _, op := range operations {
		for _, r := range []Result{Acked, Retried, Terminated, Released} {
			m.Jobs.WithLabelValues(op, string(r))
		}
		for _, code := range ReasonCodes() {
			m.DeadLetters.WithLabelValues(op, code)
		}
		m.Duration.WithLabelValues(op)
		for _, p := range Phases {
			m.Phases.WithLabelValues(op, string(p))
		}
	}
	for _, r := range []string{LockHeartbeatFailed, LockExpired} {
		m.LockLosses.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Jobs, m.DeadLetters, m.InFlight, m.Parked, m.Duration, m.Phases, m.LockLosses)
	}
	return m
}

// The reasons of instancemgr_consumer_lock_losses_total.
const (
	LockHeartbeatFailed = "heartbeat_failed"
	LockExpired         = "expired"
)

var operations = []string{"create", "rename", "delete"}
