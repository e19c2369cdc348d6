package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/provisioning"
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
	if c.Provisioning.NamePattern != "EdFi_Ods_{name}" || c.Provisioning.Registration != RegistrationWorker {
		t.Errorf("provisioning defaults %+v", c.Provisioning)
	}
	if c.Bridge.Concurrency != 16 || c.Bridge.PollInterval.D() != 10*time.Second {
		t.Errorf("bridge defaults %+v", c.Bridge)
	}
	if c.Provisioning.CopyStrategy != "" || c.Provisioning.CopiesAtOnce != c.Consumer.Concurrency {
		t.Errorf("copy defaults: strategy %q (want the server's default), %d copies at once with consumer.concurrency %d", c.Provisioning.CopyStrategy, c.Provisioning.CopiesAtOnce, c.Consumer.Concurrency)
	}
}

// copyStrategy auto, and its maximum age, are refused with what to do
// instead: no job measures copies any more.
func TestCopyStrategyAutoIsGone(t *testing.T) {
	for _, body := range []string{"provisioning: {copyStrategy: auto}\n", "provisioning: {copyStrategy: wal_log, copyStrategyMaxAge: 24h}\n"} {
		_, err := Load(write(t, valid+body), noEnv)
		if err == nil || !strings.Contains(err.Error(), "calibrate") && !strings.Contains(err.Error(), "remove it") {
			t.Errorf("%q: %v", body, err)
		}
	}
	for _, ok := range []string{"wal_log", "file_copy"} {
		if _, err := Load(write(t, valid+"provisioning: {copyStrategy: "+ok+"}\n"), noEnv); err != nil {
			t.Errorf("copyStrategy %s: %v", ok, err)
		}
	}
}

// copiesAtOnce is the replicas' copies together, what calibrate measures
// at; by default one replica's.
func TestCopiesAtOnce(t *testing.T) {
	c, err := Load(write(t, valid+"consumer: {concurrency: 3}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provisioning.CopiesAtOnce != 3 {
		t.Errorf("copiesAtOnce default %d, want consumer.concurrency 3", c.Provisioning.CopiesAtOnce)
	}
	c, err = Load(write(t, valid+"consumer: {concurrency: 3}\nprovisioning: {copiesAtOnce: 12}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provisioning.CopiesAtOnce != 12 {
		t.Errorf("copiesAtOnce %d, want 12", c.Provisioning.CopiesAtOnce)
	}
	for _, bad := range []string{"-1", "5000"} {
		_, err := Load(write(t, valid+"provisioning: {copiesAtOnce: "+bad+"}\n"), noEnv)
		if err == nil || !strings.Contains(err.Error(), "provisioning.copiesAtOnce") {
			t.Errorf("copiesAtOnce %s: %v", bad, err)
		}
	}
}

func TestValidateReportsEveryProblemWithItsKey(t *testing.T) {
	body := `
adminApi: {baseUrl: "ftp://x", tokenUrl: "nope"}
nats: {url: "http://x", ackWait: 500ms, replicas: 9}
consumer: {concurrency: 0, heartbeat: 1h}
bridge: {concurrency: 300}
provisioning: {engine: oracle, template: "bad name", namePattern: "x"}
logLevel: chatty
logFormat: xml
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
		"nats.url", "nats: replicas", "nats: ackWait", "consumer.heartbeat", "bridge.concurrency",
		"provisioning.engine", "provisioning.template", "provisioning.namePattern",
		"tenants.t1.master", "tenants.t1.admin: is required", "tenants.t1.ods: must hold {0}",
		`logLevel: "chatty"`, `logFormat: "xml"`,
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

func TestTargetFallsBackToDefaultOnly(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	servers, err := c.Servers("anyone")
	if err != nil || servers.Entry != DefaultTenant || servers.Admin.Database != "EdFi_Admin" {
		t.Fatalf("Target(anyone) = %+v, %v", servers, err)
	}
	delete(c.Tenants, DefaultTenant)
	c.Tenants["t1"] = TenantEntry{Master: "host=h;database=p", Admin: "host=h;database=a", ODS: "host=h;database={0}"}
	if _, err := c.Servers("t2"); err == nil || !strings.Contains(err.Error(), `"t2"`) {
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

func TestNATSAuthAndTLSSettings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(nats string) string {
		return `
adminApi: {baseUrl: "https://a", clientId: w, clientSecret: s}
nats: {url: "nats://nats.example.org:4222"` + nats + `}
tenants:
  default: {master: "host=h;database=postgres", admin: "host=h;database=a", ods: "host=h;database={0}"}
`
	}
	tests := []struct {
		name, nats string
		want       string // "" = valid
	}{
		{"creds", `, credsFile: "` + file + `"`, ""},
		{"nkey", `, nkeyFile: "` + file + `"`, ""},
		{"user and password", `, user: u, password: p`, ""},
		{"token", `, token: t`, ""},
		{"two ways", `, token: t, nkeyFile: "` + file + `"`, "one way to authenticate"},
		{"user alone", `, user: u`, "go together"},
		{"missing file", `, credsFile: "` + filepath.Join(dir, "nope") + `"`, "nats.credsFile"},
		{"tls", `, tls: {caFile: "` + file + `", certFile: "` + file + `", keyFile: "` + file + `"}`, ""},
		{"cert alone", `, tls: {certFile: "` + file + `"}`, "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, cfg(tt.nats)), noEnv)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
	c, err := Load(write(t, cfg("")), func(k string) string { return map[string]string{"INSTANCEMGR_NATS_TOKEN": "from-env"}[k] })
	if err != nil || c.NATS.Token != "from-env" {
		t.Fatalf("token from the environment: %q, %v", c.NATS.Token, err)
	}
	_, warnings := c.TransportNotes()
	if len(warnings) != 1 || !strings.Contains(warnings[0], "nats nats.example.org") {
		t.Fatalf("warnings %v, want one for plain nats:// off this machine", warnings)
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
