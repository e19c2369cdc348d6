package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// dev -template-shape ods creates its template with the ODS's shape, and an
// instance asked for is a copy of it.
func TestDevTemplateShapeODS(t *testing.T) {
	t.Parallel()
	_, prefix, args := devWorld(t, "warn")
	simURL, _, _ := startDev(t, append(args, "-template-shape", "ods"))
	api := console(t, simURL)
	ctx := context.Background()
	inst, err := api.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Shaped", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Minute, "the instance Completed", func() bool {
		w, err := api.Instance(ctx, "", inst.ID)
		return err == nil && w.Status == adminapi.StatusCompleted
	})
	for _, db := range []string{prefix + "_template", prefix + "_Shaped"} {
		var tables int
		if err := testenv.Connect(t, db).QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != postgres.ODSTables {
			t.Errorf("%s holds %d tables, want the ODS's %d", db, tables, postgres.ODSTables)
		}
	}
}

func TestDevRefusesAnUnknownTemplateShape(t *testing.T) {
	err := runDev(context.Background(), []string{"-template-shape", "large", "-data-dir", t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "template-shape") {
		t.Fatalf("dev with -template-shape large: %v, want a template-shape error", err)
	}
}
