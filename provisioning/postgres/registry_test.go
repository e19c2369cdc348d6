package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
	"github.com/jackc/pgx/v5/pgxpool"
)

// newRegistry returns a registry on a fresh EdFi_Admin loaded from the
// ODS/API's fixture.
func newRegistry(t *testing.T) (*postgres.Registry, func(sql string) int, *pgxpool.Pool) {
	t.Helper()
	db := testenv.FreshAdminDatabase(t)
	r, err := postgres.NewRegistry(context.Background(), testenv.ConnString(t, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	admin := testenv.Connect(t, db)
	count := func(sql string) int {
		var n int
		if err := admin.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	return r, count, admin
}

func TestRegistryLifecycle(t *testing.T) {
	t.Parallel()
	r, count, admin := newRegistry(t)
	ctx := context.Background()
	reg := provisioning.Registration{Tenant: "t", InstanceID: 7, Database: "EdFi_Ods_A", Name: "A", InstanceType: "enterprise",
		ConnectionString: "host=h;database=EdFi_Ods_A", Contexts: []provisioning.Context{{Key: "k", Value: "v"}}, Derivatives: []string{"ReadReplica"}}
	ok := func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }

	// A failing completion rolls everything back.
	boom := errors.New("admin api down")
	if _, err := r.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("register with a failing completion: %v", err)
	}
	if n := count(`SELECT (SELECT count(*) FROM dbo.odsinstances) + (SELECT count(*) FROM dbo.odsinstancecontexts) + (SELECT count(*) FROM instancemgr.instances)`); n != 0 {
		t.Fatalf("%d rows left by a rolled-back registration", n)
	}

	first, err := r.Register(ctx, reg, ok)
	if err != nil || first.Existed {
		t.Fatalf("first register: %+v, %v", first, err)
	}
	again, err := r.Register(ctx, reg, ok)
	if err != nil || !again.Existed || again.OdsInstanceID != first.OdsInstanceID {
		t.Fatalf("second register: %+v, %v", again, err)
	}
	if n := count(`SELECT count(*) FROM dbo.odsinstances`); n != 1 {
		t.Fatalf("%d instance rows after registering twice", n)
	}

	// Someone else's row of the same name and type is a conflict, not ours.
	other := reg
	other.InstanceID = 8
	if _, err := r.Register(ctx, other, ok); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("registering over a foreign row: %v", err)
	}

	// The same instance under another database or name is a conflict
	// that names both, never "already registered".
	moved := reg
	moved.Database, moved.Name = "EdFi_Ods_Other", "Other"
	if _, err := r.Register(ctx, moved, ok); !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), "EdFi_Ods_A") || !strings.Contains(err.Error(), "EdFi_Ods_Other") {
		t.Fatalf("registering instance 7 on another database: %v", err)
	}

	ren := provisioning.Renaming{Tenant: "t", InstanceID: 7, NewName: "B", NewDatabase: "EdFi_Ods_B", ConnectionString: "host=h;database=EdFi_Ods_B"}
	if err := r.Rename(ctx, ren, func(context.Context, provisioning.Tx, provisioning.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The same job again is stale: the ledger is past its generation, and
	// a stale rename to another name (a replica paused after its DDL) must
	// not take the ledger back.
	stale := ren
	stale.NewName, stale.NewDatabase = "Z", "EdFi_Ods_Z"
	for _, again := range []provisioning.Renaming{ren, stale} {
		if err := r.Rename(ctx, again, func(context.Context, provisioning.Tx, provisioning.Record) error { return boom }); !errors.Is(err, provisioning.ErrStale) {
			t.Fatalf("rename for generation 0 at generation 1: %v, want ErrStale", err)
		}
	}
	rec, err := r.Lookup(ctx, "t", 7)
	if err != nil || rec.Database != "EdFi_Ods_B" || rec.Name != "B" || rec.Generation != 1 {
		t.Fatalf("ledger after rename: %+v, %v", rec, err)
	}
	if n := count(`SELECT count(*) FROM dbo.odsinstancederivatives WHERE connectionstring = 'host=h;database=EdFi_Ods_B'`); n != 1 {
		t.Fatal("the derivative did not follow the rename")
	}

	if err := r.RenameFailed(ctx, "t", 7, 1, nil, func(context.Context, provisioning.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if rec, _ := r.Lookup(ctx, "t", 7); rec.Generation != 2 || rec.Database != "EdFi_Ods_B" {
		t.Fatalf("a failed rename must move the generation only: %+v", rec)
	}
	// A rename that failed after its DDL: the ledger and the connection
	// strings follow the database; the row keeps the name it had.
	after := &provisioning.Renaming{NewName: "C", NewDatabase: "EdFi_Ods_C", ConnectionString: "host=h;database=EdFi_Ods_C"}
	if err := r.RenameFailed(ctx, "t", 7, 2, after, func(context.Context, provisioning.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if rec, _ := r.Lookup(ctx, "t", 7); rec.Generation != 3 || rec.Database != "EdFi_Ods_C" || rec.Name != "C" {
		t.Fatalf("a rename failed after its DDL: ledger %+v, want generation 3 on EdFi_Ods_C", rec)
	}
	if n := count(`SELECT count(*) FROM dbo.odsinstances WHERE name = 'B' AND connectionstring = 'host=h;database=EdFi_Ods_C'`); n != 1 {
		t.Fatal("the instance row does not point at the database as it is")
	}
	if n := count(`SELECT count(*) FROM dbo.odsinstancederivatives WHERE connectionstring = 'host=h;database=EdFi_Ods_C'`); n != 1 {
		t.Fatal("the derivative does not point at the database as it is")
	}
	if err := r.DeleteFailed(ctx, "t", 7, 3, func(context.Context, provisioning.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	renameFailed := func(ctx context.Context, tenant string, id, gen int, complete func(context.Context, provisioning.Tx) error) error {
		return r.RenameFailed(ctx, tenant, id, gen, nil, complete)
	}
	for _, fail := range []func(context.Context, string, int, int, func(context.Context, provisioning.Tx) error) error{renameFailed, r.DeleteFailed} {
		if err := fail(ctx, "t", 7, 2, func(context.Context, provisioning.Tx) error { return boom }); !errors.Is(err, provisioning.ErrStale) {
			t.Fatalf("a failure reported for a past generation: %v, want ErrStale", err)
		}
	}
	rec, _ = r.Lookup(ctx, "t", 7)
	if rec.Generation != 4 || rec.Database != "EdFi_Ods_C" {
		t.Fatalf("a failed delete must move the generation only: %+v", rec)
	}
	if recs, err := r.Records(ctx); err != nil || len(recs) != 1 || recs[0] != rec {
		t.Fatalf("records: %+v, %v; want [%+v]", recs, err, rec)
	}

	if _, err := admin.Exec(ctx, `INSERT INTO dbo.apiclientodsinstances (apiclient_apiclientid, odsinstance_odsinstanceid) VALUES (1, $1)`, first.OdsInstanceID); err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister(ctx, "t", 7, func(context.Context, provisioning.Tx, provisioning.Record) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("unregister with a failing completion: %v", err)
	}
	if n := count(`SELECT count(*) FROM dbo.odsinstances`); n != 1 {
		t.Fatal("a rolled-back unregister removed the instance")
	}
	if err := r.Unregister(ctx, "t", 7, func(context.Context, provisioning.Tx, provisioning.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT (SELECT count(*) FROM dbo.odsinstances) + (SELECT count(*) FROM dbo.odsinstancecontexts) + (SELECT count(*) FROM dbo.odsinstancederivatives) + (SELECT count(*) FROM dbo.apiclientodsinstances) + (SELECT count(*) FROM instancemgr.instances)`); n != 0 {
		t.Fatalf("%d rows left after unregistering", n)
	}
	if _, err := r.Lookup(ctx, "t", 7); !errors.Is(err, provisioning.ErrNotRecorded) {
		t.Fatalf("lookup after unregister: %v", err)
	}
}

// A ledger entry whose dbo.odsinstances row someone else removed or renamed
// is no registration of ours to complete: a conflict.
func TestRegisterChecksTheRowItFinds(t *testing.T) {
	t.Parallel()
	r, _, admin := newRegistry(t)
	ctx := context.Background()
	reg := provisioning.Registration{Tenant: "t", InstanceID: 3, Database: "EdFi_Ods_C", Name: "C", ConnectionString: "host=h;database=EdFi_Ods_C"}
	ok := func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }
	res, err := r.Register(ctx, reg, ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `UPDATE dbo.odsinstances SET name = 'Someone else' WHERE odsinstanceid = $1`, res.OdsInstanceID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(ctx, reg, ok); !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), "Someone else") {
		t.Fatalf("register over a renamed row: %v", err)
	}
	if _, err := admin.Exec(ctx, `DELETE FROM dbo.odsinstances WHERE odsinstanceid = $1`, res.OdsInstanceID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(ctx, reg, ok); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("register over a removed row: %v", err)
	}
}
