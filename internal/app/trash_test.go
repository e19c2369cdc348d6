package app_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
)

// A manage deployment's configuration names no Admin API client (its
// requests are EdFi_Admin's rows), and its operator's restore must not
// ask for one: it goes on to the tenant's EdFi_Admin, here one that
// refuses connections.
func TestTrashRestoreManageNeedsNoAdminClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "instancemgr.yaml")
	cfg := `adminApi: {flavor: manage, baseUrl: "http://127.0.0.1:1"}
nats: {url: "nats://127.0.0.1:1"}
provisioning: {template: tpl, naming: pattern, namePattern: "x_{tenant}_{name}", allowDelete: true, deleteRetention: 1h, encryptionKey: "c29hay1rZXktMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="}
tenants:
  t1: {master: "Host=127.0.0.1;Port=1;Username=postgres;Database=postgres", admin: "Host=127.0.0.1;Port=1;Username=postgres;Database=admin", ods: "Host=127.0.0.1;Port=1;Username=postgres;Database={0}"}
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.TrashRestore(context.Background(), c, "t1", 7, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || strings.Contains(err.Error(), "admin api client") {
		t.Fatalf("restore in a manage deployment: %v, want the failure to reach its EdFi_Admin, not an Admin API client's configuration", err)
	}
}
