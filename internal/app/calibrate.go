package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// Calibration is one tenant's template measured on its server.
type Calibration struct {
	Tenant, Server string
	postgres.Calibration
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
// template, and stores each decision, which copyStrategy auto then uses.
// SQL Server tenants have no strategy to choose and are left out.
func Calibrate(ctx context.Context, cfg *config.Config, template string, log *slog.Logger) ([]Calibration, error) {
	tmpls := templates(cfg)
	if template != "" {
		tmpls = []string{template}
	}
	type key struct{ server, template string }
	done := map[key]postgres.Calibration{}
	var out []Calibration
	for _, tenant := range slices.Sorted(maps.Keys(cfg.Tenants)) {
		tg, err := cfg.TenantConns(tenant)
		if err != nil {
			return out, err
		}
		if tg.Engine != config.EnginePostgres {
			log.Info("no copy strategy to measure on SQL Server", "tenant", tenant)
			continue
		}
		server := serverLabel(tg)
		var engine *postgres.Engine
		for _, tmpl := range tmpls {
			c, ok := done[key{server, tmpl}]
			if !ok {
				if engine == nil {
					if engine, err = postgres.NewEngine(ctx, tg.Master.PgxConnString(), log); err != nil {
						return out, fmt.Errorf("tenant %q (%s): %w", tenant, tg.Master.Redacted(), err)
					}
					defer engine.Close()
					engine.CalibrationConcurrency = cfg.Provisioning.CopiesAtOnce
				}
				if c, err = engine.Calibrate(ctx, tmpl); err != nil {
					return out, fmt.Errorf("tenant %q, template %q on %s: %w", tenant, tmpl, server, err)
				}
				done[key{server, tmpl}] = c
			}
			out = append(out, Calibration{Tenant: tenant, Server: server, Calibration: c})
		}
	}
	return out, nil
}

// PrintCalibrations writes the figures as a table, and what copies use.
func PrintCalibrations(w io.Writer, cfg *config.Config, cs []Calibration) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "tenant\tserver\ttemplate\tsize\tat once\tcopies a round\tfile_copy a round\twal_log a round\tauto uses")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%d\t%d\t%.3f s\t%.3f s\t%s\n", c.Tenant, c.Server, c.Template, float64(c.TemplateBytes)/1e6, c.Copies,
			provisioning.CalibrationRoundCopies(c.Copies, c.TemplateBytes), c.FileCopy.Seconds(), c.WALLog.Seconds(), c.Strategy)
	}
	tw.Flush()
	if s := cfg.Provisioning.CopyStrategy; s != string(postgres.CopyAuto) {
		fmt.Fprintf(w, "provisioning.copyStrategy is %s: copies use it, not the figures (stored for when it is auto)\n", s)
	}
}

// StoredCalibrations describes, a line per tenant and template, the copy
// strategy decision stored on the tenant's PostgreSQL server, reading
// without writing: for config check.
func StoredCalibrations(ctx context.Context, cfg *config.Config) []string {
	var out []string
	for _, tenant := range slices.Sorted(maps.Keys(cfg.Tenants)) {
		tg, err := cfg.TenantConns(tenant)
		if err != nil || tg.Engine != config.EnginePostgres {
			continue
		}
		server := serverLabel(tg)
		lines := func() []string {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			e, err := postgres.OpenEngine(ctx, tg.Master.PgxConnString(), nil)
			if err != nil {
				return []string{fmt.Sprintf("tenant %s: %s: not read (%v)", tenant, server, err)}
			}
			defer e.Close()
			e.CalibrationMaxAge, e.CalibrationConcurrency = cfg.Provisioning.CopyStrategyMaxAge.D(), cfg.Provisioning.CopiesAtOnce
			var lines []string
			for _, tmpl := range templates(cfg) {
				c, stored, fresh, err := e.StoredCalibration(ctx, tmpl)
				switch {
				case err != nil:
					lines = append(lines, fmt.Sprintf("tenant %s: %s %s: not read (%v)", tenant, server, tmpl, err))
				case !stored:
					lines = append(lines, fmt.Sprintf("tenant %s: %s %s: not measured yet (the first copy measures it, or instancemgr calibrate)", tenant, server, tmpl))
				case !fresh:
					lines = append(lines, fmt.Sprintf("tenant %s: %s, to be measured again on the next copy (the template, the server or the age changed)", tenant, DescribeCalibration(server, c)))
				default:
					lines = append(lines, fmt.Sprintf("tenant %s: %s", tenant, DescribeCalibration(server, c)))
				}
			}
			return lines
		}()
		out = append(out, lines...)
	}
	return out
}
