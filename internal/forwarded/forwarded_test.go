package forwarded_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edfi-tools/instancemgr/internal/forwarded"
)

func proxies(t *testing.T, entries ...string) forwarded.Proxies {
	t.Helper()
	p, err := forwarded.ParseProxies(entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Entries are CIDRs or single addresses; every bad one is named at once.
func TestParseProxies(t *testing.T) {
	p := proxies(t, "10.0.0.0/8", " 192.0.2.7 ", "fd00::/8", "2001:db8::1")
	for addr, want := range map[string]bool{
		"10.1.2.3:5000": true, "192.0.2.7:1": true, "192.0.2.8:1": false, "[fd00::5]:80": true,
		"[2001:db8::1]:443": true, "[2001:db8::2]:443": false, "[::ffff:10.0.0.1]:80": true,
		"127.0.0.1:80": false, "not an address": false, "": false,
	} {
		if got := p.Trusts(addr); got != want {
			t.Errorf("Trusts(%q) = %v, want %v", addr, got, want)
		}
	}
	_, err := forwarded.ParseProxies([]string{"10.0.0.0/33", "proxy.internal", "10.0.0.0/8"})
	if err == nil || !strings.Contains(err.Error(), `"10.0.0.0/33"`) || !strings.Contains(err.Error(), `"proxy.internal"`) {
		t.Fatalf("bad entries: %v", err)
	}
	if (forwarded.Proxies{}).Trusts("127.0.0.1:1") {
		t.Fatal("the zero Proxies trusts a peer")
	}
}

// Origin believes X-Forwarded-Proto and -Host only from a trusted peer,
// and only values that are a scheme and a host.
func TestOrigin(t *testing.T) {
	p := proxies(t, "10.0.0.0/8")
	tests := []struct {
		name, peer, proto, host string
		want                    string // scheme://host, "" for none
	}{
		{"trusted", "10.0.0.9:4000", "https", "admin.example.org", "https://admin.example.org"},
		{"trusted, with a port", "10.0.0.9:4000", "HTTPS", "admin.example.org:8443", "https://admin.example.org:8443"},
		// The trusted proxy appends: what comes before its value may be
		// the client's own (behind a chain of proxies, set publicBaseUrl).
		{"a client's own value before the proxy's", "10.0.0.9:4000", "http, https", "evil.example, admin.example.org", "https://admin.example.org"},
		{"trusted, IPv6 literal", "10.0.0.9:4000", "http", "[2001:db8::1]:8080", "http://[2001:db8::1]:8080"},
		{"untrusted peer", "203.0.113.5:4000", "https", "evil.example", ""},
		{"a path in the host", "10.0.0.9:4000", "https", "evil.example/x", ""},
		{"a user in the host", "10.0.0.9:4000", "https", "user@evil.example", ""},
		{"another scheme", "10.0.0.9:4000", "javascript", "admin.example.org", ""},
		{"no host", "10.0.0.9:4000", "https", "", ""},
		{"a bare IPv6 address", "10.0.0.9:4000", "https", "2001:db8::1", ""},
		{"a port that is not a number", "10.0.0.9:4000", "https", "admin.example.org:x", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.peer
		r.Header.Set("X-Forwarded-Proto", tt.proto)
		r.Header.Set("X-Forwarded-Host", tt.host)
		scheme, host, ok := p.Origin(r)
		got := ""
		if ok {
			got = scheme + "://" + host
		}
		if got != tt.want {
			t.Errorf("%s: Origin = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// ClientAddr is the peer unless the peer is a trusted proxy; then the
// last address in X-Forwarded-For that is not a trusted proxy, so that
// addresses a client wrote before its own are never taken.
func TestClientAddr(t *testing.T) {
	p := proxies(t, "10.0.0.0/8")
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxy", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer, spoofed header", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"one trusted proxy", "10.0.0.9:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"a client's own forgery before its address", "10.0.0.9:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted proxies, two headers", "10.0.0.9:4000", []string{"1.2.3.4, 198.51.100.1", "10.0.0.3"}, "198.51.100.1"},
		{"only proxies", "10.0.0.9:4000", []string{"10.0.0.3"}, "10.0.0.3"},
		{"garbage after the client", "10.0.0.9:4000", []string{"198.51.100.1, garbage"}, "10.0.0.9"},
		{"trusted proxy, no header", "10.0.0.9:4000", nil, "10.0.0.9"},
		{"IPv6 peer", "[2001:db8::5]:4000", nil, "2001:db8::5"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.peer
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := p.ClientAddr(r); got != tt.want {
			t.Errorf("%s: ClientAddr = %q, want %q", tt.name, got, tt.want)
		}
	}
}
