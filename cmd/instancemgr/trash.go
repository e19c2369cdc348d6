package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/edfi-tools/instancemgr/internal/app"
)

const trashUsage = `usage: instancemgr trash list  -config F
       instancemgr trash purge -config F TENANT ID

A delete keeps the instance's database for provisioning.deleteRetention,
renamed and closed to every login, before a consumer drops it.
list prints what every configured server holds; purge drops one
instance's database now, by identity (never a database that is not the
one instancemgr moved there).

Flags:
`

func runTrash(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "purge") {
		fmt.Fprint(stderr, trashUsage)
		return fmt.Errorf("trash: want list or purge")
	}
	verb := args[0]
	fs := newFlagSet("trash "+verb, stderr)
	load := configFlags(fs)
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
		return fmt.Errorf("trash purge: want TENANT ID")
	}
	id, err := strconv.Atoi(fs.Arg(1))
	if err != nil {
		return fmt.Errorf("trash purge: instance id %q is not a number", fs.Arg(1))
	}
	purged, err := app.TrashPurge(ctx, cfg, fs.Arg(0), id, log)
	for _, p := range purged {
		fmt.Fprintf(stdout, "purged %s (was %s)\n", p.Name, p.Original)
	}
	return err
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
