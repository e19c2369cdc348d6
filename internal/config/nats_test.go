package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
