package config

import (
	"strings"
	"testing"
)

func TestServersFallBackToDefaultOnly(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	servers, err := c.Servers("anyone")
	if err != nil || servers.Entry != DefaultTenant || servers.Admin.Database != "EdFi_Admin" {
		t.Fatalf("Servers(anyone) = %+v, %v", servers, err)
	}
	delete(c.Tenants, DefaultTenant)
	c.Tenants["t1"] = TenantEntry{Master: "host=h;database=p", Admin: "host=h;database=a", ODS: "host=h;database={0}"}
	if _, err := c.Servers("t2"); err == nil || !strings.Contains(err.Error(), `"t2"`) {
		t.Fatalf("unknown tenant resolved: %v", err)
	}
}

// SQL Server connections of the worker's own encrypt by default off
// loopback; plain ones say so at start-up.
func TestSQLServerTransportDefault(t *testing.T) {
	c, err := Load(write(t, `
adminApi: {baseUrl: "https://a", clientId: w, clientSecret: s}
provisioning: {engine: sqlserver}
tenants:
  default: {create: copy, master: "Server=sql1\\\\inst,1433;Database=im;User Id=u;Password=p", admin: "Server=sql1;Database=a;Encrypt=false;User Id=u;Password=p", ods: "Server=sql1;Database={0}"}
  local: {create: copy, master: "Server=127.0.0.1;Database=im", admin: "Server=localhost;Database=a", ods: "Server=127.0.0.1;Database={0}"}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	servers, _ := c.Servers("default")
	if servers.SQLServer.Master.Encrypt() != "true" || servers.SQLServer.Admin.Encrypt() != "false" || servers.SQLServer.ODS.Encrypt() != "" {
		t.Fatalf("encrypt: master %q admin %q ods %q", servers.SQLServer.Master.Encrypt(), servers.SQLServer.Admin.Encrypt(), servers.SQLServer.ODS.Encrypt())
	}
	if local, _ := c.Servers("local"); local.SQLServer.Master.Encrypt() != "" {
		t.Fatalf("loopback got %q", local.SQLServer.Master.Encrypt())
	}
	_, warnings := c.TransportNotes()
	if len(warnings) != 1 || !strings.Contains(warnings[0], "tenants.default.admin") {
		t.Fatalf("warnings %v", warnings)
	}
}
