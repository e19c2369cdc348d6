package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Redacted, what `config check` prints, hides every secret, passwords
// inside connection strings and URLs too, and leaves the configuration it
// copies as it was.
func TestRedacted(t *testing.T) {
	const key = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGU="
	c, err := Load(write(t, `
adminApi: {baseUrl: "https://u:urlpass@admin.example.org", clientId: w, clientSecret: clientsecret}
nats: {url: "tls://n:natsurlpass@a:4222, tls://b:4222", user: n, password: natspass}
provisioning: {encryptionKey: "`+key+`"}
tenants:
  default: {master: "host=h;password=masterpass;database=postgres", admin: "postgres://u:adminpass@h/a", ods: "host=h;password=odspass;database={0}"}
  ms: {engine: sqlserver, create: copy, master: "Server=s;Database=m;Password=sqlpass", admin: "Server=s;Database=a", ods: "Server=s;Database={0}"}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"urlpass", "clientsecret", "natsurlpass", "natspass", key, "masterpass", "adminpass", "odspass", "sqlpass"}
	for _, s := range secrets {
		if strings.Contains(string(out), s) {
			t.Errorf("the redacted configuration shows %q:\n%s", s, out)
		}
	}
	if !strings.Contains(string(out), Redacted) || !strings.Contains(string(out), "admin.example.org") || !strings.Contains(string(out), "tls://b:4222") {
		t.Errorf("the redacted configuration hides more than its secrets:\n%s", out)
	}
	if c.AdminAPI.ClientSecret != "clientsecret" || !strings.Contains(c.Tenants["default"].Master, "masterpass") {
		t.Error("Redacted changed the configuration it copies")
	}
}
