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

// loadCase is what a section adds to a configuration, and what Load must
// say of it: "" for valid, else a text its error holds.
type loadCase struct{ name, yaml, want string }

// testLoad loads base with each case's YAML added.
func testLoad(t *testing.T, base string, cases []loadCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, base+tt.yaml+"\n"), noEnv)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}
