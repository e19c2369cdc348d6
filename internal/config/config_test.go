package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func noEnv(string) string { return "" }

const valid = `
adminApi: {baseUrl: "http://127.0.0.1:8089", clientId: w, clientSecret: s}
tenants:
  default:
    master: "host=localhost;port=5432;username=postgres;password=pw;database=postgres"
    admin: "postgres://postgres:pw@localhost:5432/EdFi_Admin"
    ods: "host=localhost;port=5432;username=postgres;password=pw;database={0}"
`

func TestLoadDefaults(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminAPI.TokenURL != "http://127.0.0.1:8089/connect/token" {
		t.Errorf("token URL default %q", c.AdminAPI.TokenURL)
	}
	if c.NATS.AckWait.D() != 30*time.Second || c.Consumer.Heartbeat.D() != 10*time.Second {
		t.Errorf("ack wait %s heartbeat %s", c.NATS.AckWait.D(), c.Consumer.Heartbeat.D())
	}
	if sc := c.StreamConfig(); sc.BackOff[0] != sc.AckWait || sc.Replicas != 1 || sc.MaxDeliver != 10 {
		t.Errorf("stream config %+v", sc)
	}
	if c.Provisioning.NamePattern != "EdFi_Ods_{name}" || !c.RegisterEnabled() {
		t.Errorf("provisioning defaults %+v", c.Provisioning)
	}
}

func TestValidateReportsEveryProblemWithItsKey(t *testing.T) {
	body := `
adminApi: {baseUrl: "ftp://x", tokenUrl: "nope"}
nats: {url: "http://x", ackWait: 500ms, replicas: 9}
consumer: {concurrency: 0, heartbeat: 1h}
provisioning: {engine: oracle, template: "bad name", namePattern: "x"}
tenants:
  t1:
    master: "host=h;port=99999;database=postgres"
    admin: ""
    ods: "host=h;database=fixed"
`
	_, err := Load(write(t, body), noEnv)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{
		"adminApi.baseUrl", "adminApi.tokenUrl", "adminApi.clientId", "adminApi.clientSecret",
		"nats.url", "nats: replicas", "nats: ackWait", "consumer.heartbeat",
		"provisioning.engine", "provisioning.template", "provisioning.namePattern",
		"tenants.t1.master", "tenants.t1.admin: is required", "tenants.t1.ods: must hold {0}",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %q:\n%v", key, err)
		}
	}
}

func TestUnknownKeysAreRejected(t *testing.T) {
	_, err := Load(write(t, valid+"\nbridge: {pollIntervall: 5s}\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "pollIntervall") {
		t.Fatalf("misspelt key not reported: %v", err)
	}
}

func TestEnvironmentOverridesSecrets(t *testing.T) {
	body := `
adminApi: {baseUrl: "http://adminapi", clientId: w}
tenants:
  tenant-one: {master: "host=h;database=postgres", admin: "host=h;database=a", ods: "host=h;database={0}"}
`
	env := map[string]string{
		"INSTANCEMGR_ADMINAPI_CLIENT_SECRET": "from-env",
		"INSTANCEMGR_TENANT_TENANT_ONE_ODS":  "host=h;username=ods;password=p;database={0}",
	}
	c, err := Load(write(t, body), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminAPI.ClientSecret != "from-env" {
		t.Errorf("client secret not taken from the environment")
	}
	tg, err := c.Target("tenant-one")
	if err != nil {
		t.Fatal(err)
	}
	if tg.ODS.Username != "ods" {
		t.Errorf("tenant ODS string not taken from the environment: %s", tg.ODS.Redacted())
	}
}

func TestTargetFallsBackToDefaultOnly(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := c.Target("anyone")
	if err != nil || tg.Entry != DefaultTenant || tg.Admin.Database != "EdFi_Admin" {
		t.Fatalf("Target(anyone) = %+v, %v", tg, err)
	}
	delete(c.Tenants, DefaultTenant)
	c.Tenants["t1"] = Tenant{Master: "host=h;database=p", Admin: "host=h;database=a", ODS: "host=h;database={0}"}
	if _, err := c.Target("t2"); err == nil || !strings.Contains(err.Error(), `"t2"`) {
		t.Fatalf("unknown tenant resolved: %v", err)
	}
}

func TestErrorsNeverShowSecrets(t *testing.T) {
	body := strings.Replace(valid, "database={0}", "database=fixed", 1)
	body = strings.Replace(body, "clientSecret: s", "clientSecret: s", 1)
	_, err := Load(write(t, body), noEnv)
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "pw") {
		t.Fatalf("error shows a password: %v", err)
	}
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

// The guard protects every tenant's master and EdFi_Admin databases, not
// only those of the tenant a job is for.
func TestGuardProtectsEveryTenantsDatabases(t *testing.T) {
	c, err := Load(write(t, `
adminApi: {baseUrl: "http://127.0.0.1:8089", clientId: w, clientSecret: s}
provisioning: {namePattern: "{name}_ods", template: Tmpl_ods, protectedDatabases: [Keep_ods]}
tenants:
  t1: {master: "host=db1;database=postgres", admin: "host=db1;database=Admin_one_ods", ods: "host=db1;database={0}"}
  t2: {master: "host=db2;database=Master_two_ods", admin: "host=db2;database=Admin_two_ods", ods: "host=db2;database={0}"}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Guard()
	for _, db := range []string{"Admin_one_ods", "Admin_two_ods", "Master_two_ods", "Keep_ods", "Tmpl_ods"} {
		if err := g.CheckDestructive(db); err == nil {
			t.Errorf("%q is not protected", db)
		}
	}
	if err := g.CheckDestructive("District_ods"); err != nil {
		t.Errorf("an instance database is refused: %v", err)
	}
}
