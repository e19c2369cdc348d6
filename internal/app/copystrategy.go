package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// CopyReport exports how long each job's copy of a template took, by
// server and strategy: beside the consumer's database phase, what of it
// is the copy and what the protocol's statements around it.
func CopyReport(reg prometheus.Registerer) func(server string, s postgres.CopyStrategy, took time.Duration) {
	copies := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "instancemgr_copy_seconds",
		Help:    "How long each job's CREATE DATABASE ... TEMPLATE took on a PostgreSQL server, by the strategy it used (default: the server's), without the publish protocol's statements around it.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	}, []string{"server", "strategy"})
	reg.MustRegister(copies)
	return func(server string, s postgres.CopyStrategy, took time.Duration) {
		label := string(s)
		if label == "" {
			label = "default"
		}
		copies.WithLabelValues(server, label).Observe(took.Seconds())
	}
}
