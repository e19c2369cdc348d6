package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// TemplateSpec says how to generate a template: many tables, as an ODS has,
// each with rows of some width; or, with Shape ShapeODS, the shape of Ed-Fi's
// DS 6.1 ODS (postgres.EnsureODSShapedTemplate), Rows in each filled table.
type TemplateSpec struct {
	Label  string // "small", "large", "ods"
	Shape  string // "" (Tables tables of Rows rows) or ShapeODS
	Tables int
	Rows   int // per table
}

// ShapeODS is a TemplateSpec's Shape for a template of the ODS's shape.
const ShapeODS = "ods"

// The templates of a full run: a few MB, about 100 MB (an ODS with some
// data), and the ODS's own shape (about 58 MB in 4,500 relation files, as Ed-Fi's
// minimal template). The small run uses Tiny.
var (
	Small = TemplateSpec{Label: "small", Tables: 60, Rows: 400}
	Large = TemplateSpec{Label: "large", Tables: 400, Rows: 800}
	ODS   = TemplateSpec{Label: "ods", Shape: ShapeODS, Tables: postgres.ODSTables, Rows: postgres.DefaultODSShapeRows}
	Tiny  = TemplateSpec{Label: "tiny", Tables: 10, Rows: 50}
)

// Templates are the templates a run can be asked for by label.
var Templates = []TemplateSpec{Tiny, Small, Large, ODS}

// Template is a generated template database.
type Template struct {
	Spec  TemplateSpec
	Name  string
	Bytes int64 // pg_database_size
}

// MakeTemplate creates the template database name on master and fills it
// as spec says; the caller drops it (its name carries the run's prefix).
func MakeTemplate(t testing.TB, pg *pgxpool.Pool, master connstr.Conn, name string, spec TemplateSpec) Template {
	t.Helper()
	ctx := context.Background()
	if spec.Shape == ShapeODS {
		makeODSShaped(t, master, name, spec.Rows)
		return measured(t, pg, name, spec)
	}
	if _, err := pg.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create template %s: %v", name, err)
	}
	conn, err := pgx.Connect(ctx, master.WithDatabase(name).PgxConnString())
	if err != nil {
		t.Fatal(err)
	}
	// Tables like an ODS's: a key, a few typed columns, an index; rows of
	// about 160 bytes.
	fill := fmt.Sprintf(`
DO $$
BEGIN
  FOR i IN 1..%d LOOP
    EXECUTE format('CREATE TABLE t%%s (id int PRIMARY KEY, code text NOT NULL, descr text, amount numeric(12,2), at timestamptz DEFAULT now())', i);
    EXECUTE format('INSERT INTO t%%s (id, code, descr, amount) SELECT g, md5(g::text), repeat(md5((g+1)::text), 3), g * 1.5 FROM generate_series(1, %d) g', i);
    EXECUTE format('CREATE INDEX ON t%%s (code)', i);
  END LOOP;
END $$;`, spec.Tables, spec.Rows)
	if _, err := conn.Exec(ctx, fill); err != nil {
		conn.Close(ctx)
		t.Fatalf("fill template %s: %v", name, err)
	}
	conn.Close(ctx)
	return measured(t, pg, name, spec)
}

// makeODSShaped builds the ODS-shaped template name on master, as dev does.
func makeODSShaped(t testing.TB, master connstr.Conn, name string, rows int) {
	t.Helper()
	ctx := context.Background()
	engine, err := postgres.NewEngine(ctx, master.PgxConnString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	if err := engine.EnsureODSShapedTemplate(ctx, name, func(db string) string { return master.WithDatabase(db).PgxConnString() }, rows); err != nil {
		t.Fatalf("make the ODS-shaped template %s: %v", name, err)
	}
}

// measured is the template name once on disk: its size, after a checkpoint.
func measured(t testing.TB, pg *pgxpool.Pool, name string, spec TemplateSpec) Template {
	t.Helper()
	ctx := context.Background()
	var size int64
	if err := pg.QueryRow(ctx, `SELECT pg_database_size($1)`, name).Scan(&size); err != nil {
		t.Fatal(err)
	}
	// A checkpoint now, so that the first measured copy does not pay for
	// writing the template out.
	if _, err := pg.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	return Template{Spec: spec, Name: name, Bytes: size}
}

// MB is a size in megabytes, for tables.
func MB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
