package sqlserver_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/internal/testenv/mssqltest"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// sqlServer returns the SQL Server the tests may use
// (INSTANCEMGR_TEST_SQLSERVER, or a container where Docker is available),
// or skips with the reason: there is none on this project's own machines.
func sqlServer(t *testing.T) string {
	t.Helper()
	return mssqltest.ConnString(t)
}

// The SQL Server engine passes the same conformance suite as the
// PostgreSQL one, on a real server, restoring from a backup the test makes.
func TestEngineConforms(t *testing.T) {
	cs := sqlServer(t)
	provisioningtest.Engine(t, func(t *testing.T) provisioningtest.EngineSetup {
		ctx := context.Background()
		db, err := sql.Open("sqlserver", cs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		prefix := "it" + hex.EncodeToString(b)
		template := prefix + "_tmpl"
		var dataDir string
		if err := db.QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(4000))`).Scan(&dataDir); err != nil {
			t.Fatal(err)
		}
		bak := dataDir + "/" + template + ".bak"
		for _, stmt := range []string{"CREATE DATABASE [" + template + "]", "BACKUP DATABASE [" + template + "] TO DISK = @p1 WITH INIT"} {
			if _, err := db.ExecContext(ctx, stmt, bak); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { dropPrefixed(t, db, prefix) })
		e, err := sqlserver.NewEngine(ctx, cs, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		e.Backup = bak
		e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: prefix + "_{name}"}, Protected: []string{template}}
		return provisioningtest.EngineSetup{Engine: e, Template: template, Prefix: prefix, MakeForeign: func(t *testing.T, name string) {
			if _, err := db.ExecContext(ctx, "CREATE DATABASE ["+name+"]"); err != nil {
				t.Fatal(err)
			}
		}}
	})
}

func dropPrefixed(t *testing.T, db *sql.DB, prefix string) {
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sys.databases WHERE name LIKE @p1 + '%'`, prefix)
	if err != nil {
		t.Error(err)
		return
	}
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	rows.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, "ALTER DATABASE ["+n+"] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE ["+n+"]"); err != nil {
			t.Errorf("drop %s: %v", n, err)
		}
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM instancemgr.reservations WHERE database_name LIKE @p1 + '%'`, prefix); err != nil {
		t.Errorf("remove test reservations: %v", err)
	}
}

// The SQL Server registry passes the registry conformance suite, in both
// registration modes, on an EdFi_Admin loaded from the SQL Server fixture.
func TestRegistryConforms(t *testing.T) {
	cs := sqlServer(t)
	for _, adminAPI := range []bool{false, true} {
		provisioningtest.Registry(t, func(t *testing.T) provisioning.Registry {
			ctx := context.Background()
			db, err := sql.Open("sqlserver", cs)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			b := make([]byte, 4)
			_, _ = rand.Read(b)
			prefix := "it" + hex.EncodeToString(b)
			name := prefix + "_admin"
			if _, err := db.ExecContext(ctx, "CREATE DATABASE ["+name+"]"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dropPrefixed(t, db, prefix) })
			conn, err := connstr.ParseSQLServer(cs)
			if err != nil {
				t.Fatal(err)
			}
			conn.Database = name
			admin, err := sql.Open("sqlserver", conn.ADONet())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Close() })
			if _, err := admin.ExecContext(ctx, testenv.AdminFixtureSQLServer()); err != nil {
				t.Fatalf("load the SQL Server EdFi_Admin fixture: %v", err)
			}
			r, err := sqlserver.NewRegistry(ctx, conn.ADONet(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			r.AdminAPIRegisters = adminAPI
			return r
		})
	}
}
