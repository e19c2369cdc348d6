package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edfi-tools/instancemgr/jobs"
)

// nats's blanks take the NATS client's URL and the stream set-up the jobs
// package fills in, the back-off following ackWait; a URL of another
// scheme, or a set-up the jobs package refuses, is refused with its key.
func TestNATSSection(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if want := (jobs.Config{}).WithDefaults(); c.NATS.URL != nats.DefaultURL || !reflect.DeepEqual(c.StreamConfig(), want) {
		t.Errorf("nats defaults: URL %q, stream %+v, want %q and %+v", c.NATS.URL, c.StreamConfig(), nats.DefaultURL, want)
	}
	c, err = Load(write(t, valid+"nats: {ackWait: 45s}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.StreamConfig().BackOff, jobs.DefaultBackOff(45*time.Second); !reflect.DeepEqual(got, want) {
		t.Errorf("back-off %v, want %v after ackWait 45s", got, want)
	}
	testLoad(t, valid, []loadCase{
		{"several servers", `nats: {url: "nats://a:4222, tls://b:4222"}`, ""},
		{"another scheme", `nats: {url: "nats://a:4222,http://b"}`, "nats.url: must start with nats:// or tls://"},
		{"a set-up the stream refuses", "nats: {maxDeliver: -1}", "nats: maxDeliver"},
	})
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
