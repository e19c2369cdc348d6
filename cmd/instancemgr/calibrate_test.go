package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// calibrate prints, for each tenant, both figures of its template and the
// strategy auto will use, measured once for two tenants on one server, and
// stores that decision where the engines read it.
func TestCalibrateCommand(t *testing.T) {
	world := itest.NewWorld(t, "")
	_, admin1 := world.AdminDatabase(t, "admin_t1")
	_, admin2 := world.AdminDatabase(t, "admin_t2")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := fmt.Sprintf(`
adminApi: {baseUrl: "http://127.0.0.1:9", clientId: worker}
provisioning: {template: %q, namePattern: "%s_{tenant}_{name}"}
tenants:
  t1: {master: %q, admin: %q, ods: %q}
  t2: {master: %q, admin: %q, ods: %q}
`, world.Template, world.Prefix,
		world.Master.ADONet(), world.Master.WithDatabase(admin1).ADONet(), world.Master.WithDatabase("{0}").ADONet(),
		world.Master.ADONet(), world.Master.WithDatabase(admin2).ADONet(), world.Master.WithDatabase("{0}").ADONet())
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INSTANCEMGR_ADMINAPI_CLIENT_SECRET", "unused")
	var out, errOut bytes.Buffer
	if err := run([]string{"config", "check", "-config", cfg}, &out, &errOut); err != nil || !strings.Contains(out.String(), "#   tenant t1: ") ||
		!strings.Contains(out.String(), world.Template+": not measured yet") {
		t.Fatalf("config check before any measurement: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run([]string{"calibrate", "-config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("calibrate: %v\n%s", err, errOut.String())
	}
	row := regexp.MustCompile(`(?m)^(t[12])\s+\S+:\d+\s+` + regexp.QuoteMeta(world.Template) + `\s+[\d.]+ MB\s+4\s+8\s+([\d.]+) s\s+([\d.]+) s\s+(file_copy|wal_log)$`)
	rows := row.FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 2 || rows[0][2] != rows[1][2] || rows[0][4] != rows[1][4] {
		t.Fatalf("want one row per tenant with the same figures (one server, measured once):\n%s", out.String())
	}
	if n := strings.Count(errOut.String(), "copy strategy measured"); n != 1 {
		t.Errorf("%d measurements logged for one server and template, want 1:\n%s", n, errOut.String())
	}

	e, err := postgres.NewEngine(context.Background(), testenv.ConnString(t, "postgres"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.CalibrationConcurrency = 4 // consumer.concurrency's default, as the command measured
	c, stored, fresh, err := e.StoredCalibration(context.Background(), world.Template)
	if err != nil || !stored || !fresh || string(c.Strategy) != rows[0][4] {
		t.Fatalf("stored decision %+v (stored %v, fresh %v, %v); the command printed %s", c, stored, fresh, err, rows[0][4])
	}
	if want := fmt.Sprintf("%.3f", c.FileCopy.Seconds()); rows[0][2] != want {
		t.Errorf("printed file_copy %s s, stored %s s", rows[0][2], want)
	}
	out.Reset()
	if err := run([]string{"config", "check", "-config", cfg}, &out, &errOut); err != nil ||
		!strings.Contains(out.String(), fmt.Sprintf("#   tenant t2: 127.0.0.1:%d %s: %s (file_copy %s s", world.Master.Port, world.Template, c.Strategy, rows[0][2])) {
		t.Fatalf("config check after calibrate: %v\n%s", err, out.String())
	}
}
