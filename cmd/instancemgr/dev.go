package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edfi-tools/instancemgr/internal/app"
)

// runDev parses dev's flags and runs the whole system in one process.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := app.DefaultDevOptions()
	if v := os.Getenv("INSTANCEMGR_DEV_POSTGRES"); v != "" {
		o.Postgres = v
	}
	fs := newFlagSet("dev", stderr)
	fs.StringVar(&o.Postgres, "postgres", o.Postgres, "PostgreSQL maintenance database (URL or Npgsql form; or INSTANCEMGR_DEV_POSTGRES)")
	fs.StringVar(&o.Listen, "listen", o.Listen, "address of the Admin API simulator: loopback only, unless -allow-non-loopback-for-tests")
	fs.BoolVar(&o.AllowNonLoopback, "allow-non-loopback-for-tests", false, "let -listen be an address other machines reach: anyone who reaches the simulator can register a client with full access")
	fs.IntVar(&o.NATSPort, "nats-port", o.NATSPort, "port of the embedded NATS server (0: a free one)")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "where the simulator's instances and JetStream's jobs are kept between runs")
	fs.BoolVar(&o.Reset, "reset", false, "start clean: drop the instance databases the data directory's EdFi_Admin records, that EdFi_Admin and the data directory (nothing dev did not make), then run")
	fs.StringVar(&o.Template, "template", o.Template, "template database (created if absent, as -template-shape says)")
	fs.StringVar(&o.TemplateShape, "template-shape", o.TemplateShape, "what the templates dev creates hold: minimal (one small table) or ods (the schemas, tables, keys, indexes and foreign keys of Ed-Fi's DS 6.1 ODS, generated, about 58 MB); an existing template is used as it is")
	fs.StringVar(&o.AdminDatabase, "admin-database", o.AdminDatabase, "EdFi_Admin database (created with its tables if absent)")
	fs.StringVar(&o.NamePattern, "name-pattern", o.NamePattern, "database naming pattern")
	fs.DurationVar(&o.PollInterval, "poll-interval", o.PollInterval, "how often the bridge polls the simulator")
	fs.IntVar(&o.Replicas, "replicas", o.Replicas, "consumer replicas")
	fs.StringVar(&o.Registration, "registration", o.Registration, "who writes the dbo rows: worker, or adminapi (the simulator, as Admin API 2.2.2 does)")
	fs.StringVar(&o.Flavor, "adminapi-flavor", o.Flavor, "the Admin API line the simulator plays: adminconsole (2.2.2's /adminconsole/) or manage (the newest line's /v2/odsInstances/manage and /v3/dataStores/manage)")
	fs.Func("manage-templates", "with -adminapi-flavor manage, the template database of each databaseTemplate (default Minimal=Ods_Minimal_Template,Sample=Ods_Populated_Template; created as -template-shape says if absent)", func(v string) error {
		o.Templates = map[string]string{}
		for _, pair := range strings.Split(v, ",") {
			key, db, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || key == "" || db == "" {
				return fmt.Errorf("%q is not Key=Database", pair)
			}
			o.Templates[key] = db
		}
		return nil
	})
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error")
	fs.StringVar(&o.HTTP, "http", o.HTTP, "address of the /healthz and /readyz probes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return app.RunDev(ctx, o, stdout, newLogger(stderr, o.LogLevel, "text"))
}
