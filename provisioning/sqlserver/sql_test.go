package sqlserver

import (
	"errors"
	"strings"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Names are quoted as QUOTENAME quotes them, so a hostile name is one
// identifier and nothing else runs; names SQL Server would refuse are
// refused first.
func TestStatementsQuoteEveryName(t *testing.T) {
	tests := []struct {
		name, want string
	}{
		{"EdFi_Ods_District", "[EdFi_Ods_District]"},
		{"a]b", "[a]]b]"},
		{"x]; DROP DATABASE master; --", "[x]]; DROP DATABASE master; --]"},
		{`q"u'ote`, `[q"u'ote]`},
		{"Dіstrict ü", "[Dіstrict ü]"},
		{"[already]", "[[already]]]"},
	}
	for _, tt := range tests {
		got, err := quoteName(tt.name)
		if err != nil || got != tt.want {
			t.Errorf("quoteName(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", strings.Repeat("n", MaxNameChars+1), "nul\x00", "\xff"} {
		if _, err := quoteName(bad); !errors.Is(err, provisioning.ErrInvalidName) {
			t.Errorf("quoteName(%q): %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := quoteName(strings.Repeat("ü", MaxNameChars)); err != nil {
		t.Errorf("a name of %d characters (more bytes) is sysname's limit, not over it: %v", MaxNameChars, err)
	}

	rename, err := renameSQL("old]x", "new", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ALTER DATABASE [old]]x] SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"ALTER DATABASE [old]]x] MODIFY NAME = [new]",
		"ALTER DATABASE [new] SET MULTI_USER",
	}
	if strings.Join(rename, "\n") != strings.Join(want, "\n") {
		t.Errorf("rename:\n%s\nwant\n%s", strings.Join(rename, "\n"), strings.Join(want, "\n"))
	}
	if wait, _ := renameSQL("a", "b", false); wait[0] != "ALTER DATABASE [a] SET SINGLE_USER WITH NO_WAIT" {
		t.Errorf("rename with the wait policy: %q", wait[0])
	}
	drop, _ := dropSQL("d]")
	if drop[0] != "ALTER DATABASE [d]]] SET SINGLE_USER WITH ROLLBACK IMMEDIATE" || drop[1] != "DROP DATABASE [d]]]" {
		t.Errorf("drop: %q", drop)
	}
	// Renames and drops run as one batch behind the identity guard: the
	// check and the statements in one round trip, nothing run on a
	// database that is not the one the system made.
	wantGuard := "IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = @p1 AND CONCAT(database_id, N'@', CONVERT(nvarchar(33), create_date, 126)) = @p2)\n" +
		"    THROW 51002, N'instancemgr: the database under this name is not the one it made', 1;\n"
	if g := guarded(drop); g != wantGuard+"ALTER DATABASE [d]]] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;\nDROP DATABASE [d]]];" {
		t.Errorf("guarded drop:\n%s", g)
	}
	if g := guarded(rename); !strings.HasPrefix(g, wantGuard) || !strings.HasSuffix(g, "ALTER DATABASE [new] SET MULTI_USER;") {
		t.Errorf("guarded rename:\n%s", g)
	}
	if s, _ := renameScratchSQL("instancemgr_copy_ab", "n]"); s != "ALTER DATABASE [instancemgr_copy_ab] MODIFY NAME = [n]]]" {
		t.Errorf("publish a copy: %q", s)
	}
	if identitySQL != "SELECT CONCAT(database_id, N'@', CONVERT(nvarchar(33), create_date, 126)) FROM sys.databases WHERE name = @p1" {
		t.Errorf("identity: %s", identitySQL)
	}
	if s, _ := copySQL("new", "tmpl]"); s != "CREATE DATABASE [new] AS COPY OF [tmpl]]]" {
		t.Errorf("copy: %q", s)
	}
	if s, _ := restoreSQL("n", 2); s != "RESTORE DATABASE [n] FROM DISK = @p1 WITH MOVE @p2 TO @p3, MOVE @p4 TO @p5, RECOVERY" {
		t.Errorf("restore: %q", s)
	}
	if s, _ := renameFileSQL("n", "Ods_Minimal_Template", "n"); s != "ALTER DATABASE [n] MODIFY FILE (NAME = [Ods_Minimal_Template], NEWNAME = [n])" {
		t.Errorf("rename file: %q", s)
	}
	if _, err := renameSQL("ok", "", true); !errors.Is(err, provisioning.ErrInvalidName) {
		t.Errorf("rename to an empty name: %v", err)
	}
}

func TestFileListAndPlacement(t *testing.T) {
	cols := []string{"LogicalName", "PhysicalName", "Type", "FileGroupName", "Size"}
	rows := [][]any{
		{"EdFi_Ods_Minimal_Template", `C:\data\EdFi_Ods_Minimal_Template.mdf`, "D", "PRIMARY", int64(8)},
		{[]byte("EdFi_Ods_Minimal_Template_log"), `C:\data\x_log.ldf`, "L", nil, int64(8)},
		{"Second", `C:\data\x2.ndf`, "D", "PRIMARY", int64(8)},
	}
	files, err := fileList(cols, rows)
	if err != nil || len(files) != 3 || files[1].Logical != "EdFi_Ods_Minimal_Template_log" || files[1].Type != "L" {
		t.Fatalf("files %+v, %v", files, err)
	}
	if _, err := fileList([]string{"Name"}, rows); err == nil {
		t.Error("a result without LogicalName was read")
	}

	windows, err := placeFiles("EdFi_Ods_D", files, `D:\MSSQL\DATA\`, `E:\MSSQL\LOG`)
	if err != nil {
		t.Fatal(err)
	}
	wantWin := []placement{
		{"EdFi_Ods_Minimal_Template", "EdFi_Ods_D", `D:\MSSQL\DATA\EdFi_Ods_D.mdf`},
		{"EdFi_Ods_Minimal_Template_log", "EdFi_Ods_D_log", `E:\MSSQL\LOG\EdFi_Ods_D_log.ldf`},
		{"Second", "EdFi_Ods_D_2", `D:\MSSQL\DATA\EdFi_Ods_D_2.ndf`},
	}
	for i := range wantWin {
		if windows[i] != wantWin[i] {
			t.Errorf("windows %d: %+v, want %+v", i, windows[i], wantWin[i])
		}
	}
	linux, err := placeFiles("EdFi_Ods_D", files[:2], "/var/opt/mssql/data/", "/var/opt/mssql/log")
	if err != nil || linux[0].Path != "/var/opt/mssql/data/EdFi_Ods_D.mdf" || linux[1].Path != "/var/opt/mssql/log/EdFi_Ods_D_log.ldf" {
		t.Fatalf("linux %+v, %v", linux, err)
	}
	if _, err := placeFiles("x", files[:1], "/d", "/l"); err == nil {
		t.Error("a backup without a log file was placed")
	}
	if _, err := placeFiles("x", []backupFile{{"ft", "F"}, {"d", "D"}, {"l", "L"}}, "/d", "/l"); err == nil {
		t.Error("a full-text file was placed silently")
	}
	if _, err := placeFiles("x", files, "", "/l"); err == nil {
		t.Error("placed without a data directory")
	}
}

// Errors are classed by number, the way SQLSTATE classes are on
// PostgreSQL; every number the server sent counts, not only the last.
func TestErrorsAreClassifiedByNumber(t *testing.T) {
	e := func(n ...int32) error {
		all := make([]mssql.Error, len(n))
		for i, x := range n {
			all[i] = mssql.Error{Number: x, Message: "m"}
		}
		last := all[len(all)-1]
		last.All = all
		return last
	}
	tests := []struct {
		err  error
		want error
	}{
		{e(1205), provisioning.ErrTransient},
		{e(3702), provisioning.ErrTransient},
		{e(18456), provisioning.ErrTransient},
		{e(3201, 3013), provisioning.ErrRejected}, // cannot open the backup, then "terminating abnormally"
		{e(3021, 3013), provisioning.ErrTransient},
		{e(8152), provisioning.ErrRejected},
		{errors.New("connection reset"), provisioning.ErrTransient},
	}
	for _, tt := range tests {
		if got := classify(tt.err); !errors.Is(got, tt.want) {
			t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	for _, n := range []int32{102, 3013} {
		if got := classify(e(n)); errors.Is(got, provisioning.ErrTransient) || errors.Is(got, provisioning.ErrRejected) {
			t.Errorf("error %d classed as %v", n, got)
		}
	}
	if !hasNumber(e(5701, errDatabaseExists), errDatabaseExists) || !isUniqueViolation(e(2627)) || isUniqueViolation(e(547)) {
		t.Error("numbers not found in the chain")
	}
	if classify(nil) != nil {
		t.Error("nil classified")
	}
}

// What reconcile runs on SQL Server: bind parameters only, no connection
// string read, and a release that re-checks, in the statement that
// deletes, the state and that no database of the name exists.
func TestInventoryStatements(t *testing.T) {
	if !strings.Contains(tableExistsSQL, "OBJECT_ID(@p1, N'U')") {
		t.Errorf("table check: %s", tableExistsSQL)
	}
	if identitiesSQL != "SELECT name, CONCAT(database_id, N'@', CONVERT(nvarchar(33), create_date, 126)) FROM sys.databases" {
		t.Errorf("databases: %s", identitiesSQL)
	}
	if !strings.HasPrefix(reservationsSQL, "SELECT database_name, tenant, instance_id, COALESCE(line, 'adminconsole'), state, COALESCE(database_identity, N''), updated_at FROM instancemgr.reservations") {
		t.Errorf("reservations: %s", reservationsSQL)
	}
	for _, want := range []string{
		"DELETE FROM instancemgr.reservations",
		"database_name COLLATE Latin1_General_BIN2 = @p1", // exactly this name, as Release
		"tenant = @p2 AND instance_id = @p3",
		"state = 'reserved'",
		"DB_ID(@p1) IS NULL",
	} {
		if !strings.Contains(releaseUnusedSQL, want) {
			t.Errorf("release of an unused reservation lacks %q:\n%s", want, releaseUnusedSQL)
		}
	}
	if strings.Contains(strings.ToLower(statements.Rows), "connectionstring") {
		t.Errorf("the row listing reads connection strings: %s", statements.Rows)
	}
	if statements.Rows != "SELECT OdsInstanceId, Name, COALESCE(InstanceType, N'') FROM dbo.OdsInstances ORDER BY OdsInstanceId" {
		t.Errorf("rows: %s", statements.Rows)
	}
}

// The reservation statements keep the identity protocol's rules in SQL:
// an empty identity keeps the recorded one, making is set only from
// reserved, a reservation is kept while its scratch copy exists, and an
// imported one records the identity of the database under its name.
func TestReservationStatements(t *testing.T) {
	for _, c := range []struct{ name, stmt, want string }{
		{"set state", setStateSQL, "database_identity = COALESCE(NULLIF(@p5, N''), database_identity)"},
		{"set state", setStateSQL, "database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3"},
		{"mark making", markMakingSQL, "AND state = 'reserved'"},
		{"release", releaseSQL, "(state = 'reserved' OR DB_ID(@p1) IS NULL) AND DB_ID(@p4) IS NULL"},
		{"import", importSQL, "'made', " + identityExpr + ", @p4 FROM sys.databases WHERE name = @p1"},
		{"import gone", importGoneSQL, "state = 'made'\n  AND NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = @p1 AND " + identityExpr + " = database_identity)"},
	} {
		if !strings.Contains(c.stmt, c.want) {
			t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.stmt)
		}
	}
}

// Every reservation statement that acts for an owner matches its line too
// (a row from before lines, NULL, is adminconsole's), so a manage request
// never acts on what the adminconsole request of the same id reserved.
func TestReservationStatementsMatchTheLine(t *testing.T) {
	for _, c := range []struct{ name, stmt, want string }{
		{"reserve", reserveSQL, "(database_name, tenant, instance_id, line) VALUES (@p1, @p2, @p3, @p4)"},
		{"reservation", reservationSQL, "tenant, instance_id, COALESCE(line, 'adminconsole'), state"},
		{"set state", setStateSQL, "AND COALESCE(line, 'adminconsole') = @p6"},
		{"mark making", markMakingSQL, "AND COALESCE(line, 'adminconsole') = @p4"},
		{"release", releaseSQL, "AND COALESCE(line, 'adminconsole') = @p5"},
		{"release unused", releaseUnusedSQL, "AND COALESCE(line, 'adminconsole') = @p4"},
		{"import", importSQL, "database_identity, line)"},
		{"import", importSQL, ", @p4 FROM sys.databases"},
		{"import gone", importGoneSQL, "AND COALESCE(line, 'adminconsole') = @p4"},
		{"settle line", settleLineSQL, "SET line = @p4"},
		{"settle line", settleLineSQL, "database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND line IS NULL"},
		{"schema", reservationSchema, "IF COL_LENGTH(N'instancemgr.reservations', N'line') IS NULL\nALTER TABLE instancemgr.reservations ADD line varchar(16) NULL;"},
	} {
		if !strings.Contains(c.stmt, c.want) {
			t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.stmt)
		}
	}
}

// The ledger is keyed (line, tenant, instance_id): every statement on one
// entry names the line (the registry's, the last argument), a new ledger
// has the key, and an old one is migrated in ensureSchema's transaction:
// the column added, each entry given the manage line when the manage
// request of its id names its database and adminconsole otherwise, then
// NOT NULL, the key and the default. Statements that name the new column
// are EXEC'd, as SQL Server compiles a batch before running it.
func TestLedgerStatementsKeyTheLine(t *testing.T) {
	for _, c := range []struct{ name, stmt, want string }{
		{"lookup", statements.Lookup, "WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3"},
		{"lookup for update", statements.LookupForUpdate, "WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3"},
		{"records", statements.Records, "generation, line FROM instancemgr.instances"},
		{"insert", statements.InsertLedger, "(tenant, instance_id, ods_instance_id, database_name, name, line, generation) VALUES (@p1, @p2, @p3, @p4, @p5, @p6, @p7)"},
		{"move", statements.MoveLedger, "WHERE tenant = @p3 AND instance_id = @p4 AND line = @p5"},
		{"advance", statements.Advance, "WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3"},
		{"delete", statements.DeleteLedger, "WHERE tenant = @p1 AND instance_id = @p2 AND line = @p3"},
		{"new table", ledgerSchema, "line            varchar(16)   NOT NULL CONSTRAINT df_instancemgr_instances_line DEFAULT 'adminconsole'"},
		{"new table", ledgerSchema, "CONSTRAINT pk_instancemgr_instances PRIMARY KEY (line, tenant, instance_id)"},
		{"migration", ledgerSchema, "IF COL_LENGTH(N'instancemgr.instances', N'line') IS NULL\nALTER TABLE instancemgr.instances ADD line varchar(16) NULL;"},
		{"migration", ledgerSchema, "IF OBJECT_ID(N'adminapi.OdsInstanceManages', N'U') IS NOT NULL\nEXEC(N'UPDATE l SET line = ''manage'' FROM instancemgr.instances l\nWHERE l.line IS NULL AND EXISTS (SELECT 1 FROM adminapi.OdsInstanceManages m WHERE m.Id = l.instance_id AND m.DatabaseName = l.database_name)');"},
		{"migration", ledgerSchema, "EXEC(N'UPDATE instancemgr.instances SET line = ''adminconsole'' WHERE line IS NULL');"},
		{"migration", ledgerSchema, "EXEC(N'ALTER TABLE instancemgr.instances ALTER COLUMN line varchar(16) NOT NULL');"},
		{"migration", ledgerSchema, "ALTER TABLE instancemgr.instances DROP CONSTRAINT pk_instancemgr_instances;\n    EXEC(N'ALTER TABLE instancemgr.instances ADD CONSTRAINT pk_instancemgr_instances PRIMARY KEY (line, tenant, instance_id)');"},
		{"migration", ledgerSchema, "ADD CONSTRAINT df_instancemgr_instances_line DEFAULT ''adminconsole'' FOR line"},
	} {
		if !strings.Contains(c.stmt, c.want) {
			t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.stmt)
		}
	}
	// The manage line is inferred before the rest default to adminconsole,
	// and the key changes only once every entry has a line.
	order := []string{"ADD line varchar(16) NULL", "''manage''", "''adminconsole'' WHERE line IS NULL", "ALTER COLUMN line varchar(16) NOT NULL", "PRIMARY KEY (line, tenant, instance_id)');"}
	at := 0
	for _, step := range order {
		i := strings.Index(ledgerSchema[at:], step)
		if i < 0 {
			t.Fatalf("the migration does %q out of order:\n%s", step, ledgerSchema)
		}
		at += i
	}
	// Outside EXEC, the batch would not compile against an old table.
	for _, stmt := range strings.Split(ledgerLineMigration, "\n") {
		if strings.Contains(stmt, "SET line") && !strings.Contains(stmt, "EXEC(N'") {
			t.Errorf("a statement naming the new column is not EXEC'd: %s", stmt)
		}
	}
}

// A move to trash renames while the database is online and then takes it
// OFFLINE (closed to sysadmin too), behind the identity guard; a purge
// brings it ONLINE before the drop, or its files would stay on disk; due
// records are taken as FOR UPDATE SKIP LOCKED takes them.
func TestTrashStatements(t *testing.T) {
	move, err := trashSQL("EdFi_Ods_x]", "instancemgr_trash_ab")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ALTER DATABASE [EdFi_Ods_x]]] SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"ALTER DATABASE [EdFi_Ods_x]]] MODIFY NAME = [instancemgr_trash_ab]",
		"ALTER DATABASE [instancemgr_trash_ab] SET MULTI_USER",
		"ALTER DATABASE [instancemgr_trash_ab] SET OFFLINE WITH ROLLBACK IMMEDIATE",
	}
	if strings.Join(move, "\n") != strings.Join(want, "\n") {
		t.Errorf("move to trash:\n%s\nwant\n%s", strings.Join(move, "\n"), strings.Join(want, "\n"))
	}
	if b := guarded(move); !strings.HasPrefix(b, guardSQL) || strings.Index(b, "THROW") > strings.Index(b, "MODIFY NAME") {
		t.Errorf("the move is not behind the identity guard:\n%s", b)
	}
	purge, _ := purgeSQL("instancemgr_trash_ab")
	if strings.Join(purge, "\n") != "ALTER DATABASE [instancemgr_trash_ab] SET ONLINE\nALTER DATABASE [instancemgr_trash_ab] SET SINGLE_USER WITH ROLLBACK IMMEDIATE\nDROP DATABASE [instancemgr_trash_ab]" {
		t.Errorf("purge: %q", purge)
	}
	if closeIt, _ := offlineSQL("instancemgr_trash_ab"); closeIt[0] != "ALTER DATABASE [instancemgr_trash_ab] SET OFFLINE WITH ROLLBACK IMMEDIATE" {
		t.Errorf("finishing a move: %q", closeIt)
	}
	for _, c := range []struct{ name, sql, want string }{
		{"the record moves only from the made reservation of that identity", trashReservationSQL, "AND state = 'made' AND database_identity = @p4"},
		{"the record keeps the name it had", trashReservationSQL, "original_name = @p1"},
		{"a due record is taken as SKIP LOCKED", takeDueSQL, "WITH (UPDLOCK, READPAST, ROWLOCK)"},
		{"only due records", takeDueSQL, "purge_at <= SYSUTCDATETIME()"},
		{"purge now takes the record too", takeNamedSQL, "WITH (UPDLOCK, READPAST, ROWLOCK)"},
		{"sizes in 8-KB pages from master, which keeps an offline database's", trashListSQL, "SUM(CAST(mf.size AS bigint)) * 8192 FROM sys.master_files"},
		{"only the trashed record goes", forgetTrashSQL, "state = 'trashed'"},
		{"a delete asked again raises only the trashed record's generation, never lowers it", keepGenerationSQL, "state = 'trashed' AND original_name = @p1 AND tenant = @p2 AND instance_id = @p3"},
		{"the generation only rises", keepGenerationSQL, "COALESCE(generation, 0) < @p5"},
		{"a restore gives the reservation the generation after the delete's", restoreReservationSQL, "generation = COALESCE(generation, 0) + 1"},
		{"a delete reads the generation a restore gave the made reservation", restoredAtSQL, "state = 'made' AND database_identity = @p2"},
		{"the schema allows the state", reservationSchema, "'made', 'trashed'"},
	} {
		if !strings.Contains(c.sql, c.want) {
			t.Errorf("%s: %q lacks %q", c.name, c.sql, c.want)
		}
	}
}

// A restore renames the trash back in one batch behind the identity guard
// and a check that no database holds the name, both before the trash is
// brought online; the record moves only from the trashed record of that
// identity, and the name's key is held while the restore runs.
func TestRestoreStatements(t *testing.T) {
	back, err := restoreTrashSQL("instancemgr_trash_ab", "EdFi_Ods_x]")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"IF DB_ID(@p3) IS NOT NULL THROW 51003, N'instancemgr: a database holds the name to restore to', 1",
		"ALTER DATABASE [instancemgr_trash_ab] SET ONLINE",
		"ALTER DATABASE [instancemgr_trash_ab] SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"ALTER DATABASE [instancemgr_trash_ab] MODIFY NAME = [EdFi_Ods_x]]]",
		"ALTER DATABASE [EdFi_Ods_x]]] SET MULTI_USER",
	}
	if strings.Join(back, "\n") != strings.Join(want, "\n") {
		t.Errorf("restore:\n%s\nwant\n%s", strings.Join(back, "\n"), strings.Join(want, "\n"))
	}
	b := guarded(back)
	if !strings.HasPrefix(b, guardSQL) || strings.Index(b, "THROW 51003") > strings.Index(b, "SET ONLINE") {
		t.Errorf("the restore is not behind the identity guard and the name check:\n%s", b)
	}
	if errNameInUse != 51003 {
		t.Errorf("the name check throws 51003, the engine looks for %d", errNameInUse)
	}
	if reopen, _ := reopenSQL("n]"); strings.Join(reopen, "\n") != "ALTER DATABASE [n]]] SET MULTI_USER" {
		t.Errorf("finishing a restore: %q", reopen)
	}
	if _, err := restoreTrashSQL("instancemgr_trash_ab", ""); !errors.Is(err, provisioning.ErrInvalidName) {
		t.Errorf("restore to an empty name: %v", err)
	}
	for _, c := range []struct{ name, sql, want string }{
		{"the record moves only from the trashed record of that identity", restoreReservationSQL, "WHERE database_name = @p1 AND state = 'trashed' AND database_identity = @p3"},
		{"the record is made under the name, as before the delete", restoreReservationSQL, "SET database_name = @p2, state = 'made', original_name = NULL, deleted_at = NULL, purge_at = NULL"},
		{"a reservation of the name, in any letter case, is found and its key held", nameReservedSQL, "FROM instancemgr.reservations WITH (UPDLOCK, HOLDLOCK) WHERE database_name = @p1"},
		{"a database is found by identity under any name", nameOfSQL, "SELECT name FROM sys.databases WHERE " + identityExpr + " = @p1"},
	} {
		if !strings.Contains(c.sql, c.want) {
			t.Errorf("%s: %q lacks %q", c.name, c.sql, c.want)
		}
	}
	// The name check ignores letter case as the key does: the column's
	// collation, not a binary one.
	if strings.Contains(nameReservedSQL, "COLLATE") || !strings.Contains(reservationSchema, "database_name nvarchar(128) COLLATE Latin1_General_CI_AS NOT NULL CONSTRAINT pk_instancemgr_reservations PRIMARY KEY") {
		t.Errorf("the name check is not case-insensitive: %s", nameReservedSQL)
	}
}
