package postgres_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// odsCatalog is what a database holds outside PostgreSQL's own schemas and
// public, counted the way odsfacts.go's counts were.
type odsCatalog struct {
	Schemas, Tables, PrimaryKeys, UniqueConstraints, UniqueIndexes, Indexes, ForeignKeys, Sequences, Views, Columns, ToastTables int
	TablesPerSchema                                                                                                              string
}

func countODSCatalog(t *testing.T, db string) odsCatalog {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), testenv.ConnString(t, db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const ours = `SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'public')`
	var c odsCatalog
	err = conn.QueryRow(context.Background(), `
WITH ns AS (`+ours+`)
SELECT
  (SELECT count(*) FROM ns),
  (SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_constraint WHERE contype = 'u' AND connamespace IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE x.relnamespace IN (SELECT oid FROM ns)
     AND i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)),
  (SELECT count(*) FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE x.relnamespace IN (SELECT oid FROM ns) AND NOT i.indisunique),
  (SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_class WHERE relkind = 'S' AND relnamespace IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_views v JOIN pg_namespace n ON n.nspname = v.schemaname WHERE n.oid IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_attribute a JOIN pg_class x ON x.oid = a.attrelid
     WHERE x.relkind IN ('r', 'p') AND x.relnamespace IN (SELECT oid FROM ns) AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace IN (SELECT oid FROM ns) AND reltoastrelid <> 0),
  (SELECT string_agg(n::text, ',' ORDER BY n DESC) FROM (SELECT count(*) AS n FROM pg_class
     WHERE relkind IN ('r', 'p') AND relnamespace IN (SELECT oid FROM ns) GROUP BY relnamespace) per)`).Scan(
		&c.Schemas, &c.Tables, &c.PrimaryKeys, &c.UniqueConstraints, &c.UniqueIndexes, &c.Indexes, &c.ForeignKeys, &c.Sequences, &c.Views, &c.Columns, &c.ToastTables, &c.TablesPerSchema)
	if err != nil {
		t.Fatalf("count the catalog of %s: %v", db, err)
	}
	return c
}

// odsFacts is odsfacts.go's counts in odsCatalog's form.
var odsFacts = odsCatalog{
	Schemas: postgres.ODSSchemas, Tables: postgres.ODSTables, PrimaryKeys: postgres.ODSPrimaryKeys, UniqueConstraints: postgres.ODSUniqueConstraints,
	UniqueIndexes: postgres.ODSUniqueIndexes, Indexes: postgres.ODSIndexes, ForeignKeys: postgres.ODSForeignKeys, Sequences: postgres.ODSSequences,
	Views: postgres.ODSViews, Columns: postgres.ODSColumns, ToastTables: postgres.ODSToastTables, TablesPerSchema: "829,176,5,1",
}

// identity is what a second build would change: the database's oid and
// every relation's file.
func identity(t *testing.T, pool *pgxpool.Pool, db string) string {
	t.Helper()
	var oid string
	if err := pool.QueryRow(context.Background(), `SELECT oid::text FROM pg_database WHERE datname = $1`, db).Scan(&oid); err != nil {
		t.Fatalf("find %s: %v", db, err)
	}
	conn, err := pgx.Connect(context.Background(), testenv.ConnString(t, db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var files string
	if err := conn.QueryRow(context.Background(), `SELECT md5(string_agg(oid::text || ':' || relfilenode, ',' ORDER BY oid)) FROM pg_class`).Scan(&files); err != nil {
		t.Fatal(err)
	}
	return oid + "/" + files
}

func TestEnsureODSShapedTemplate(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	pool := testenv.Postgres(t)
	ctx := context.Background()
	connectTo := func(db string) string { return testenv.ConnString(t, db) }
	name := prefix + "_ods"

	// Two at once, as two processes starting together: one builds, the
	// other waits and finds it made.
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- e.EnsureODSShapedTemplate(ctx, name, connectTo, 3) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := countODSCatalog(t, name); got != odsFacts {
		t.Errorf("the template's catalog:\n got %+v\nwant %+v", got, odsFacts)
	}
	// The tables an ODS fills (its descriptors') have their rows, foreign
	// keys included; the others are empty.
	conn, err := pgx.Connect(ctx, connectTo(name))
	if err != nil {
		t.Fatal(err)
	}
	var filled, empty int
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM s1.t0281), (SELECT count(*) FROM s1.t0282)`).Scan(&filled, &empty)
	conn.Close(ctx)
	if err != nil || filled != 3 || empty != 0 {
		t.Errorf("rows of the last filled table and the next: %d, %d, %v; want 3 and 0", filled, empty, err)
	}

	before := identity(t, pool, name)
	if err := e.EnsureODSShapedTemplate(ctx, name, connectTo, 3); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if after := identity(t, pool, name); after != before {
		t.Errorf("the second call changed the template: %s, then %s", before, after)
	}

	copyName := prefix + "_ods_copy"
	if _, err := pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{copyName}.Sanitize()+" TEMPLATE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("copy the template: %v", err)
	}
	if got := countODSCatalog(t, copyName); got != odsFacts {
		t.Errorf("the copy's catalog:\n got %+v\nwant %+v", got, odsFacts)
	}
	assertNoBuild(t, pool, name)
}

// A build that fails leaves neither the template nor its build, and a
// build a killed process left is replaced.
func TestEnsureODSShapedTemplateLeavesNothingHalfMade(t *testing.T) {
	t.Parallel()
	e, prefix := newEngine(t)
	pool := testenv.Postgres(t)
	ctx := context.Background()
	name := prefix + "_ods"

	unreachable := func(string) string { return "host=127.0.0.1 port=1 user=postgres dbname=nothing connect_timeout=2" }
	if err := e.EnsureODSShapedTemplate(ctx, name, unreachable, 3); err == nil {
		t.Fatal("a build that cannot fill its database succeeded")
	}
	if ok, err := e.DatabaseExists(ctx, name); err != nil || ok {
		t.Errorf("after a failed build the template exists: %v, %v", ok, err)
	}
	assertNoBuild(t, pool, name)

	// What a killed build leaves: its database, half filled.
	testenv.CreateDatabase(t, pool, postgres.ODSBuildName(name))
	if err := e.EnsureODSShapedTemplate(ctx, name, func(db string) string { return testenv.ConnString(t, db) }, 1); err != nil {
		t.Fatalf("build over a killed build's leftover: %v", err)
	}
	assertNoBuild(t, pool, name)
}

// assertNoBuild fails when the build of template name is left on the
// server: it has the system's own name (ODSBuildName), not the test's
// prefix.
func assertNoBuild(t *testing.T, pool *pgxpool.Pool, name string) {
	t.Helper()
	build := postgres.ODSBuildName(name)
	var left bool
	if err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, build).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left {
		t.Errorf("the build %s is left behind", build)
		_, _ = pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{build}.Sanitize()+" WITH (FORCE)")
	}
}

func TestODSBuildName(t *testing.T) {
	for _, name := range []string{"Ods_Minimal_Template", strings.Repeat("é", 31) + "x", strings.Repeat("a", 63)} {
		b := postgres.ODSBuildName(name)
		if len(b) > 63 || !utf8.ValidString(b) || b == name || !provisioning.SystemName(b) || b == postgres.ODSBuildName(name+"2") {
			t.Errorf("the build name of %q is %q", name, b)
		}
	}
}
