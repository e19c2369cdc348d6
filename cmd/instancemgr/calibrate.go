package main

import (
	"context"
	"fmt"
	"io"

	"github.com/edfi-tools/instancemgr/internal/app"
)

const calibrateUsage = `usage: instancemgr calibrate -config F [-template T]

Measures, on each tenant's PostgreSQL server, consumer.concurrency copies
at once of each tenant's template (or of T) with CREATE DATABASE ...
STRATEGY FILE_COPY and as many with WAL_LOG, each into the system's own
scratch name and dropped at once;
prints both figures and what copyStrategy auto will use, and stores the
decision, which auto uses from then on. Tenants sharing a server are
measured once. Run it on a quiet server: the figures are the server's
under its present load.

Flags:
`

func runCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("calibrate", stderr)
	load := configFlags(fs)
	template := fs.String("template", "", "measure this template instead of the configured ones")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), calibrateUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("calibrate: unexpected arguments %q", fs.Args())
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	cs, err := app.Calibrate(ctx, cfg, *template, newLogger(stderr, cfg.LogLevel, cfg.LogFormat))
	app.PrintCalibrations(stdout, cfg, cs)
	return err
}
