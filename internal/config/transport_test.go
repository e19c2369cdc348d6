package config

import (
	"strings"
	"testing"
)

// Plain transport needs an explicit setting: http:// to an Admin API off
// this machine, and (as a default) PostgreSQL without verified TLS.
func TestInsecureTransportNeedsAnExplicitSetting(t *testing.T) {
	base := func(adminURL, extra string) string {
		return `
adminApi: {baseUrl: "` + adminURL + `", clientId: w, clientSecret: s` + extra + `}
tenants:
  default:
    master: "host=db.example.org;database=postgres"
    admin: "host=db.example.org;database=EdFi_Admin;SSL Mode=Disable"
    ods: "host=db.example.org;database={0};SSL Mode=Require"
  local:
    master: "host=127.0.0.1;database=postgres"
    admin: "postgres://postgres@localhost/EdFi_Admin_local?sslmode=verify-ca"
    ods: "host=127.0.0.1;database={0}"
`
	}
	for url, ok := range map[string]bool{
		"https://adminapi.example.org": true,
		"http://adminapi.example.org":  false,
		"http://127.0.0.1:8089":        true,
		"http://localhost:8089":        true,
		"http://[::1]:8089":            true,
	} {
		_, err := Load(write(t, base(url, "")), noEnv)
		if (err == nil) != ok {
			t.Errorf("%s: %v, want accepted=%v", url, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "adminApi.baseUrl: must be https://") {
			t.Errorf("%s: error %v does not say why", url, err)
		}
	}
	if _, err := Load(write(t, base("http://adminapi.example.org", ", allowInsecureHttp: true")), noEnv); err != nil {
		t.Errorf("allowInsecureHttp: %v", err)
	}

	c, err := Load(write(t, base("https://adminapi.example.org", "")), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	servers, _ := c.Servers("default")
	if servers.Master.SSLMode() != "verify-full" || !strings.Contains(servers.Master.PgxConnString(), "sslmode='verify-full'") {
		t.Errorf("master off loopback with no SSL mode: %q, want verify-full", servers.Master.SSLMode())
	}
	if servers.Admin.SSLMode() != "disable" || servers.ODS.SSLMode() != "require" {
		t.Errorf("explicit modes not kept: admin %q, ods %q", servers.Admin.SSLMode(), servers.ODS.SSLMode())
	}
	local, _ := c.Servers("local")
	if local.Master.SSLMode() != "" || local.Admin.SSLMode() != "verify-ca" {
		t.Errorf("loopback: master %q admin %q", local.Master.SSLMode(), local.Admin.SSLMode())
	}
	notes, warnings := c.TransportNotes()
	if len(notes)+len(warnings) != 5 { // nats, and master and admin of two tenants
		t.Errorf("%d notes and %d warnings, want one per connection: %v %v", len(notes), len(warnings), notes, warnings)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "tenants.default.admin") {
		t.Errorf("warnings %v, want one for the plain admin connection off loopback", warnings)
	}
	for _, line := range append(notes, warnings...) {
		if strings.Contains(line, "password") {
			t.Errorf("a transport note shows more than it should: %q", line)
		}
	}
}
