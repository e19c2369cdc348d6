package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/integration/itest"
)

// calibrate prints, before it writes, what each measurement will write;
// then, for each tenant, both figures of its template and what they
// recommend, measured once for two tenants on one server; it stores
// nothing. -dry-run prints the plan alone, and a plan over -max-bytes is
// refused with its figures before anything is written.
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
	plan := regexp.MustCompile(`(?m)^\S+:\d+ ` + regexp.QuoteMeta(world.Template) + ` \(([\d.]+) MB\): 4 rounds of 8 copies, 4 at once: ([\d.]+) MB of copies and ([\d.]+) MB of WAL, at most ([\d.]+) MB on the disk at once$`)

	var out, errOut bytes.Buffer
	if err := run([]string{"calibrate", "-config", cfg, "-dry-run"}, &out, &errOut); err != nil || len(plan.FindAllString(out.String(), -1)) != 1 ||
		strings.Contains(errOut.String(), "copy strategies measured") {
		t.Fatalf("a dry run: %v; want the plan once (one server) and nothing measured:\n%s\n%s", err, out.String(), errOut.String())
	}
	out.Reset()
	if err := run([]string{"calibrate", "-config", cfg, "-max-bytes", "1000"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "more than the budget") {
		t.Fatalf("a budget under two copies: %v\n%s", err, out.String())
	}
	out.Reset()
	errOut.Reset()
	if err := run([]string{"calibrate", "-config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("calibrate: %v\n%s", err, errOut.String())
	}
	if len(plan.FindAllString(out.String(), -1)) != 1 {
		t.Fatalf("the plan is not printed first:\n%s", out.String())
	}
	row := regexp.MustCompile(`(?m)^(t[12])\s+\S+:\d+\s+` + regexp.QuoteMeta(world.Template) + `\s+[\d.]+ MB\s+4\s+8\s+([\d.]+) s\s+([\d.]+) s\s+(file_copy|wal_log)$`)
	rows := row.FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 2 || rows[0][2] != rows[1][2] || rows[0][4] != rows[1][4] {
		t.Fatalf("want one row per tenant with the same figures (one server, measured once):\n%s", out.String())
	}
	if n := strings.Count(errOut.String(), "copy strategies measured"); n != 1 {
		t.Errorf("%d measurements logged for one server and template, want 1:\n%s", n, errOut.String())
	}
	if !strings.Contains(out.String(), "copies use provisioning.copyStrategy: the server's default") {
		t.Errorf("the command does not say what copies use:\n%s", out.String())
	}
}
