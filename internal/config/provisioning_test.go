package config

import (
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// provisioning's blanks take the engine's and the naming's own defaults;
// each setting that cannot work is refused with its key.
func TestProvisioningSection(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Provisioning
	if p.Engine != EnginePostgres || p.Template != provisioning.ManageTemplates["Minimal"] || p.NamePattern != provisioning.DefaultNamePattern ||
		p.Naming != provisioning.RulePattern || p.Templates != nil || p.Registration != RegistrationWorker ||
		p.Sessions != string(postgres.SessionsTerminate) || p.SessionWait.D() != postgres.DefaultSessionWait || p.AllowDelete {
		t.Errorf("provisioning defaults %+v", p)
	}
	if k, err := c.Key(); k != nil || err != nil {
		t.Errorf("no key configured: %v, %v", k, err)
	}
	const key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	testLoad(t, valid, []loadCase{
		{"set", "provisioning: {sessions: wait, sessionWait: 1m, registration: adminapi, allowDelete: true, protectedDatabases: [EdFi_Security]}", ""},
		{"an unknown engine", "provisioning: {engine: oracle}", `provisioning.engine: "oracle" is neither postgres nor sqlserver`},
		{"a key", "provisioning: {encryptionKey: " + key + "}", ""},
		{"a key that is not one", "provisioning: {encryptionKey: c2hvcnQ=}", "provisioning.encryptionKey: "},
		{"a key the Admin API would not use", "provisioning: {registration: adminapi, encryptionKey: " + key + "}", "provisioning.encryptionKey: is for registration: worker"},
		{"an unknown registration", "provisioning: {registration: both}", `provisioning.registration: "both" is neither worker nor adminapi`},
		{"the old switch", "provisioning: {register: true}", "provisioning.register: is replaced by provisioning.registration"},
		{"sessions", "provisioning: {sessions: kill}", `provisioning.sessions: "kill" is neither terminate nor wait`},
		{"session wait", "provisioning: {sessionWait: -1s}", "provisioning.sessionWait: must be positive"},
		{"copy strategy", "provisioning: {copyStrategy: clone}", `provisioning.copyStrategy: "clone" is not wal_log or file_copy`},
		{"templates of the other flavor", "provisioning: {templates: {Minimal: Ods_Minimal_Template}}", "provisioning.templates: is for adminApi.flavor manage"},
		{"an unknown naming rule", "provisioning: {naming: random}", "provisioning.naming: "},
	})
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
