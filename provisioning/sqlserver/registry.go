package sqlserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
)

// Registry writes registrations into a SQL Server EdFi_Admin
// (dbo.OdsInstances and friends) and keeps the system's ledger beside
// them, in the same transactions: sqlregistry's logic with T-SQL.
type Registry struct {
	*sqlregistry.Registry
	db *sql.DB
}

const ledgerSchema = `
IF SCHEMA_ID(N'instancemgr') IS NULL EXEC(N'CREATE SCHEMA instancemgr');
IF OBJECT_ID(N'instancemgr.instances', N'U') IS NULL
CREATE TABLE instancemgr.instances (
    tenant          nvarchar(256) NOT NULL,
    instance_id     int           NOT NULL,
    ods_instance_id int           NULL,
    database_name   nvarchar(128) NOT NULL,
    name            nvarchar(100) NOT NULL,
    generation      int           NOT NULL CONSTRAINT df_instancemgr_instances_generation DEFAULT 0,
    updated_at      datetime2     NOT NULL CONSTRAINT df_instancemgr_instances_updated DEFAULT SYSUTCDATETIME(),
    line            varchar(16)   NOT NULL CONSTRAINT df_instancemgr_instances_line DEFAULT 'adminconsole',
    CONSTRAINT pk_instancemgr_instances PRIMARY KEY (line, tenant, instance_id)
);
` + ledgerLineMigration

// ledgerLineMigration is the PostgreSQL registry's (which says why) in
// T-SQL. It runs in ensureSchema's transaction, so it is done whole or not
// at all; a statement that names the new column is EXEC'd, because SQL
// Server compiles the batch before the column exists.
const ledgerLineMigration = `IF COL_LENGTH(N'instancemgr.instances', N'line') IS NULL
ALTER TABLE instancemgr.instances ADD line varchar(16) NULL;
IF OBJECT_ID(N'adminapi.OdsInstanceManages', N'U') IS NOT NULL
EXEC(N'UPDATE l SET line = ''manage'' FROM instancemgr.instances l
WHERE l.line IS NULL AND EXISTS (SELECT 1 FROM adminapi.OdsInstanceManages m WHERE m.Id = l.instance_id AND m.DatabaseName = l.database_name)');
EXEC(N'UPDATE instancemgr.instances SET line = ''adminconsole'' WHERE line IS NULL');
IF COLUMNPROPERTY(OBJECT_ID(N'instancemgr.instances'), N'line', 'AllowsNull') = 1
EXEC(N'ALTER TABLE instancemgr.instances ALTER COLUMN line varchar(16) NOT NULL');
IF NOT EXISTS (SELECT 1 FROM sys.indexes i JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
    WHERE i.object_id = OBJECT_ID(N'instancemgr.instances') AND i.is_primary_key = 1 AND COL_NAME(ic.object_id, ic.column_id) = N'line')
BEGIN
    IF EXISTS (SELECT 1 FROM sys.key_constraints WHERE name = N'pk_instancemgr_instances' AND parent_object_id = OBJECT_ID(N'instancemgr.instances'))
    ALTER TABLE instancemgr.instances DROP CONSTRAINT pk_instancemgr_instances;
    EXEC(N'ALTER TABLE instancemgr.instances ADD CONSTRAINT pk_instancemgr_instances PRIMARY KEY (line, tenant, instance_id)');
END;
IF OBJECT_ID(N'instancemgr.df_instancemgr_instances_line', N'D') IS NULL
EXEC(N'ALTER TABLE instancemgr.instances ADD CONSTRAINT df_instancemgr_instances_line DEFAULT ''adminconsole'' FOR line');`

const ledgerColumns = `COALESCE(ods_instance_id, 0), database_name, name, generation`

// statements are SQL Server's registry statements. The instance lock is an
// application lock owned by the transaction.
var statements = sqlregistry.Statements{
	Lock: `DECLARE @r int;
EXEC @r = sp_getapplock @Resource = @p1, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 30000;
IF @r < 0 THROW 51000, 'instancemgr: the instance lock was not granted', 1;`,
	Lookup:          `SELECT ` + ledgerColumns + ` FROM instancemgr.instances WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3`,
	LookupForUpdate: `SELECT ` + ledgerColumns + ` FROM instancemgr.instances WITH (UPDLOCK, HOLDLOCK) WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3`,
	Records:         `SELECT tenant, instance_id, ` + ledgerColumns + `, line FROM instancemgr.instances ORDER BY tenant, line, instance_id`,
	Rows:            `SELECT OdsInstanceId, Name, COALESCE(InstanceType, N'') FROM dbo.OdsInstances ORDER BY OdsInstanceId`,
	RowName:         `SELECT Name FROM dbo.OdsInstances WHERE OdsInstanceId = @p1`,
	InsertRow:       `INSERT INTO dbo.OdsInstances (Name, InstanceType, ConnectionString) OUTPUT INSERTED.OdsInstanceId VALUES (@p1, @p2, @p3)`,
	InsertContext: `IF NOT EXISTS (SELECT 1 FROM dbo.OdsInstanceContexts WHERE OdsInstance_OdsInstanceId = @p1 AND ContextKey = @p2)
INSERT INTO dbo.OdsInstanceContexts (OdsInstance_OdsInstanceId, ContextKey, ContextValue) VALUES (@p1, @p2, @p3)`,
	InsertDerivative: `IF NOT EXISTS (SELECT 1 FROM dbo.OdsInstanceDerivatives WHERE OdsInstance_OdsInstanceId = @p1 AND DerivativeType = @p2)
INSERT INTO dbo.OdsInstanceDerivatives (OdsInstance_OdsInstanceId, DerivativeType, ConnectionString) VALUES (@p1, @p2, @p3)`,
	InsertLedger:     `INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name, line, generation) VALUES (@p1, @p2, @p3, @p4, @p5, @p6, @p7)`,
	UpdateRow:        `UPDATE dbo.OdsInstances SET Name = @p1, ConnectionString = @p2 WHERE OdsInstanceId = @p3`,
	UpdateDerivative: `UPDATE dbo.OdsInstanceDerivatives SET ConnectionString = @p1 WHERE OdsInstance_OdsInstanceId = @p2`,
	UpdateConnection: `UPDATE dbo.OdsInstances SET ConnectionString = @p1 WHERE OdsInstanceId = @p2`,
	MoveLedger:       `UPDATE instancemgr.instances SET database_name = @p1, name = @p2, generation = generation + 1, updated_at = SYSUTCDATETIME() WHERE tenant = @p3 AND instance_id = @p4 AND line = @p5`,
	Advance:          `UPDATE instancemgr.instances SET generation = generation + 1, updated_at = SYSUTCDATETIME() WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3`,
	DeleteRows: []string{
		`DELETE FROM dbo.OdsInstanceContexts WHERE OdsInstance_OdsInstanceId = @p1`,
		`DELETE FROM dbo.OdsInstanceDerivatives WHERE OdsInstance_OdsInstanceId = @p1`,
		`DELETE FROM dbo.ApiClientOdsInstances WHERE OdsInstance_OdsInstanceId = @p1`,
		`DELETE FROM dbo.OdsInstances WHERE OdsInstanceId = @p1`,
	},
	DeleteLedger: `DELETE FROM instancemgr.instances WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3`,
}

// NewRegistry connects to the EdFi_Admin database with an ADO.NET
// (SqlClient) connection string and makes sure the ledger exists.
func NewRegistry(ctx context.Context, connString string, _ *slog.Logger) (*Registry, error) {
	db, err := sql.Open("sqlserver", connString)
	if err != nil {
		return nil, errors.New("connect to the EdFi_Admin database: connection string does not parse")
	}
	if err := ensureSchema(ctx, db, ledgerSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create the instancemgr ledger in EdFi_Admin: %w", err)
	}
	return &Registry{Registry: sqlregistry.New(conn{db}, statements, classify, isUniqueViolation), db: db}, nil
}

// OpenRegistry connects like NewRegistry but creates nothing: for
// reconcile, which reads without writing. A missing ledger table reads as
// an empty ledger.
func OpenRegistry(ctx context.Context, connString string) (*Registry, error) {
	db, err := sql.Open("sqlserver", connString)
	if err != nil {
		return nil, errors.New("connect to the EdFi_Admin database: connection string does not parse")
	}
	present, err := tableExists(ctx, db, "instancemgr.instances")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("look for the instancemgr ledger in EdFi_Admin: %w", err)
	}
	r := &Registry{Registry: sqlregistry.New(conn{db}, statements, classify, isUniqueViolation), db: db}
	r.Absent = !present
	return r, nil
}

// Close releases the registry's connections.
func (r *Registry) Close() { r.db.Close() }

// conn adapts database/sql to sqlregistry.Conn.
type conn struct{ db *sql.DB }

func (c conn) Begin(ctx context.Context) (provisioning.Tx, error) {
	t, err := c.db.BeginTx(ctx, nil)
	return tx{t}, err
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) provisioning.ResultRow {
	return row{c.db.QueryRowContext(ctx, query, args...)}
}

func (c conn) Query(ctx context.Context, query string, args ...any) (provisioning.ResultRows, error) {
	r, err := c.db.QueryContext(ctx, query, args...)
	return rows{r}, err
}

type tx struct{ tx *sql.Tx }

func (t tx) Exec(ctx context.Context, query string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, query, args...)
	return err
}

func (t tx) QueryRow(ctx context.Context, query string, args ...any) provisioning.ResultRow {
	return row{t.tx.QueryRowContext(ctx, query, args...)}
}

func (t tx) Query(ctx context.Context, query string, args ...any) (provisioning.ResultRows, error) {
	r, err := t.tx.QueryContext(ctx, query, args...)
	return rows{r}, err
}

func (t tx) Commit(context.Context) error   { return t.tx.Commit() }
func (t tx) Rollback(context.Context) error { return t.tx.Rollback() }

type row struct{ row *sql.Row }

func (r row) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return provisioning.ErrNoRows
	}
	return err
}

type rows struct{ *sql.Rows }

func (r rows) Close() { _ = r.Rows.Close() }
