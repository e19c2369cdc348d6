package managewrite_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/bridge/managewrite"
	"github.com/edfi-tools/instancemgr/internal/forwarded"
)

// The v3 Location (Ed-Fi's path, /v3/dataStores/manage/{id}) names where
// callers reach the Admin API: the configured public base URL; else the
// scheme and host a trusted proxy forwarded; else no host at all. The
// caller's Host (behind a proxy, the internal one) and a forwarded header
// from a peer that is not a trusted proxy are never used. v2's Location is
// Ed-Fi's relative one in every case.
func TestLocationNamesThePublicAdminAPI(t *testing.T) {
	proxies := func(t *testing.T, cidrs ...string) forwarded.Proxies {
		t.Helper()
		p, err := forwarded.ParseProxies(cidrs)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	spoofed := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example"}
	tests := []struct {
		name    string
		opts    managewrite.ServerOptions
		headers []string
		want    string // the Location up to the id
	}{
		{"nothing configured", managewrite.ServerOptions{}, spoofed, "/v3/dataStores/manage/"},
		{"spoofed by a peer that is not a trusted proxy", managewrite.ServerOptions{TrustedProxies: proxies(t, "10.0.0.0/8", "192.0.2.7")}, spoofed, "/v3/dataStores/manage/"},
		{"forwarded by a trusted proxy", managewrite.ServerOptions{TrustedProxies: proxies(t, "127.0.0.0/8")},
			[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "admin.example.org"}, "https://admin.example.org/v3/dataStores/manage/"},
		{"forwarded by a trusted proxy, a host with a path", managewrite.ServerOptions{TrustedProxies: proxies(t, "127.0.0.1")},
			[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.example/phish?"}, "/v3/dataStores/manage/"},
		{"forwarded by a trusted proxy, no scheme", managewrite.ServerOptions{TrustedProxies: proxies(t, "127.0.0.1")},
			[]string{"X-Forwarded-Host", "admin.example.org"}, "/v3/dataStores/manage/"},
		{"public base URL", managewrite.ServerOptions{PublicBaseURL: "https://admin.example.org/adminapi/", TrustedProxies: proxies(t, "127.0.0.0/8")},
			spoofed, "https://admin.example.org/adminapi/v3/dataStores/manage/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, adminAPIAnswer, tt.opts)
			for _, v := range []struct{ path, want string }{
				{"/v3/dataStores/manage", tt.want},
				{"/v2/odsInstances/manage", "/odsinstances/manage/"},
			} {
				req, err := http.NewRequest(http.MethodPost, g.url+v.path, strings.NewReader(fmt.Sprintf(`{"name":"Here %s","databaseTemplate":"Minimal"}`, v.path[1:3])))
				if err != nil {
					t.Fatal(err)
				}
				req.Host = "instancemgr.internal:8081"
				req.Header.Set("Content-Type", "application/json")
				for i := 0; i+1 < len(tt.headers); i += 2 {
					req.Header.Set(tt.headers[i], tt.headers[i+1])
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				loc := resp.Header.Get("Location")
				if resp.StatusCode != http.StatusAccepted || !regexp.MustCompile("^"+regexp.QuoteMeta(v.want)+"[0-9]+$").MatchString(loc) {
					t.Errorf("POST %s: %d, Location %q; want %s{id}", v.path, resp.StatusCode, loc, v.want)
				}
			}
		})
	}
	if _, err := managewrite.NewServer(nil, managewrite.ServerOptions{AdminAPI: "http://admin", PublicBaseURL: "https://admin.example.org/?next=x"}); err == nil {
		t.Error("a public base URL with a query was accepted")
	}
}
