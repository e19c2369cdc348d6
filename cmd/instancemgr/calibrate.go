package main

import (
	"context"
	"fmt"
	"io"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

const calibrateUsage = `usage: instancemgr calibrate -config F [-template T] [-max-bytes N] [-dry-run]

Measures, on each tenant's PostgreSQL server, copies of each tenant's
template (or of T) with CREATE DATABASE ... STRATEGY FILE_COPY and with
WAL_LOG, provisioning.copiesAtOnce at a time, each into the system's own
scratch name and dropped as soon as its round ends, and prints both
figures and which strategy they recommend for provisioning.copyStrategy.
It stores nothing and no job ever measures: copies use the configured
strategy. Before it writes, it prints what it will write (copies, WAL, the
most on the disk at once) and refuses a plan over -max-bytes. Tenants
sharing a server are measured once. Run it on a quiet server: the figures
are the server's under its present load, and the copies load it.

Flags:
`

func runCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("calibrate", stderr)
	load := configFlags(fs)
	template := fs.String("template", "", "measure this template instead of the configured ones")
	maxBytes := fs.Int64("max-bytes", postgres.DefaultCalibrationBudget, "the most a measurement of one template may write, copies and WAL together; a smaller one makes fewer copies")
	dryRun := fs.Bool("dry-run", false, "print what each measurement would write, and measure nothing")
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
	if *maxBytes <= 0 {
		return fmt.Errorf("calibrate: -max-bytes %d is not a budget", *maxBytes)
	}
	cs, err := app.Calibrate(ctx, cfg, *template, *maxBytes, *dryRun, stdout, newLogger(stderr, cfg.LogLevel, cfg.LogFormat))
	if !*dryRun {
		app.PrintCalibrations(stdout, cfg, cs)
	}
	return err
}
