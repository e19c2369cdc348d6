package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// trash list shows a deleted instance's database with its size and
// dates; trash purge drops it now, and only that instance's.
func TestTrashCommand(t *testing.T) {
	world := itest.NewWorld(t, "")
	_, adminDB := world.AdminDatabase(t, "admin")
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"default"}})
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := fmt.Sprintf(`
adminApi: {baseUrl: %q, tokenUrl: %q, clientId: %q}
nats: {url: %q}
provisioning: {template: %q, namePattern: "%s_{name}"}
tenants:
  default: {master: %q, admin: %q, ods: %q}
`, sim.URL, sim.TokenURL, sim.ClientID, testenv.NATS(t), world.Template, world.Prefix,
		world.Master.ADONet(), world.Master.WithDatabase(adminDB).ADONet(), world.Master.WithDatabase("{0}").ADONet())
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INSTANCEMGR_ADMINAPI_CLIENT_SECRET", sim.ClientSecret)

	// A delete with a retention, as the consumer makes it.
	ctx := context.Background()
	e, err := postgres.NewEngine(ctx, world.Master.PgxConnString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: world.Prefix + "_{name}"}}
	owner := provisioning.Owner{Tenant: "default", InstanceID: 5}
	name := world.Prefix + "_Trashed"
	if _, _, err := e.Reserve(ctx, name, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateDatabase(ctx, name, world.Template, owner); err != nil {
		t.Fatal(err)
	}
	id, _, _ := e.Identity(ctx, name)
	trash := provisioning.TrashName(provisioning.Reservation{Database: name, Owner: owner, Identity: id})
	t.Cleanup(func() {
		_, _ = world.PG.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{trash}.Sanitize()+` WITH (FORCE)`)
		_, _ = world.PG.Exec(context.Background(), `DELETE FROM instancemgr.reservations WHERE database_name = $1`, trash)
	})
	if _, err := e.TrashDatabase(ctx, name, owner, 48*time.Hour, 0); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if err := run([]string{"trash", "list", "-config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("trash list: %v\n%s", err, errOut.String())
	}
	row := ""
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, trash) {
			row = l
		}
	}
	f := strings.Fields(row)
	if len(f) != 9 || f[1] != "default" || f[2] != "5" || f[3] != name || !strings.HasSuffix(f[5], "iB") {
		t.Fatalf("trash list row %q in\n%s", row, out.String())
	}

	// The simulator has no instance 5: nothing is restored, and the
	// refusal is audited with who ran it.
	errOut.Reset()
	if err := run([]string{"trash", "restore", "-config", cfg, "default", "5"}, &out, &errOut); err == nil {
		t.Fatal("restoring an instance the Admin API does not have succeeded")
	}
	if _, there, _ := e.Identity(ctx, trash); !there || !strings.Contains(errOut.String(), `"route":"trash restore"`) || !strings.Contains(errOut.String(), `"client_id":"os:`) {
		t.Fatalf("after a refused restore: in trash %v; audit\n%s", there, errOut.String())
	}
	if err := run([]string{"trash", "restore", "-config", cfg, "default", "five"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "not a positive number") {
		t.Fatalf("trash restore of instance five: %v", err)
	}
	if err := run([]string{"trash", "purge", "-config", cfg, "default", "6"}, &out, &errOut); err == nil {
		t.Fatal("purging an instance trash does not hold succeeded")
	}
	out.Reset()
	if err := run([]string{"trash", "purge", "-config", cfg, "default", "5"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "purged "+trash) {
		t.Fatalf("trash purge: %v, %q\n%s", err, out.String(), errOut.String())
	}
	if _, there, _ := e.Identity(ctx, trash); there {
		t.Fatal("the purged database is still there")
	}
}
