package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// reconcile through the binary's entry: exit 3 and the difference while a
// database of the pattern is not the system's, 0 and "no differences" once
// it is gone; -h documents the exit statuses.
func TestReconcileCommand(t *testing.T) {
	world := itest.NewWorld(t, "")
	_, adminDB := world.AdminDatabase(t, "admin")
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"default"}})
	natsURL := testenv.NATS(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := fmt.Sprintf(`
adminApi: {baseUrl: %q, tokenUrl: %q, clientId: %q}
nats: {url: %q}
provisioning: {template: %q, namePattern: "%s_{name}"}
tenants:
  default: {master: %q, admin: %q, ods: %q}
`, sim.URL, sim.TokenURL, sim.ClientID, natsURL, world.Template, world.Prefix,
		world.Master.ADONet(), world.Master.WithDatabase(adminDB).ADONet(), world.Master.WithDatabase("{0}").ADONet())
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INSTANCEMGR_ADMINAPI_CLIENT_SECRET", sim.ClientSecret)
	if err := run([]string{"setup", "-config", cfg}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	foreign := world.Prefix + "_Not_Ours"
	testenv.CreateDatabase(t, world.PG, foreign)

	var out, errOut bytes.Buffer
	err := run([]string{"reconcile", "-config", cfg, "-json"}, &out, &errOut)
	var coded interface{ ExitCode() int }
	if !errors.As(err, &coded) || coded.ExitCode() != 3 {
		t.Fatalf("reconcile with a difference: %v (want exit status 3)\n%s", err, errOut.String())
	}
	var d map[string]any
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("not one JSON object: %q: %v", out.String(), err)
	}
	if d["kind"] != "foreign_database" || d["database"] != foreign || d["tenant"] != "default" || d["command"] == "" {
		t.Fatalf("difference %v", d)
	}
	if strings.Contains(out.String()+errOut.String(), sim.ClientSecret) {
		t.Fatal("reconcile printed the client secret")
	}

	// The real process exits 3, with the text report.
	code, text := runMain(t, "reconcile -config "+cfg)
	if code != 3 || !strings.Contains(text, "foreign_database") || !strings.Contains(text, "1 differences, 0 fixed") {
		t.Fatalf("instancemgr reconcile: exit %d\n%s", code, text)
	}

	if _, err := world.PG.Exec(t.Context(), "DROP DATABASE "+pgx.Identifier{foreign}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run([]string{"reconcile", "-config", cfg, "-tenant", "default"}, &out, &errOut); err != nil {
		t.Fatalf("reconcile with nothing to report: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "no differences (tenants: default)") {
		t.Fatalf("reconcile said %q", out.String())
	}
	if code, text := runMain(t, "reconcile -config "+cfg); code != 0 {
		t.Fatalf("instancemgr reconcile with nothing to report: exit %d\n%s", code, text)
	}

	code, text = runMain(t, "reconcile -h")
	if code != 0 || !strings.Contains(text, "Exit status: 0") || !strings.Contains(text, "3 differences remain") || !strings.Contains(text, "-pending-after") {
		t.Fatalf("reconcile -h: exit %d\n%s", code, text)
	}
	if code, _ := runMain(t, "reconcile -config /no/such/file"); code != 1 {
		t.Fatalf("reconcile with a missing configuration: exit %d, want 1", code)
	}
}
