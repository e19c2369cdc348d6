package managewrite

import (
	"context"

	"github.com/edfi-tools/instancemgr/provisioning/managerows"
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
)

// Statements are one engine's SQL for the door, with its own placeholders;
// the arguments of each are in the order given. The requests' own (Get,
// and Claim, which moves a Created request to PendingDelete) are the
// source's, in the same engine.
type Statements struct {
	managerows.Statements
	Taken  string // (name) → whether a request not Deleted has the name, whether a dbo.OdsInstances row has it
	Insert string // (name, template, now) → id of a new PendingCreate request
	// Count () → the requests that hold or will hold a database: not
	// Deleted, CreateError or CreateFailed.
	Count string
	// AuditTable () → whether adminapi.AuditLogs exists (Ed-Fi added it in
	// a later pre-release); Audit (client id, source address, verb, URL,
	// status, now) → id writes Ed-Fi's audit row of a call there.
	AuditTable, Audit string
	// NameLock (key) takes a lock on a generated database name, held until
	// the transaction ends: POST checks and inserts under it.
	NameLock string
	// Names () → whether it is an instance, name, template ('' for none),
	// database name ('' for none) of every request not Deleted and every
	// dbo.OdsInstances row (its instance type as the template).
	Names string
}

// Postgres is PostgreSQL's SQL (Ed-Fi's PgSql migrations: unquoted, so
// lower case).
var Postgres = Statements{
	Statements: managerows.Postgres,
	Taken: `SELECT EXISTS (SELECT 1 FROM adminapi.odsinstancemanages WHERE name = $1 AND status <> 'Deleted'),
    EXISTS (SELECT 1 FROM dbo.odsinstances WHERE name = $1)`,
	Insert: `INSERT INTO adminapi.odsinstancemanages (name, databasetemplate, status, lastrefreshed, lastmodifieddate)
VALUES ($1, $2, 'PendingCreate', $3, $3) RETURNING id`,
	Count:      `SELECT count(*) FROM adminapi.odsinstancemanages WHERE status NOT IN ('Deleted', 'CreateError', 'CreateFailed')`,
	AuditTable: `SELECT to_regclass('adminapi.auditlogs') IS NOT NULL`,
	Audit: `INSERT INTO adminapi.auditlogs (eventtype, timestamp, clientid, sourceipaddress, httpverb, httpurl, statuscode)
VALUES ('Action', $6, $1, $2, $3, $4, $5) RETURNING id`,
	NameLock: `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
	Names: `SELECT false, name, databasetemplate, coalesce(databasename, '') FROM adminapi.odsinstancemanages WHERE status <> 'Deleted'
UNION ALL SELECT true, name, coalesce(instancetype, ''), '' FROM dbo.odsinstances`,
}

// SQLServer is SQL Server's SQL (Ed-Fi's MsSql migrations).
var SQLServer = Statements{
	Statements: managerows.SQLServer,
	Taken: `SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM adminapi.OdsInstanceManages WHERE Name = @p1 AND Status <> N'Deleted') THEN 1 ELSE 0 END AS bit),
    CAST(CASE WHEN EXISTS (SELECT 1 FROM dbo.OdsInstances WHERE Name = @p1) THEN 1 ELSE 0 END AS bit)`,
	Insert: `INSERT INTO adminapi.OdsInstanceManages (Name, DatabaseTemplate, Status, LastRefreshed, LastModifiedDate)
OUTPUT INSERTED.Id VALUES (@p1, @p2, N'PendingCreate', @p3, @p3)`,
	Count:      `SELECT COUNT(*) FROM adminapi.OdsInstanceManages WHERE Status NOT IN (N'Deleted', N'CreateError', N'CreateFailed')`,
	AuditTable: `SELECT CAST(CASE WHEN OBJECT_ID(N'adminapi.AuditLogs', N'U') IS NOT NULL THEN 1 ELSE 0 END AS bit)`,
	Audit: `INSERT INTO adminapi.AuditLogs (EventType, Timestamp, ClientId, SourceIpAddress, HttpVerb, HttpUrl, StatusCode)
OUTPUT INSERTED.Id VALUES (N'Action', @p6, @p1, @p2, @p3, @p4, @p5)`,
	// An application lock owned by the transaction, as the registry's
	// instance lock; not granted in 30 s is an error, not a wait forever.
	NameLock: `DECLARE @r int;
EXEC @r = sp_getapplock @Resource = @p1, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 30000;
IF @r < 0 THROW 51000, 'instancemgr: the database name lock was not granted', 1;`,
	Names: `SELECT CAST(0 AS bit), Name, DatabaseTemplate, COALESCE(DatabaseName, N'') FROM adminapi.OdsInstanceManages WHERE Status <> N'Deleted'
UNION ALL SELECT CAST(1 AS bit), Name, COALESCE(InstanceType, N''), N'' FROM dbo.OdsInstances`,
}

// DB is a tenant's EdFi_Admin, where the door writes the requests.
type DB struct {
	Conn       sqlregistry.Conn
	Statements Statements
}

// Databases opens the EdFi_Admin of a tenant.
type Databases func(ctx context.Context, tenant string) (DB, error)
