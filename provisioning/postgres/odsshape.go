package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// DefaultODSShapeRows is the rows of each filled table of an ODS-shaped
// template when the caller gives none: about 58 MB in all on PostgreSQL
// 15, as Ed-Fi's structure (52 MB empty) with its descriptors.
const DefaultODSShapeRows = 40

// odsSchema is what one generated schema holds, from the counts of
// odsfacts.go.
type odsSchema struct {
	tables  int
	columns int // in all its tables
	roots   int // tables with an id uuid, a discriminator and a lastmodifieddate, as aggregate roots have
	fks     int // each from a later table to an earlier one of the schema
	// uniqueIDs roots get a unique index on id; uniqueCodes tables a
	// UNIQUE constraint on code.
	uniqueIDs, uniqueCodes int
	indexes                int // on foreign-key columns first, then on code
	sequences              int // the roots' key defaults, or alone when there is no table
	views                  int // over the first schema's tables
	long                   int // the first tables, which get a description long enough for a TOAST table
	filled                 int // the first tables, which get rows
}

// odsSchemas is the ODS's shape: the entities, the tracked changes,
// interoperability, authorization, the change-version sequence, and a
// schema of functions (empty here). As in Ed-Fi's minimal template, only
// as many tables as it has descriptor tables hold rows.
var odsSchemas = []odsSchema{
	{tables: ODSTablesMain, columns: odsColumnsMain, roots: odsSequencesMain, fks: odsForeignKeysMain, uniqueIDs: ODSUniqueIndexes, uniqueCodes: ODSUniqueConstraints, indexes: ODSIndexes - odsIndexesAuth, sequences: odsSequencesMain, filled: odsDescriptorTables, long: odsToastMain},
	{tables: ODSTablesChanges, columns: odsColumnsChanges, roots: ODSTablesChanges, long: odsToastChanges},
	{tables: ODSTablesInterop, columns: odsColumnsInterop, fks: odsForeignKeysInterop, views: odsViewsInterop},
	{tables: ODSTablesAuth, columns: odsColumnsAuth, indexes: odsIndexesAuth, views: odsViewsAuth},
	{sequences: ODSSequences - odsSequencesMain},
	{},
}

// odsFiller are the types of the columns beyond the keys, in the ODS's
// mix (character varying most, then integers, timestamps, dates), with the
// value each row gets from g, its number, and {i}, the column's. Their
// widths together stay under the size that gives a table a TOAST table
// (2 kB a row at most), so that only the long tables have one.
var odsFiller = []struct{ typ, value string }{
	{"varchar(50)", "left(md5(g::text || '{i}'), 30)"},
	{"integer", "(g * 7 + {i}) % 100000"},
	{"timestamp", "timestamp '2024-07-01' + g * interval '1 hour'"},
	{"varchar(100)", "repeat(md5(g::text || '{i}'), 2)"},
	{"date", "date '2024-08-01' + g % 365"},
	{"bigint", "g * 1000 + {i}"},
	{"varchar(60)", "'n' || g"},
	{"boolean", "g % 2 = 0"},
	{"numeric(9,2)", "g * 1.25"},
	{"smallint", "(g % 100)::smallint"},
}

// EnsureODSShapedTemplate creates, unless a database of that name exists,
// a template with the shape of Ed-Fi's Data Standard 6.1 ODS (odsfacts.go):
// as many schemas, tables, primary keys, indexes, foreign keys, sequences,
// views and columns, under generated names, with rows generated rows in as
// many tables as an ODS has descriptor tables (DefaultODSShapeRows when
// rows is 0 or less). It is built under another name and renamed when
// complete, so name never holds half a template; a build that fails is
// dropped, and one a killed process left is dropped by the next call.
// connectTo gives the pgx connection string of a database on the same
// server.
func (e *Engine) EnsureODSShapedTemplate(ctx context.Context, name string, connectTo func(database string) string, rows int) error {
	if rows <= 0 {
		rows = DefaultODSShapeRows
	}
	exists, err := e.DatabaseExists(ctx, name)
	if err != nil || exists {
		return err
	}
	build := odsBuildName(name)
	if err := checkIdent(name); err != nil {
		return err
	}
	// One build at a time per name, across processes: the lock is the
	// session's and goes with it if this process dies.
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("build template %q: %w", name, err)
	}
	defer conn.Release()
	h := fnv.New64a()
	h.Write([]byte("instancemgr ods-shaped template " + name))
	key := int64(h.Sum64())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("lock the build of template %q: %w", name, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key) //nolint:errcheck // the session ends the lock anyway

	if _, exists, err = e.Identity(ctx, name); err != nil || exists {
		return err // another process built it while this one waited
	}
	drop, err := dropDatabaseSQL(build)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, drop); err != nil { // what a killed build left
		return fmt.Errorf("drop the unfinished build %q: %w", build, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{build}.Sanitize()); err != nil {
		return fmt.Errorf("create the build %q of template %q: %w", build, name, err)
	}
	rename, err := renameDatabaseSQL(build, name)
	if err == nil {
		err = fillODSShape(ctx, connectTo(build), rows)
	}
	if err == nil {
		if _, err = conn.Exec(ctx, rename); err != nil {
			err = fmt.Errorf("rename %q to %q: %w", build, name, err)
		}
	}
	if err != nil {
		if _, derr := conn.Exec(context.WithoutCancel(ctx), drop); derr != nil {
			return fmt.Errorf("build template %q: %w (and drop the build %q: %v)", name, err, build, derr)
		}
		return fmt.Errorf("build template %q: %w", name, err)
	}
	return nil
}

// odsBuildName is the name a template is built under: under the system's
// own prefix, which no request's database can have (provisioning.Naming),
// so that dropping a build left by a killed process can only drop the
// system's own; a hash of the template's name keeps builds apart.
func odsBuildName(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("%sbuilding_%016x", provisioning.SystemPrefix, h.Sum64())
}

// fillODSShape creates the generated schemas in the database at connString,
// a few tables to a transaction so that the locks of one never fill the
// server's lock table.
func fillODSShape(ctx context.Context, connString string, rows int) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, batch := range odsShapeSQL(rows) {
		if _, err := conn.Exec(ctx, batch); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	return nil
}

// odsShapeSQL is the DDL and the rows of an ODS-shaped template, in
// batches that each run as one statement list (one transaction).
func odsShapeSQL(rows int) []string {
	const perBatch = 60
	var batches []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			batches = append(batches, b.String())
			b.Reset()
		}
	}
	table := func(s, t int) string { return pgx.Identifier{schemaName(s), tableName(t)}.Sanitize() }
	for si, sc := range odsSchemas {
		fmt.Fprintf(&b, "CREATE SCHEMA %s;\n", pgx.Identifier{schemaName(si)}.Sanitize())
		if sc.tables == 0 {
			for q := range sc.sequences {
				fmt.Fprintf(&b, "CREATE SEQUENCE %s;\n", pgx.Identifier{schemaName(si), fmt.Sprintf("seq%04d", q+1)}.Sanitize())
			}
			continue
		}
		// Foreign keys and the columns beyond the base, spread evenly.
		fksOf := spread(sc.fks, sc.tables-1)
		base := 2*sc.tables + 4*sc.roots // key, code; roots also id, discriminator, createdate, lastmodifieddate
		extraOf := spread(sc.columns-base-sc.fks, sc.tables)
		indexed := 0
		for t := range sc.tables {
			root := t < sc.roots
			var cols, values []string
			col := func(name, typ, value string) {
				cols = append(cols, pgx.Identifier{name}.Sanitize()+" "+typ)
				values = append(values, value)
			}
			key := "bigint PRIMARY KEY"
			if t < sc.sequences {
				seq := pgx.Identifier{schemaName(si), tableName(t) + "_key_seq"}.Sanitize()
				fmt.Fprintf(&b, "CREATE SEQUENCE %s;\n", seq)
				key = fmt.Sprintf("bigint PRIMARY KEY DEFAULT nextval('%s')", seq)
			}
			col("key", key, "g")
			code := "varchar(60) NOT NULL"
			if t < sc.uniqueCodes {
				code += " UNIQUE"
			}
			col("code", code, fmt.Sprintf("'%d-' || g || '-' || md5(g::text)", t))
			if root {
				col("id", "uuid NOT NULL", "md5(g::text || 'id')::uuid")
				col("discriminator", "varchar(128)", "NULL")
				col("createdate", "timestamp NOT NULL DEFAULT now()", "now()")
				col("lastmodifieddate", "timestamp NOT NULL DEFAULT now()", "now()")
			}
			var refs []string
			if t > 0 {
				for r := range fksOf[t-1] {
					// An earlier table, so that rows can go in table by
					// table; its key values are 1..rows.
					parent := (t*31 + r*17) % t
					ref := fmt.Sprintf("r%d_%s", r+1, tableName(parent))
					col(ref, "bigint REFERENCES "+table(si, parent), fmt.Sprintf("(g - 1) %% %d + 1", rows))
					refs = append(refs, ref)
				}
			}
			for x := range extraOf[t] {
				if !root && x == 0 {
					col("createdate", "timestamp NOT NULL DEFAULT now()", "now()")
					continue
				}
				if t < sc.long && (x == 0 || !root && x == 1) {
					col("description", "varchar(1024)", "'Description ' || g || ' ' || md5(g::text)")
					continue
				}
				f := odsFiller[(t+x)%len(odsFiller)]
				col(fmt.Sprintf("c%02d", x), f.typ, strings.ReplaceAll(f.value, "{i}", strconv.Itoa(x)))
			}
			fmt.Fprintf(&b, "CREATE TABLE %s (\n  %s\n);\n", table(si, t), strings.Join(cols, ",\n  "))
			if t < sc.filled {
				names := make([]string, len(cols))
				for i, c := range cols {
					names[i] = c[:strings.IndexByte(c, ' ')]
				}
				fmt.Fprintf(&b, "INSERT INTO %s (%s) SELECT %s FROM generate_series(1, %d) g;\n", table(si, t), strings.Join(names, ", "), strings.Join(values, ", "), rows)
				if t < sc.sequences {
					fmt.Fprintf(&b, "SELECT setval('%s', %d);\n", pgx.Identifier{schemaName(si), tableName(t) + "_key_seq"}.Sanitize(), rows)
				}
			}
			if root && t < sc.uniqueIDs {
				fmt.Fprintf(&b, "CREATE UNIQUE INDEX ON %s (id);\n", table(si, t))
			}
			for _, ref := range refs {
				if indexed < sc.indexes {
					fmt.Fprintf(&b, "CREATE INDEX ON %s (%s);\n", table(si, t), pgx.Identifier{ref}.Sanitize())
					indexed++
				}
			}
			if (t+1)%perBatch == 0 {
				flush()
			}
		}
		for t := 0; indexed < sc.indexes; t, indexed = t+1, indexed+1 {
			fmt.Fprintf(&b, "CREATE INDEX ON %s (code);\n", table(si, t%sc.tables))
		}
		for v := range sc.views {
			fmt.Fprintf(&b, "CREATE VIEW %s AS SELECT key, code FROM %s;\n", pgx.Identifier{schemaName(si), fmt.Sprintf("v%02d", v+1)}.Sanitize(), table(0, v))
		}
		flush()
	}
	flush()
	return batches
}

func schemaName(i int) string { return fmt.Sprintf("s%d", i+1) }
func tableName(i int) string  { return fmt.Sprintf("t%04d", i+1) }

// spread is n split over k as evenly as whole numbers go, the larger
// shares first.
func spread(n, k int) []int {
	out := make([]int, max(k, 0))
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}
