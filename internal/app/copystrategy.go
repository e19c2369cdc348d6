package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// CopyStrategyMetrics exports each copy strategy measurement
// (copyStrategy auto): the two figures, and which one copies use.
func CopyStrategyMetrics(reg prometheus.Registerer) func(server string, c postgres.Calibration) {
	seconds := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "instancemgr_copy_strategy_seconds",
		Help: "How long one copy of the template took with each CREATE DATABASE strategy, as last measured on the server (copyStrategy auto).",
	}, []string{"server", "template", "strategy"})
	chosen := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "instancemgr_copy_strategy_chosen",
		Help: "1 for the strategy copyStrategy auto uses for the template on the server, 0 for the other.",
	}, []string{"server", "template", "strategy"})
	reg.MustRegister(seconds, chosen)
	return func(server string, c postgres.Calibration) {
		for s, took := range map[postgres.CopyStrategy]float64{postgres.CopyFileCopy: c.FileCopy.Seconds(), postgres.CopyWALLog: c.WALLog.Seconds()} {
			seconds.WithLabelValues(server, c.Template, string(s)).Set(took)
			v := 0.0
			if s == c.Strategy {
				v = 1
			}
			chosen.WithLabelValues(server, c.Template, string(s)).Set(v)
		}
	}
}
