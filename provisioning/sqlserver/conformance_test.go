package sqlserver_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/internal/testenv/mssqltest"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// The SQL Server engine passes the same conformance suite as the
// PostgreSQL one, on a real server (INSTANCEMGR_TEST_SQLSERVER, or a
// container where Docker answers), restoring from a backup the test makes.
func TestEngineConforms(t *testing.T) {
	mssqltest.ConnString(t) // skips here, before the suite's subtests
	provisioningtest.Engine(t, func(t *testing.T) provisioningtest.EngineSetup {
		s := mssqltest.Start(t)
		template := s.Prefix + "_tmpl"
		bak := s.Backup(t, template)
		e, err := sqlserver.NewEngine(context.Background(), s.ConnString, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		e.Backup = bak
		e.Guard = &provisioning.Guard{Naming: provisioning.Naming{Pattern: s.Prefix + "_{name}", MaxBytes: sqlserver.MaxNameChars}, Protected: []string{template}}
		return provisioningtest.EngineSetup{Engine: e, Template: template, Prefix: s.Prefix,
			MakeForeign: func(t *testing.T, name string) { s.Exec(t, "CREATE DATABASE ["+name+"]") },
			DropForeign: func(t *testing.T, name string) { s.Exec(t, "DROP DATABASE ["+name+"]") },
			Open: func(t *testing.T, name string) error {
				db, err := sql.Open("sqlserver", s.For(name))
				if err != nil {
					return err
				}
				defer db.Close()
				return db.PingContext(context.Background())
			}}
	})
}

// The SQL Server registry passes the registry conformance suite, in both
// registration modes, on an EdFi_Admin loaded from the SQL Server fixture.
func TestRegistryConforms(t *testing.T) {
	mssqltest.ConnString(t)
	for _, adminAPI := range []bool{false, true} {
		provisioningtest.Registry(t, func(t *testing.T) provisioning.Registry {
			s := mssqltest.Start(t)
			name := s.Prefix + "_admin"
			s.Exec(t, "CREATE DATABASE ["+name+"]")
			admin, err := sql.Open("sqlserver", s.For(name))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Close() })
			if _, err := admin.ExecContext(context.Background(), testenv.AdminFixtureSQLServer()); err != nil {
				t.Fatalf("load the SQL Server EdFi_Admin fixture: %v", err)
			}
			r, err := sqlserver.NewRegistry(context.Background(), s.For(name), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.Close)
			r.AdminAPIRegisters = adminAPI
			return r
		})
	}
}
