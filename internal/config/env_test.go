package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvironmentOverridesSecrets(t *testing.T) {
	body := `
adminApi: {baseUrl: "https://adminapi", clientId: w}
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
	servers, err := c.Servers("tenant-one")
	if err != nil {
		t.Fatal(err)
	}
	if servers.ODS.Username != "ods" {
		t.Errorf("tenant ODS string not taken from the environment: %s", servers.ODS.Redacted())
	}
}

// Secrets mounted as files (Docker and Kubernetes secrets) are read through
// the _FILE variables, a trailing newline dropped; Ed-Fi's own name for the
// encryption key is accepted; a missing file or both forms at once is an
// error naming the variable.
func TestSecretsFromFiles(t *testing.T) {
	body := `
adminApi: {baseUrl: "https://adminapi", clientId: w}
tenants:
  tenant-one: {master: "host=h;database=postgres", admin: "host=h;database=a", ods: "host=h;database={0}"}
`
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGU=" // 32 bytes
	env := map[string]string{
		"INSTANCEMGR_ADMINAPI_CLIENT_SECRET_FILE": file("secret", "from-a-file\n"),
		"INSTANCEMGR_NATS_USER":                   "worker",
		"INSTANCEMGR_NATS_PASSWORD_FILE":          file("nats", "nats-pass\r\n"),
		"INSTANCEMGR_TENANT_TENANT_ONE_ODS_FILE":  file("ods", "host=h;username=ods;password=p;database={0}\n"),
		"ODS_CONNECTION_STRING_ENCRYPTION_KEY":    key,
	}
	lookup := func(k string) string { return env[k] }
	c, err := Load(write(t, body), lookup)
	if err != nil {
		t.Fatal(err)
	}
	servers, err := c.Servers("tenant-one")
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminAPI.ClientSecret != "from-a-file" || c.NATS.Password != "nats-pass" || servers.ODS.Username != "ods" || c.Provisioning.EncryptionKey != key {
		t.Errorf("secrets from files: client %q, nats %q, ods user %q, key %q", c.AdminAPI.ClientSecret, c.NATS.Password, servers.ODS.Username, c.Provisioning.EncryptionKey)
	}

	env["INSTANCEMGR_ADMINAPI_CLIENT_SECRET"] = "also-set"
	env["INSTANCEMGR_NATS_PASSWORD_FILE"] = filepath.Join(dir, "missing")
	_, err = Load(write(t, body), lookup)
	if err == nil || !strings.Contains(err.Error(), "INSTANCEMGR_ADMINAPI_CLIENT_SECRET and INSTANCEMGR_ADMINAPI_CLIENT_SECRET_FILE are both set") ||
		!strings.Contains(err.Error(), "INSTANCEMGR_NATS_PASSWORD_FILE") {
		t.Fatalf("conflicting and missing secret files: %v", err)
	}
}

// Any key can be set by its path (YAML keys joined by "__", any case; a
// tenant's name as written), also from a file; a path that names no setting
// is an error naming the variable.
func TestEveryKeyFromTheEnvironment(t *testing.T) {
	body := `
adminApi: {baseUrl: "https://adminapi", clientId: w, clientSecret: s}
tenants:
  default: {master: "host=h;database=postgres", admin: "host=h;database=a", ods: "host=h;database={0}"}
`
	master := filepath.Join(t.TempDir(), "master")
	if err := os.WriteFile(master, []byte("host=d9;username=im;password=p;database=postgres\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := []string{
		"INSTANCEMGR_NATS__ACKWAIT=45s",
		"INSTANCEMGR_NATS__BACKOFF=45s,90s",
		"INSTANCEMGR_PROVISIONING__ALLOWDELETE=true",
		"INSTANCEMGR_CONSUMER__CONCURRENCY=7",
		"INSTANCEMGR_TENANTS__district9__MASTER_FILE=" + master,
		"INSTANCEMGR_TENANTS__district9__ADMIN=host=d9;database=EdFi_Admin",
		"INSTANCEMGR_TENANTS__district9__ODS=host=d9;database={0}",
		"INSTANCEMGR_TENANTS__DEFAULT__ADMIN=host=h;database=Other_Admin",
		"INSTANCEMGR_NAMEPATTERN_UNRELATED=x", // not a path variable
	}
	c, err := LoadEnviron(write(t, body), environ)
	if err != nil {
		t.Fatal(err)
	}
	d9, err := c.Servers("district9")
	if err != nil {
		t.Fatal(err)
	}
	def, err := c.Servers("default")
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.AckWait.D() != 45*time.Second || len(c.NATS.BackOff) != 2 || c.NATS.BackOff[1].D() != 90*time.Second ||
		!c.Provisioning.AllowDelete || c.Consumer.Concurrency != 7 ||
		d9.Master.Host != "d9" || d9.Master.Username != "im" || d9.Admin.Database != "EdFi_Admin" || def.Admin.Database != "Other_Admin" {
		t.Errorf("path variables not applied: nats %+v, provisioning %+v, consumer %+v, district9 %s, default admin %s",
			c.NATS, c.Provisioning, c.Consumer, d9.Master.Redacted(), def.Admin.Redacted())
	}

	_, err = LoadEnviron(write(t, body), []string{"INSTANCEMGR_NATS__ACKWIAT=45s", "INSTANCEMGR_CONSUMER__CONCURRENCY=many"})
	if err == nil || !strings.Contains(err.Error(), "INSTANCEMGR_NATS__ACKWIAT: no setting") || !strings.Contains(err.Error(), "INSTANCEMGR_CONSUMER__CONCURRENCY") {
		t.Fatalf("bad path variables: %v", err)
	}
}
