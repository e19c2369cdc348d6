package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/reconcile"
)

// Exit statuses of instancemgr reconcile.
const (
	exitDifferences = 3 // differences found (cron and CI alert on it)
)

const reconcileUsage = `usage: instancemgr reconcile -config F [-tenant NAME] [-pending-after D] [-fix] [-json]

Compares, per tenant, the Admin API's statuses, the ledger, the dbo rows of
EdFi_Admin and the databases matching the naming pattern with their
reservations, and reports each difference with the command that resolves it.
It writes nothing unless -fix is given, and -fix only releases reservations
that are merely reserved, for requests no longer pending, whose database
does not exist: it never drops, renames or adopts a database.

Kinds: orphan_database, foreign_database, missing_database,
unreserved_database, missing_registration, untracked_instance,
orphan_registration, dead_request, stuck_request, stale_reservation,
unchecked (JetStream or a tenant mapping could not be read).

Exit status: 0 everything agrees (or every difference was fixed),
3 differences remain, 1 error (configuration, Admin API, a database).

Flags:
`

// differencesFound is reconcile's result when differences remain: exit
// status 3, so that cron and CI can tell it from an error.
type differencesFound int

func (d differencesFound) Error() string { return fmt.Sprintf("reconcile: %d differences", int(d)) }
func (d differencesFound) ExitCode() int { return exitDifferences }

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reconcile", stderr)
	load := configFlags(fs)
	var o app.ReconcileOptions
	fs.StringVar(&o.Tenant, "tenant", "", "check only this tenant (default: every tenant the Admin API lists and every configured tenant entry)")
	fs.DurationVar(&o.PendingAfter, "pending-after", time.Hour, "report a request still pending this long after its job was published")
	fs.BoolVar(&o.Fix, "fix", false, "release reservations that cannot hold data (merely reserved, no database, request not pending); nothing else")
	asJSON := fs.Bool("json", false, "one JSON object per difference instead of text")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), reconcileUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("reconcile: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat).With("role", "reconcile")
	rep, err := app.Reconcile(ctx, cfg, o, log)
	if err != nil {
		return err
	}
	if *asJSON {
		err = reconcile.WriteJSON(stdout, rep.Differences)
	} else {
		err = reconcile.WriteText(stdout, rep.Differences, rep.Tenants)
	}
	if err != nil {
		return err
	}
	if n := reconcile.Open(rep.Differences); n > 0 {
		return differencesFound(n)
	}
	return nil
}
