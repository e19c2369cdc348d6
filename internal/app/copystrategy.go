package app

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/health"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// CopyStrategyReport exports each copy strategy decision the consumer's
// engines measure or read (copyStrategy auto): the two figures and the
// choice as metrics, and a line per server and template in /readyz.
func CopyStrategyReport(reg prometheus.Registerer, checks *health.Checks) func(server string, c postgres.Calibration) {
	seconds := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "instancemgr_copy_strategy_seconds",
		Help: "How long a round of copies of the template took with each CREATE DATABASE strategy (twice provisioning.copiesAtOnce copies, at least 4 and at most 1 GiB of them beyond copiesAtOnce, made copiesAtOnce at a time; the mean of two rounds), as last measured on the server (copyStrategy auto).",
	}, []string{"server", "template", "strategy"})
	chosen := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "instancemgr_copy_strategy_chosen",
		Help: "1 for the strategy copyStrategy auto uses for the template on the server, 0 for the other.",
	}, []string{"server", "template", "strategy"})
	reg.MustRegister(seconds, chosen)
	var mu sync.Mutex
	lines := map[string]string{}
	checks.Detail("copy strategy", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Sorted(maps.Values(lines))
	})
	return func(server string, c postgres.Calibration) {
		for s, took := range map[postgres.CopyStrategy]float64{postgres.CopyFileCopy: c.FileCopy.Seconds(), postgres.CopyWALLog: c.WALLog.Seconds()} {
			seconds.WithLabelValues(server, c.Template, string(s)).Set(took)
			v := 0.0
			if s == c.Strategy {
				v = 1
			}
			chosen.WithLabelValues(server, c.Template, string(s)).Set(v)
		}
		mu.Lock()
		lines[server+"\x00"+c.Template] = DescribeCalibration(server, c)
		mu.Unlock()
	}
}

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

// DescribeCalibration is one decision in a line.
func DescribeCalibration(server string, c postgres.Calibration) string {
	return fmt.Sprintf("%s %s: %s (file_copy %.3f s, wal_log %.3f s for %d copies, %d at once; %.1f MB, PostgreSQL %s, measured %s)", server, c.Template, c.Strategy,
		c.FileCopy.Seconds(), c.WALLog.Seconds(), provisioning.CalibrationRoundCopies(c.Copies, c.TemplateBytes), c.Copies, float64(c.TemplateBytes)/1e6, c.ServerVersion, c.MeasuredAt.UTC().Format("2006-01-02 15:04Z"))
}

// serverLabel names a PostgreSQL tenant's server in metrics, probes and
// the calibrate table: host and port, nothing of the connection string.
func serverLabel(tg config.TenantConns) string {
	return fmt.Sprintf("%s:%d", tg.Master.Host, tg.Master.Port)
}
