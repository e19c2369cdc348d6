// Package sqlserver is the SQL Server engine and registry: the same
// create/rename/delete semantics, ownership rule, guard rails and ledger as
// provisioning/postgres, in T-SQL through github.com/microsoft/go-mssqldb.
//
// Identifiers are quoted as QUOTENAME quotes them; every value is a bind
// parameter. It must never rename or drop a database that it did not make
// for the same request, and it has not been run against a real SQL Server on
// this project's machines: the unit tests pin its statements, and the
// conformance suite and integration tests run where one is reachable.
package sqlserver

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// MaxNameChars is sysname's limit: 128 characters.
const MaxNameChars = 128

// quoteName quotes an identifier as QUOTENAME does: in brackets, with every
// ']' doubled. Names SQL Server would refuse or change are refused first.
func quoteName(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty database name", provisioning.ErrInvalidName)
	case utf8.RuneCountInString(name) > MaxNameChars:
		return "", fmt.Errorf("%w: database name of %d characters, more than SQL Server's %d", provisioning.ErrInvalidName, utf8.RuneCountInString(name), MaxNameChars)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%w: database name holds a NUL byte", provisioning.ErrInvalidName)
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: database name is not valid UTF-8", provisioning.ErrInvalidName)
	}
	return "[" + strings.ReplaceAll(name, "]", "]]") + "]", nil
}

// quoteNames quotes each name, refusing the statement if any is refused.
func quoteNames(names ...string) ([]string, error) {
	out := make([]string, len(names))
	var errs []error
	for i, n := range names {
		var err error
		out[i], err = quoteName(n)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// copySQL copies a database on the same server (Azure SQL Database).
func copySQL(name, template string) (string, error) {
	q, err := quoteNames(name, template)
	if err != nil {
		return "", err
	}
	return "CREATE DATABASE " + q[0] + " AS COPY OF " + q[1], nil
}

// restoreSQL restores the backup at parameter @p1 into a new database,
// moving each file to the path in the parameter that follows its logical
// name's parameter: MOVE @p2 TO @p3, MOVE @p4 TO @p5, ...
func restoreSQL(name string, files int) (string, error) {
	q, err := quoteName(name)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("RESTORE DATABASE " + q + " FROM DISK = @p1 WITH ")
	for i := range files {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "MOVE @p%d TO @p%d", 2+2*i, 3+2*i)
	}
	b.WriteString(", RECOVERY")
	return b.String(), nil
}

// renameFileSQL gives a restored database's logical file its new name.
func renameFileSQL(database, logical, newLogical string) (string, error) {
	q, err := quoteNames(database, logical, newLogical)
	if err != nil {
		return "", err
	}
	return "ALTER DATABASE " + q[0] + " MODIFY FILE (NAME = " + q[1] + ", NEWNAME = " + q[2] + ")", nil
}

// renameSQL renames old to new with the database in single-user mode, then
// lets users back in. terminate ends other sessions at once; without it the
// first statement fails while any remain (the wait policy).
func renameSQL(old, new string, terminate bool) ([]string, error) {
	q, err := quoteNames(old, new)
	if err != nil {
		return nil, err
	}
	return []string{
		"ALTER DATABASE " + q[0] + " SET SINGLE_USER WITH " + singleUserOption(terminate),
		"ALTER DATABASE " + q[0] + " MODIFY NAME = " + q[1],
		"ALTER DATABASE " + q[1] + " SET MULTI_USER",
	}, nil
}

// renameScratchSQL gives a copy made under its scratch name its own name.
func renameScratchSQL(scratch, name string) (string, error) {
	q, err := quoteNames(scratch, name)
	if err != nil {
		return "", err
	}
	return "ALTER DATABASE " + q[0] + " MODIFY NAME = " + q[1], nil
}

// The reservation statements, pinned by the unit tests. A database's
// identity on SQL Server is its database_id, which a rename keeps and no
// other database has while it exists, with its create_date, which tells a
// later database given the same (reused) id from it.
const (
	identityExpr = `CONCAT(database_id, N'@', CONVERT(nvarchar(33), create_date, 126))`
	identitySQL  = `SELECT ` + identityExpr + ` FROM sys.databases WHERE name = @p1`
	// guardSQL begins a batch that must act only on the database the
	// system made: unless the database named @p1 has the identity @p2, it
	// throws errNotMade before any statement after it runs. The check and
	// the statements are one batch, one round trip: SQL Server runs DDL
	// on databases outside any transaction, so this is as close as the
	// check can get to the statements.
	guardSQL = `IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = @p1 AND ` + identityExpr + ` = @p2)
    THROW 51002, N'instancemgr: the database under this name is not the one it made', 1;
`
	// ownerLine is a reservation's line as it reads: NULL, a row from
	// before lines, is adminconsole's until Import settles it.
	ownerLine      = `COALESCE(line, 'adminconsole')`
	reserveSQL     = `INSERT INTO instancemgr.reservations (database_name, tenant, instance_id, line) VALUES (@p1, @p2, @p3, @p4)`
	reservationSQL = `SELECT database_name, tenant, instance_id, ` + ownerLine + `, state, COALESCE(database_identity, N'') FROM instancemgr.reservations WHERE database_name = @p1`
	setStateSQL    = `UPDATE instancemgr.reservations SET state = @p4, database_identity = COALESCE(NULLIF(@p5, N''), database_identity), updated_at = SYSUTCDATETIME()
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p6`
	markMakingSQL = `UPDATE instancemgr.reservations SET state = 'making', updated_at = SYSUTCDATETIME()
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p4 AND state = 'reserved'`
	releaseSQL = `DELETE FROM instancemgr.reservations
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p5
  AND (state = 'reserved' OR DB_ID(@p1) IS NULL) AND DB_ID(@p4) IS NULL`
	importSQL = `INSERT INTO instancemgr.reservations (database_name, tenant, instance_id, state, database_identity, line)
SELECT @p1, @p2, @p3, 'made', ` + identityExpr + `, @p4 FROM sys.databases WHERE name = @p1`
	// importGoneSQL takes back the reservation Import just made when the
	// database it recorded is no longer under its name (moved to trash or
	// renamed away after the insert read the catalog).
	importGoneSQL = `DELETE FROM instancemgr.reservations
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p4 AND state = 'made'
  AND NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = @p1 AND ` + identityExpr + ` = database_identity)`
	// settleLineSQL gives a reservation from before lines the line of the
	// ledger entry that names it: same name, tenant and instance id.
	settleLineSQL = `UPDATE instancemgr.reservations SET line = @p4
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND line IS NULL`
)

// batch is the statements as one batch, run in one round trip.
func batch(stmts []string) string { return strings.Join(stmts, ";\n") + ";" }

// guarded is the statements as one batch behind guardSQL.
func guarded(stmts []string) string { return guardSQL + batch(stmts) }

// dropSQL drops a database after ending its sessions.
func dropSQL(name string) ([]string, error) {
	q, err := quoteName(name)
	if err != nil {
		return nil, err
	}
	return []string{
		"ALTER DATABASE " + q + " SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"DROP DATABASE " + q,
	}, nil
}

func singleUserOption(terminate bool) string {
	if terminate {
		return "ROLLBACK IMMEDIATE"
	}
	return "NO_WAIT"
}
