package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// Calibration is one tenant's template planned, and measured unless it was
// a dry run, on its server.
type Calibration struct {
	Tenant, Server string
	Plan           postgres.CalibrationPlan
	postgres.Calibration
	Measured bool
}

// templates are the templates copies of cfg are made from: the manage
// flavor's per request, else provisioning.template.
func templates(cfg *config.Config) []string {
	if cfg.Manage() {
		return slices.Compact(slices.Sorted(maps.Values(cfg.Provisioning.Templates)))
	}
	return []string{cfg.Provisioning.Template}
}

// Calibrate measures both copy strategies of each tenant's templates (or
// only template) on the tenant's PostgreSQL server, once per server and
// template, each within budget bytes (data and WAL; the default when 0).
// Before each measurement it writes to w what it will write; with dryRun
// it measures nothing. It stores nothing: the operator sets
// provisioning.copyStrategy from the figures. SQL Server tenants have no
// strategy to choose and are left out. A plan over the budget stops it
// before anything is written.
func Calibrate(ctx context.Context, cfg *config.Config, template string, budget int64, dryRun bool, w io.Writer, log *slog.Logger) ([]Calibration, error) {
	tmpls := templates(cfg)
	if template != "" {
		tmpls = []string{template}
	}
	type key struct{ server, template string }
	done := map[key]Calibration{}
	var out []Calibration
	for _, tenant := range slices.Sorted(maps.Keys(cfg.Tenants)) {
		servers, err := cfg.Servers(tenant)
		if err != nil {
			return out, err
		}
		if servers.Engine != config.EnginePostgres {
			log.Info("no copy strategy to measure on SQL Server", "tenant", tenant)
			continue
		}
		server := servers.Server()
		var engine *postgres.Engine
		for _, tmpl := range tmpls {
			c, ok := done[key{server, tmpl}]
			if !ok {
				if engine == nil {
					if engine, err = postgres.NewEngine(ctx, servers.Master.PgxConnString(), log); err != nil {
						return out, fmt.Errorf("tenant %q (%s): %w", tenant, servers.Master.Redacted(), err)
					}
					defer engine.Close()
					engine.CalibrationConcurrency = cfg.Provisioning.CopiesAtOnce
				}
				if c.Plan, err = engine.PlanCalibration(ctx, tmpl, budget); err != nil {
					return out, fmt.Errorf("tenant %q, template %q on %s: %w", tenant, tmpl, server, err)
				}
				printPlan(w, server, c.Plan)
				if !dryRun {
					if c.Calibration, err = engine.Calibrate(ctx, c.Plan); err != nil {
						return out, fmt.Errorf("tenant %q, template %q on %s: %w", tenant, tmpl, server, err)
					}
					c.Measured = true
				}
				done[key{server, tmpl}] = c
			}
			c.Tenant, c.Server = tenant, server
			out = append(out, c)
		}
	}
	return out, nil
}

// printPlan says what a measurement will write, before it writes.
func printPlan(w io.Writer, server string, p postgres.CalibrationPlan) {
	fmt.Fprintf(w, "%s %s (%.1f MB): %d rounds of %d copies, %d at once: %.1f MB of copies and %.1f MB of WAL, at most %.1f MB on the disk at once\n",
		server, p.Template, float64(p.TemplateBytes)/1e6, p.Rounds, p.RoundCopies, p.AtOnce, float64(p.DataBytes)/1e6, float64(p.WALBytes)/1e6, float64(p.PeakBytes)/1e6)
}

// PrintCalibrations writes the figures as a table, what they recommend,
// and what copies use now.
func PrintCalibrations(w io.Writer, cfg *config.Config, cs []Calibration) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "tenant\tserver\ttemplate\tsize\tat once\tcopies a round\tfile_copy a round\twal_log a round\trecommends")
	for _, c := range cs {
		if !c.Measured {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%d\t%d\t%.3f s\t%.3f s\t%s\n", c.Tenant, c.Server, c.Template, float64(c.TemplateBytes)/1e6, c.Copies,
			c.RoundCopies, c.FileCopy.Seconds(), c.WALLog.Seconds(), c.Strategy)
	}
	tw.Flush()
	now := cfg.Provisioning.CopyStrategy
	if now == "" {
		now = "the server's default (WAL_LOG on PostgreSQL 15 and later)"
	}
	fmt.Fprintf(w, "copies use provisioning.copyStrategy: %s; FILE_COPY is recommended only when it measures %.0f%% faster (its checkpoints cost every tenant on the server)\n", now, 100*postgres.FileCopyMargin)
}
