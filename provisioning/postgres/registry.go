package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
)

// Registry writes registrations into an EdFi_Admin database shaped like the
// ODS/API 7.x one (dbo.odsinstances and friends), and keeps the system's own
// ledger beside them in the schema instancemgr, in the same transactions.
// The logic is sqlregistry's; this is PostgreSQL's SQL for it.
type Registry struct {
	*sqlregistry.Registry
	pool *pgxpool.Pool
}

// ledgerSchema is the system's own record of what it provisioned. It lives
// in EdFi_Admin so that it commits atomically with the registration.
const ledgerSchema = `
CREATE SCHEMA IF NOT EXISTS instancemgr;
CREATE TABLE IF NOT EXISTS instancemgr.instances (
    tenant          text        NOT NULL,
    instance_id     integer     NOT NULL,
    ods_instance_id integer     NOT NULL,
    database_name   text        NOT NULL,
    name            text        NOT NULL,
    generation      integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    line            text        NOT NULL DEFAULT 'adminconsole',
    PRIMARY KEY (line, tenant, instance_id)
);
-- NULL when the Admin API registers the instance: its row id is the Admin API's.
ALTER TABLE instancemgr.instances ALTER COLUMN ods_instance_id DROP NOT NULL;
` + ledgerLineMigration

// ledgerLineMigration gives a ledger from before lines its column line,
// once: an entry is the manage line's when the manage request of its id
// names its database (the manage flavor completes a request with the
// ledger's database), else adminconsole's, the only line there was before
// manage. The key becomes (line, tenant, instance_id). The default keeps
// an adminconsole replica of an older version writing valid entries
// during a rolling upgrade.
const ledgerLineMigration = `
ALTER TABLE instancemgr.instances ADD COLUMN IF NOT EXISTS line text;
DO $migrate$
DECLARE pk name;
BEGIN
    IF EXISTS (SELECT 1 FROM instancemgr.instances WHERE line IS NULL) THEN
        IF to_regclass('adminapi.odsinstancemanages') IS NOT NULL THEN
            UPDATE instancemgr.instances l SET line = 'manage'
            WHERE l.line IS NULL AND EXISTS (
                SELECT 1 FROM adminapi.odsinstancemanages m WHERE m.id = l.instance_id AND m.databasename = l.database_name);
        END IF;
        UPDATE instancemgr.instances SET line = 'adminconsole' WHERE line IS NULL;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.conrelid = 'instancemgr.instances'::regclass AND c.contype = 'p' AND a.attname = 'line') THEN
        SELECT conname INTO pk FROM pg_catalog.pg_constraint WHERE conrelid = 'instancemgr.instances'::regclass AND contype = 'p';
        IF pk IS NOT NULL THEN
            EXECUTE format('ALTER TABLE instancemgr.instances DROP CONSTRAINT %I', pk);
        END IF;
        ALTER TABLE instancemgr.instances ALTER COLUMN line SET NOT NULL;
        ALTER TABLE instancemgr.instances ADD PRIMARY KEY (line, tenant, instance_id);
    END IF;
END
$migrate$;
ALTER TABLE instancemgr.instances ALTER COLUMN line SET DEFAULT 'adminconsole';
ALTER TABLE instancemgr.instances ALTER COLUMN line SET NOT NULL;`

const ledgerColumns = `coalesce(ods_instance_id, 0), database_name, name, generation`

// statements are PostgreSQL's registry statements.
var statements = sqlregistry.Statements{
	Lock:             `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
	Lookup:           `SELECT ` + ledgerColumns + ` FROM instancemgr.instances WHERE tenant = $1 AND instance_id = $2 AND line = $3`,
	LookupForUpdate:  `SELECT ` + ledgerColumns + ` FROM instancemgr.instances WHERE tenant = $1 AND instance_id = $2 AND line = $3 FOR UPDATE`,
	Records:          `SELECT tenant, instance_id, ` + ledgerColumns + `, line FROM instancemgr.instances ORDER BY tenant, line, instance_id`,
	Rows:             `SELECT odsinstanceid, name, coalesce(instancetype, '') FROM dbo.odsinstances ORDER BY odsinstanceid`,
	RowName:          `SELECT name FROM dbo.odsinstances WHERE odsinstanceid = $1`,
	InsertRow:        `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ($1, $2, $3) RETURNING odsinstanceid`,
	InsertContext:    `INSERT INTO dbo.odsinstancecontexts (odsinstance_odsinstanceid, contextkey, contextvalue) VALUES ($1, $2, $3) ON CONFLICT (odsinstance_odsinstanceid, contextkey) DO NOTHING`,
	InsertDerivative: `INSERT INTO dbo.odsinstancederivatives (odsinstance_odsinstanceid, derivativetype, connectionstring) VALUES ($1, $2, $3) ON CONFLICT (odsinstance_odsinstanceid, derivativetype) DO NOTHING`,
	InsertLedger:     `INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name, line, generation) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
	UpdateRow:        `UPDATE dbo.odsinstances SET name = $1, connectionstring = $2 WHERE odsinstanceid = $3`,
	UpdateDerivative: `UPDATE dbo.odsinstancederivatives SET connectionstring = $1 WHERE odsinstance_odsinstanceid = $2`,
	UpdateConnection: `UPDATE dbo.odsinstances SET connectionstring = $1 WHERE odsinstanceid = $2`,
	MoveLedger:       `UPDATE instancemgr.instances SET database_name = $1, name = $2, generation = generation + 1, updated_at = now() WHERE tenant = $3 AND instance_id = $4 AND line = $5`,
	Advance:          `UPDATE instancemgr.instances SET generation = generation + 1, updated_at = now() WHERE tenant = $1 AND instance_id = $2 AND line = $3`,
	DeleteRows: []string{
		`DELETE FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.odsinstancederivatives WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.apiclientodsinstances WHERE odsinstance_odsinstanceid = $1`,
		`DELETE FROM dbo.odsinstances WHERE odsinstanceid = $1`,
	},
	DeleteLedger: `DELETE FROM instancemgr.instances WHERE tenant = $1 AND instance_id = $2 AND line = $3`,
}

// NewRegistry connects to the EdFi_Admin database and makes sure the ledger
// table exists.
func NewRegistry(ctx context.Context, pgxConnString string, log *slog.Logger) (*Registry, error) {
	pool, err := open(ctx, pgxConnString, 8, 0, "the EdFi_Admin database", ledgerSchema, "the instancemgr ledger")
	if err != nil {
		return nil, err
	}
	return &Registry{Registry: sqlregistry.New(conn{pool}, statements, transient, isUniqueViolation), pool: pool}, nil
}

// OpenRegistry connects to the EdFi_Admin database like NewRegistry but
// creates nothing: for reconcile, which reads without writing. A missing
// ledger table reads as an empty ledger.
func OpenRegistry(ctx context.Context, pgxConnString string) (*Registry, error) {
	pool, err := newPool(ctx, pgxConnString, 2, 0)
	if err != nil {
		return nil, fmt.Errorf("connect to the EdFi_Admin database: %w", err)
	}
	present, err := tableExists(ctx, pool, "instancemgr.instances")
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("look for the instancemgr ledger in the EdFi_Admin database: %w", err)
	}
	r := &Registry{Registry: sqlregistry.New(conn{pool}, statements, transient, isUniqueViolation), pool: pool}
	r.Absent = !present
	return r, nil
}

// tableExists reports whether a table of that qualified name exists.
func tableExists(ctx context.Context, pool *pgxpool.Pool, name string) (bool, error) {
	var present bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&present); err != nil {
		return false, transient(err)
	}
	return present, nil
}

// Close releases the registry's connections.
func (r *Registry) Close() { r.pool.Close() }

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation
}

// conn adapts a pgx pool to sqlregistry.Conn.
type conn struct{ pool *pgxpool.Pool }

func (c conn) Begin(ctx context.Context) (provisioning.Tx, error) {
	t, err := c.pool.Begin(ctx)
	return tx{t}, err
}

func (c conn) QueryRow(ctx context.Context, sql string, args ...any) provisioning.ResultRow {
	return row{c.pool.QueryRow(ctx, sql, args...)}
}

func (c conn) Query(ctx context.Context, sql string, args ...any) (provisioning.ResultRows, error) {
	return c.pool.Query(ctx, sql, args...)
}

type tx struct{ tx pgx.Tx }

func (t tx) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := t.tx.Exec(ctx, sql, args...)
	return err
}

func (t tx) QueryRow(ctx context.Context, sql string, args ...any) provisioning.ResultRow {
	return row{t.tx.QueryRow(ctx, sql, args...)}
}

func (t tx) Query(ctx context.Context, sql string, args ...any) (provisioning.ResultRows, error) {
	return t.tx.Query(ctx, sql, args...)
}

func (t tx) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t tx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

type row struct{ row pgx.Row }

func (r row) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return provisioning.ErrNoRows
	}
	return err
}

// Conn is pool as the registry's connection: for code that runs the SQL of
// sqlregistry-shaped statements on a pool of its own (the tests of the
// manage write routes).
func Conn(pool *pgxpool.Pool) sqlregistry.Conn { return conn{pool} }
