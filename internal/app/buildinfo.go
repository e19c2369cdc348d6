package app

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Version is the binary's version, set by cmd/instancemgr at start.
var Version = "dev"

// Revision is the VCS revision the binary was built from, "" when the
// build did not record one.
func Revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// newRegistry is a role's metrics registry: its own metrics join the Go
// runtime's, the process's and instancemgr_build_info.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	revision := Revision()
	if revision == "" {
		revision = "unknown"
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "instancemgr_build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": Version, "revision": revision, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}
