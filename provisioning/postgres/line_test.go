package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// oldLedger is the ledger as versions before lines made it: keyed
// (tenant, instance_id), no line.
const oldLedger = `
CREATE SCHEMA IF NOT EXISTS instancemgr;
CREATE TABLE instancemgr.instances (
    tenant          text        NOT NULL,
    instance_id     integer     NOT NULL,
    ods_instance_id integer,
    database_name   text        NOT NULL,
    name            text        NOT NULL,
    generation      integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, instance_id)
);
CREATE SCHEMA IF NOT EXISTS adminapi;
CREATE TABLE adminapi.odsinstancemanages (id int PRIMARY KEY, name varchar(100) NOT NULL, status varchar(75) NOT NULL, databasename varchar(255));`

// A ledger from before lines gets its lines when a registry opens it: an
// entry whose id's manage request names its database is the manage
// line's, every other adminconsole's; lookups of each line then find
// their own entries only, both lines can hold the same id, and opening it
// again changes nothing.
func TestRegistryMigratesALedgerFromBeforeLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.FreshAdminDatabase(t)
	admin := testenv.Connect(t, db)
	if _, err := admin.Exec(ctx, oldLedger); err != nil {
		t.Fatal(err)
	}
	// 1: made under adminconsole. 2: made under manage (its request names
	// its database). 3: made under adminconsole, while manage request 3
	// names another database. 4: adminconsole, with a manage request of
	// the same id not yet claimed (no database).
	if _, err := admin.Exec(ctx, `
INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name, generation) VALUES
    ('t', 1, 11, 'EdFi_Ods_One', 'One', 2), ('t', 2, 12, 'EdFi_Ods_Two_Minimal', 'Two', 0),
    ('t', 3, 13, 'EdFi_Ods_Three', 'Three', 0), ('t', 4, 14, 'EdFi_Ods_Four', 'Four', 1);
INSERT INTO adminapi.odsinstancemanages (id, name, status, databasename) VALUES
    (2, 'Two', 'Created', 'EdFi_Ods_Two_Minimal'), (3, 'Other', 'Created', 'EdFi_Ods_Other_Minimal'), (4, 'New', 'PendingCreate', NULL)`); err != nil {
		t.Fatal(err)
	}

	open := func(line provisioning.Line) *postgres.Registry {
		t.Helper()
		r, err := postgres.NewRegistry(ctx, testenv.ConnString(t, db), nil)
		if err != nil {
			t.Fatalf("open the registry (migrating the ledger): %v", err)
		}
		t.Cleanup(r.Close)
		r.Line, r.AdminAPIRegisters = line, true
		return r
	}
	console, manage := open(provisioning.LineAdminConsole), open(provisioning.LineManage)

	tests := []struct {
		name     string
		r        *postgres.Registry
		id       int
		database string // "" for none
		gen      int
	}{
		{"adminconsole finds its instance", console, 1, "EdFi_Ods_One", 2},
		{"adminconsole does not find manage's", console, 2, "", 0},
		{"an id whose manage request names another database stays adminconsole's", console, 3, "EdFi_Ods_Three", 0},
		{"an unclaimed manage request takes nothing", console, 4, "EdFi_Ods_Four", 1},
		{"manage finds its instance", manage, 2, "EdFi_Ods_Two_Minimal", 0},
		{"manage does not find adminconsole's", manage, 1, "", 0},
		{"manage does not find adminconsole's 3", manage, 3, "", 0},
		{"manage does not find adminconsole's 4", manage, 4, "", 0},
	}
	for _, tt := range tests {
		rec, err := tt.r.Lookup(ctx, "t", tt.id)
		switch {
		case tt.database == "" && !errors.Is(err, provisioning.ErrNotRecorded):
			t.Errorf("%s: lookup of %d: %+v, %v; want not recorded", tt.name, tt.id, rec, err)
		case tt.database != "" && (err != nil || rec.Database != tt.database || rec.Generation != tt.gen || rec.Line != tt.r.Line):
			t.Errorf("%s: lookup of %d: %+v, %v; want %s at generation %d", tt.name, tt.id, rec, err, tt.database, tt.gen)
		}
	}

	recs, err := console.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lines := map[int]provisioning.Line{}
	for _, r := range recs {
		lines[r.InstanceID] = r.Line
	}
	want := map[int]provisioning.Line{1: provisioning.LineAdminConsole, 2: provisioning.LineManage, 3: provisioning.LineAdminConsole, 4: provisioning.LineAdminConsole}
	if len(lines) != len(want) {
		t.Fatalf("records: %+v", recs)
	}
	for id, l := range want {
		if lines[id] != l {
			t.Errorf("record %d is %s, want %s", id, lines[id], l)
		}
	}

	// Manage request 1 is another instance than adminconsole's 1: both
	// live in the ledger, and one's writes leave the other alone.
	reg := provisioning.Registration{Tenant: "t", InstanceID: 1, Database: "EdFi_Ods_Fresh_Minimal", Name: "Fresh"}
	if _, err := manage.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); err != nil {
		t.Fatalf("register manage request 1 beside adminconsole's instance 1: %v", err)
	}
	if err := manage.Unregister(ctx, "t", 1, func(context.Context, provisioning.Tx, provisioning.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if rec, err := console.Lookup(ctx, "t", 1); err != nil || rec.Database != "EdFi_Ods_One" {
		t.Fatalf("adminconsole's instance 1 after manage 1 came and went: %+v, %v", rec, err)
	}

	// Opening it again (every start does) changes nothing; the key is the
	// line's, and a row written without one (an older replica) is
	// adminconsole's.
	open(provisioning.LineAdminConsole)
	var key string
	if err := admin.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'instancemgr.instances'::regclass AND contype = 'p'`).Scan(&key); err != nil || key != "PRIMARY KEY (line, tenant, instance_id)" {
		t.Fatalf("the ledger's key: %q, %v", key, err)
	}
	if _, err := admin.Exec(ctx, `INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name) VALUES ('t', 9, 19, 'EdFi_Ods_Nine', 'Nine')`); err != nil {
		t.Fatal(err)
	}
	if rec, err := console.Lookup(ctx, "t", 9); err != nil || rec.Database != "EdFi_Ods_Nine" {
		t.Fatalf("an entry an older version wrote: %+v, %v", rec, err)
	}
}

// A reservation is its line's: a manage request never holds, makes or
// drops what the adminconsole request of the same id reserved, and the
// other way round. A reservation from before lines (no line) is
// adminconsole's until Import, from the ledger, says it is manage's.
func TestReservationsAreKeyedByLine(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: prefix + "_{name}"}, Protected: []string{prefix + "_tmpl"}}
	ctx := context.Background()
	console := provisioning.Owner{Tenant: "default", InstanceID: 5}
	manage := provisioning.Owner{Tenant: "default", InstanceID: 5, Line: provisioning.LineManage}

	name := prefix + "_Console"
	if _, _, err := e.Reserve(ctx, name, console); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Reserve(ctx, name, manage); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("manage request 5 reserving adminconsole 5's name: %v", err)
	}
	if created, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", manage); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("manage request 5 creating adminconsole 5's database: %v, %v", created, err)
	}
	if created, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", console); err != nil || !created {
		t.Fatalf("create for adminconsole 5: %v, %v", created, err)
	}
	if _, err := e.CreateDatabase(ctx, name, prefix+"_tmpl", manage); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("manage request 5 adopting adminconsole 5's database: %v", err)
	}
	if _, err := e.DropDatabase(ctx, name, manage); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("manage request 5 dropping adminconsole 5's database: %v", err)
	}
	if _, err := e.RenameDatabase(ctx, name, prefix+"_Moved", manage); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("manage request 5 renaming adminconsole 5's database: %v", err)
	}
	if err := e.Release(ctx, name, manage); err != nil {
		t.Fatal(err)
	}
	if res, ok, err := e.Reservation(ctx, name); err != nil || !ok || res.Owner != console || res.State != provisioning.StateMade {
		t.Fatalf("adminconsole 5's reservation after manage 5's attempts: %+v, %v, %v", res, ok, err)
	}

	// Rows from before lines: one the ledger says is manage's, one it
	// says nothing of.
	pg := testenv.Postgres(t)
	legacy, unknown := prefix+"_LegacyManage", prefix+"_LegacyUnknown"
	if _, err := pg.Exec(ctx, `INSERT INTO instancemgr.reservations (database_name, tenant, instance_id, state) VALUES ($1, 'default', 6, 'made'), ($2, 'default', 7, 'reserved')`, legacy, unknown); err != nil {
		t.Fatal(err)
	}
	if res, _, err := e.Reservation(ctx, unknown); err != nil || res.Owner.Line != provisioning.LineAdminConsole {
		t.Fatalf("a reservation from before lines reads %+v, %v; want adminconsole's", res, err)
	}
	m6 := provisioning.Owner{Tenant: "default", InstanceID: 6, Line: provisioning.LineManage}
	if err := e.Import(ctx, legacy, m6); err != nil {
		t.Fatalf("import manage 6's ledger entry over its reservation from before lines: %v", err)
	}
	if res, _, err := e.Reservation(ctx, legacy); err != nil || res.Owner != m6 {
		t.Fatalf("after import: %+v, %v; want manage 6's", res, err)
	}
	// Settled once: adminconsole 6 cannot take it back.
	if err := e.Import(ctx, legacy, provisioning.Owner{Tenant: "default", InstanceID: 6}); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("adminconsole 6 importing manage 6's database: %v", err)
	}
	// A settled reservation of the other line is never relabelled.
	if err := e.Import(ctx, name, manage); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("manage 5 importing adminconsole 5's database: %v", err)
	}
	listed, err := e.Reservations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range listed {
		if l.Database == legacy && l.Owner != m6 || l.Database == name && l.Owner != console {
			t.Errorf("listed %+v", l)
		}
	}
	if released, err := e.ReleaseUnused(ctx, unknown, provisioning.Owner{Tenant: "default", InstanceID: 7, Line: provisioning.LineManage}); err != nil || released {
		t.Fatalf("manage 7 releasing adminconsole 7's reservation: %v, %v", released, err)
	}
	if released, err := e.ReleaseUnused(ctx, unknown, provisioning.Owner{Tenant: "default", InstanceID: 7}); err != nil || !released {
		t.Fatalf("adminconsole 7 releasing its reservation from before lines: %v, %v", released, err)
	}
	if dropped, err := e.DropDatabase(ctx, name, console); err != nil || !dropped {
		t.Fatalf("drop for adminconsole 5: %v, %v", dropped, err)
	}
	if _, err := pg.Exec(ctx, `DELETE FROM instancemgr.reservations WHERE database_name = $1`, legacy); err != nil {
		t.Fatal(err)
	}
}
