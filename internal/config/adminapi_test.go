package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// adminApi's blanks take the client's own defaults and the Admin API's
// own token endpoint; a timeout below zero or no attempt is refused with
// its key.
func TestAdminAPISection(t *testing.T) {
	c, err := Load(write(t, strings.Replace(valid, `"http://127.0.0.1:8089"`, `"http://127.0.0.1:8089/adminapi/"`, 1)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	a := c.AdminAPI
	if a.Flavor != FlavorAdminConsole || c.Manage() || c.Line() != provisioning.LineAdminConsole {
		t.Errorf("flavor %q, line %q, want adminconsole", a.Flavor, c.Line())
	}
	if a.TokenURL != "http://127.0.0.1:8089/adminapi"+adminapi.TokenPath || a.Timeout.D() != adminapi.DefaultTimeout || a.MaxAttempts != adminapi.DefaultMaxAttempts {
		t.Errorf("adminApi defaults: token URL %q, timeout %s, attempts %d, want the client's", a.TokenURL, a.Timeout.D(), a.MaxAttempts)
	}
	const creds = "clientId: w, clientSecret: s"
	testLoad(t, "tenants: {default: {master: \"host=h;database=postgres\", admin: \"host=h;database=a\", ods: \"host=h;database={0}\"}}\n", []loadCase{
		{"https", "adminApi: {baseUrl: https://admin, timeout: 1m, maxAttempts: 1, " + creds + "}", ""},
		{"no base URL", "adminApi: {" + creds + "}", "adminApi.baseUrl: is required"},
		{"not http", "adminApi: {baseUrl: ftp://admin, " + creds + "}", "adminApi.baseUrl: must be an http(s) URL"},
		{"token URL not http", "adminApi: {baseUrl: https://admin, tokenUrl: keycloak, " + creds + "}", "adminApi.tokenUrl: must be an http(s) URL"},
		{"no client", "adminApi: {baseUrl: https://admin, clientSecret: s}", "adminApi.clientId: is required"},
		{"no secret", "adminApi: {baseUrl: https://admin, clientId: w}", "adminApi.clientSecret: is required"},
		{"negative timeout", "adminApi: {baseUrl: https://admin, timeout: -1s, " + creds + "}", "adminApi.timeout: must be positive"},
		{"no attempt", "adminApi: {baseUrl: https://admin, maxAttempts: -1, " + creds + "}", "adminApi.maxAttempts: must be at least 1"},
	})
}

// adminApi.flavor manage needs no Admin API URL or credentials, but a key
// and the worker registering; it names with Ed-Fi's rule and protects
// Ed-Fi's templates by default.
func TestManageFlavor(t *testing.T) {
	const tenants = `
tenants:
  default:
    master: "host=localhost;port=5432;username=postgres;password=pw;database=postgres"
    admin: "postgres://postgres:pw@localhost:5432/EdFi_Admin"
    ods: "host=localhost;port=5432;username=postgres;password=pw;database={0}"
`
	c, err := Load(write(t, "adminApi: {flavor: manage}\nprovisioning: {encryptionKey: \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}"+tenants), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Manage() || c.Naming().Rule != provisioning.RuleAdminAPI || c.Provisioning.Templates["Sample"] != "Ods_Populated_Template" {
		t.Errorf("manage defaults: naming %q, templates %v", c.Provisioning.Naming, c.Provisioning.Templates)
	}
	if err := c.Guard().CheckDestructive("Ods_Populated_Template"); err == nil {
		t.Error("a manage template is not protected")
	}
	_, err = Load(write(t, "adminApi: {flavor: manage}\nprovisioning: {registration: adminapi}"+tenants), noEnv)
	for _, want := range []string{"provisioning.registration: must be worker", "provisioning.encryptionKey: is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	if _, err := Load(write(t, "adminApi: {flavor: nightly}"+tenants), noEnv); err == nil || !strings.Contains(err.Error(), `adminApi.flavor: "nightly" is neither`) {
		t.Errorf("an unknown flavor: %v", err)
	}
	key := "\nprovisioning: {encryptionKey: \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}"
	for _, tc := range []struct{ adminAPI, want string }{
		{"{flavor: manage, manageListen: ':8081'}", "adminApi.baseUrl: is required with adminApi.manageListen"},
		{"{flavor: manage, manageListen: ':8081', baseUrl: 'http://admin.district.example'}", "adminApi.baseUrl: must be https://"},
		{"{manageListen: ':8081', baseUrl: 'https://admin', clientId: a, clientSecret: b}", "adminApi.manageListen: is for adminApi.flavor manage"},
		{"{flavor: manage, publicBaseUrl: 'https://admin.example.org/?next=x'}", "adminApi.publicBaseUrl: \"https://admin.example.org/?next=x\" is not an http(s) URL"},
		{"{flavor: manage, publicBaseUrl: 'admin.example.org'}", "adminApi.publicBaseUrl: "},
		{"{flavor: manage, trustedProxies: ['10.0.0.0/8', 'proxy.internal']}", "adminApi.trustedProxies: \"proxy.internal\": not a CIDR"},
	} {
		if _, err := Load(write(t, "adminApi: "+tc.adminAPI+key+tenants), noEnv); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("adminApi %s: want %q in %v", tc.adminAPI, tc.want, err)
		}
	}
	if c, err := Load(write(t, "adminApi: {flavor: manage, manageListen: ':8081', baseUrl: 'https://admin.district.example'}"+key+tenants), noEnv); err != nil || c.AdminAPI.ManageListen != ":8081" {
		t.Errorf("manage routes served with an https Admin API: %v", err)
	}
	c, err = Load(write(t, "adminApi: {flavor: manage, manageListen: ':8081', baseUrl: 'https://admin.district.example', publicBaseUrl: 'https://admin.district.example/adminapi', trustedProxies: ['10.0.0.0/8', '192.0.2.7']}"+key+tenants), noEnv)
	if err != nil || !c.AdminAPI.Proxies().Trusts("192.0.2.7:443") || c.AdminAPI.Proxies().Trusts("192.0.2.8:443") {
		t.Errorf("a public base URL and trusted proxies: %v", err)
	}
}

// adminApi.manageTls serves the manage routes over HTTPS: a certificate and
// key, both readable, for a manageListen; the environment may name them.
func TestManageTLS(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope")
	cfg := func(adminAPI string) string {
		return `
adminApi: {flavor: manage, baseUrl: "https://admin.district.example"` + adminAPI + `}
provisioning: {encryptionKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
tenants:
  default: {master: "host=h;database=postgres", admin: "host=h;database=a", ods: "host=h;database={0}"}
`
	}
	for _, tt := range []struct {
		name, adminAPI string
		want           string // "" = valid
	}{
		{"both", `, manageListen: ":8443", manageTls: {certFile: "` + file + `", keyFile: "` + file + `"}`, ""},
		{"neither", `, manageListen: ":8080"`, ""},
		{"cert alone", `, manageListen: ":8443", manageTls: {certFile: "` + file + `"}`, "adminApi.manageTls.certFile and adminApi.manageTls.keyFile go together"},
		{"key alone", `, manageListen: ":8443", manageTls: {keyFile: "` + file + `"}`, "go together"},
		{"unreadable key", `, manageListen: ":8443", manageTls: {certFile: "` + file + `", keyFile: "` + missing + `"}`, "adminApi.manageTls.keyFile: " + missing + " cannot be read"},
		{"no listener", `, manageTls: {certFile: "` + file + `", keyFile: "` + file + `"}`, "adminApi.manageTls: is for adminApi.manageListen"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, cfg(tt.adminAPI)), noEnv)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
	env := map[string]string{"INSTANCEMGR_ADMINAPI_MANAGE_TLS_CERT_FILE": file, "INSTANCEMGR_ADMINAPI_MANAGE_TLS_KEY_FILE": file}
	c, err := Load(write(t, cfg(`, manageListen: ":8443"`)), func(k string) string { return env[k] })
	if err != nil || c.AdminAPI.ManageTLS != (ManageTLS{CertFile: file, KeyFile: file}) || !c.AdminAPI.ManageTLS.Enabled() {
		t.Fatalf("from the environment: %+v, %v", c.AdminAPI.ManageTLS, err)
	}
}
