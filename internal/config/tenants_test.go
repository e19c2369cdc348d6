package config

import (
	"strings"
	"testing"
)

// A configuration needs a tenant entry, and each entry its three
// connection strings in its engine's syntax.
func TestTenantsSection(t *testing.T) {
	base := `adminApi: {baseUrl: "https://a", clientId: w, clientSecret: s}` + "\n"
	testLoad(t, base, []loadCase{
		{"none", "", `tenants: at least one tenant (or "default") is required`},
		{"an empty list", "tenants: {}", "tenants: at least one tenant"},
		{"a named tenant alone", `tenants: {d9: {master: "host=h;database=postgres", admin: "host=h;database=a", ods: "postgres://h/{0}"}}`, ""},
		{"no master", `tenants: {d9: {admin: "host=h;database=a", ods: "host=h;database={0}"}}`, "tenants.d9.master: is required"},
		{"a master that does not parse", `tenants: {d9: {master: "host=h;port=x", admin: "host=h;database=a", ods: "host=h;database={0}"}}`, "tenants.d9.master: "},
		{"SQL Server settings on PostgreSQL", `tenants: {d9: {create: copy, master: "host=h;database=postgres", admin: "host=h;database=a", ods: "host=h;database={0}"}}`, "tenants.d9.create: create and backup are for SQL Server tenants"},
	})
}

// Tenant entries on one server need {tenant} in the pattern and one
// maintenance database; entries on different servers need neither.
func TestTenantsSharingAServer(t *testing.T) {
	entries := func(pattern, master2 string) string {
		return `
adminApi: {baseUrl: "http://127.0.0.1:8089", clientId: w, clientSecret: s}
provisioning: {namePattern: "` + pattern + `"}
tenants:
  t1: {master: "host=db1;database=postgres", admin: "host=db1;database=EdFi_Admin_t1", ods: "host=db1;database={0}"}
  t2: {master: "` + master2 + `", admin: "host=db1;database=EdFi_Admin_t2", ods: "host=db1;database={0}"}
`
	}
	tests := []struct {
		name, pattern, master2 string
		wantKeys               []string
	}{
		{"shared, no tenant in the pattern", "EdFi_Ods_{name}", "host=DB1;port=5432;database=postgres", []string{"provisioning.namePattern"}},
		{"shared, two maintenance databases", "EdFi_Ods_{tenant}_{name}", "host=db1;database=template1", []string{"maintenance databases"}},
		{"shared, well set up", "EdFi_Ods_{tenant}_{name}", "host=db1;database=postgres", nil},
		{"two servers", "EdFi_Ods_{name}", "host=db2;database=postgres", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, entries(tt.pattern, tt.master2)), noEnv)
			if len(tt.wantKeys) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, k := range tt.wantKeys {
				if err == nil || !strings.Contains(err.Error(), k) {
					t.Errorf("error %v does not name %q", err, k)
				}
			}
		})
	}
}

// A tenant says which engine serves it; PostgreSQL and SQL Server tenants
// live in one configuration, each with its own connection syntax.
func TestTenantsOnBothEngines(t *testing.T) {
	body := func(sql string) string {
		return `
adminApi: {baseUrl: "https://a", clientId: w, clientSecret: s}
tenants:
  pg: {master: "host=db1;database=postgres", admin: "host=db1;database=EdFi_Admin", ods: "host=db1;database={0}"}
  ms: {` + sql + `}
`
	}
	good := `engine: sqlserver, backup: "/var/opt/mssql/backup/Ods_Minimal_Template.bak",
    master: "Server=sql1,1433;Database=instancemgr;User Id=im;Password=p", admin: "Server=sql1;Database=EdFi_Admin_ms;User Id=im;Password=p",
    ods: "Server=sql1;Database={0};User Id=ods;Password=q"`
	c, err := Load(write(t, body(good)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := c.Servers("ms")
	if err != nil || ms.Engine != EngineSQLServer || ms.SQLServer == nil || ms.SQLServer.Backup == "" {
		t.Fatalf("sql server tenant: %+v, %v", ms, err)
	}
	if got := ms.SQLServer.ODS.ForDatabase("EdFi_Ods_X").ADONet(); !strings.Contains(got, "Database=EdFi_Ods_X") || !strings.Contains(got, "Server=sql1") {
		t.Fatalf("ODS string %q", got)
	}
	if pg, _ := c.Servers("pg"); pg.Engine != EnginePostgres || pg.SQLServer != nil {
		t.Fatalf("postgres tenant: %+v", pg)
	}
	if err := c.Guard().CheckDestructive("EdFi_Admin_ms"); err == nil {
		t.Fatal("the SQL Server tenant's EdFi_Admin is not protected")
	}
	for _, bad := range []struct{ sql, key string }{
		{`engine: sqlserver, master: "Server=s;Database=m", admin: "Server=s;Database=a", ods: "Server=s;Database={0}"`, "tenants.ms.backup"},
		{`engine: sqlserver, create: clone, master: "Server=s;Database=m", admin: "Server=s;Database=a", ods: "Server=s;Database={0}"`, "tenants.ms.create"},
		{`engine: sqlserver, create: copy, master: "Server=s;Database=m", admin: "Server=s;Database=a", ods: "Server=s;Database=fixed"`, "tenants.ms.ods"},
		{`engine: oracle, master: "host=h;database=m", admin: "host=h;database=a", ods: "host=h;database={0}"`, "tenants.ms.engine"},
		{`backup: x.bak, master: "host=h;database=m", admin: "host=h;database=a", ods: "host=h;database={0}"`, "tenants.ms.create"},
	} {
		if _, err := Load(write(t, body(bad.sql)), noEnv); err == nil || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%s: %v, want an error naming %s", bad.sql, err, bad.key)
		}
	}
}
