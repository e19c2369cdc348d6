package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/audit"
	"github.com/edfi-tools/instancemgr/jobs"
)

const trashUsage = `usage: instancemgr trash list    -config F
       instancemgr trash restore -config F [-as NAME] TENANT ID
       instancemgr trash purge   -config F TENANT ID

A delete keeps the instance's database for provisioning.deleteRetention,
renamed and closed to every login, before a consumer drops it.
list prints what every configured server holds. restore puts a Deleted
instance back, under its own name or as instance NAME: its database
renamed back and registered again as the Admin API line registers an
existing database, so the Admin Console and Admin App show it as before
(never over a name in use). purge drops one instance's database now.
Both go by identity: never a database that is not the one instancemgr
moved there.

Flags:
`

func runTrash(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "restore" && args[0] != "purge") {
		fmt.Fprint(stderr, trashUsage)
		return fmt.Errorf("trash: want list, restore or purge")
	}
	verb := args[0]
	fs := newFlagSet("trash "+verb, stderr)
	load := configFlags(fs)
	var as string
	if verb == "restore" {
		fs.StringVar(&as, "as", "", "restore under this instance name (and the database it gives), not its own")
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), trashUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if verb == "list" {
		if fs.NArg() > 0 {
			return fmt.Errorf("trash list: unexpected arguments %q", fs.Args())
		}
		held, err := app.TrashList(ctx, cfg, log)
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SERVER\tTENANT\tINSTANCE\tORIGINAL NAME\tSIZE\tDELETED AT\tPURGE AT\tTRASH NAME")
		for _, t := range held {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", t.Server, t.Owner.Tenant, t.Owner.InstanceID, t.Original, size(t.Bytes),
				t.DeletedAt.UTC().Format(time.RFC3339), t.PurgeAt.UTC().Format(time.RFC3339), t.Name)
		}
		return cmp.Or(err, w.Flush()) // the listing's error before the printing's
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("trash %s: want TENANT ID", verb)
	}
	tenant := fs.Arg(0)
	id, err := strconv.Atoi(fs.Arg(1))
	if err != nil || id <= 0 {
		return fmt.Errorf("trash %s: instance id %q is not a positive number", verb, fs.Arg(1))
	}
	if verb == "restore" {
		r, err := app.TrashRestore(ctx, cfg, tenant, id, as, log)
		auditTrash(ctx, stderr, verb, tenant, id, r.Name, err)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "restored instance %d of tenant %q as %q on database %s (from %s)\n", id, tenant, r.Name, r.Database, r.Trashed.Name)
		return nil
	}
	purged, err := app.TrashPurge(ctx, cfg, tenant, id, log)
	auditTrash(ctx, stderr, verb, tenant, id, "", err)
	for _, p := range purged {
		fmt.Fprintf(stdout, "purged %s (was %s)\n", p.Name, p.Original)
	}
	return err
}

// auditTrash writes the audit line of an operator's restore or purge: who
// ran it (the OS user), where, and whether it was done.
func auditTrash(ctx context.Context, w io.Writer, verb, tenant string, id int, name string, err error) {
	who := "unknown"
	if u, uerr := user.Current(); uerr == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	a := audit.Write{RequestID: verb + "." + jobs.SubjectToken(tenant) + "." + strconv.Itoa(id), ClientID: "os:" + who, Source: host,
		Method: "CLI", Route: "trash " + verb, Tenant: tenant, InstanceID: id, Name: name, Status: 200}
	if err != nil {
		a.Status, a.Refusal = 409, err.Error()
	}
	audit.New(w).Write(ctx, a)
}

// size is bytes for a person: 1.5 GiB.
func size(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
