// Package forwarded says where callers reach a listener behind a reverse
// proxy: a configured public base URL (ParseBaseURL), or what the proxy
// says about a request (X-Forwarded-Proto, X-Forwarded-Host,
// X-Forwarded-For), read only when the request came from a proxy the
// configuration trusts (Proxies). Anyone can send those headers; believed
// from any peer, they let a caller choose the host of a Location the Admin
// App follows, or the address an audit line records.
//
// It must never take a forwarded header from a peer outside the trusted
// networks.
package forwarded

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// ParseBaseURL checks a public base URL ("" is none) and returns it
// without a trailing slash: an http(s) URL of a host and, at most, a path
// base ("https://admin.example.org/adminapi").
func ParseBaseURL(base string) (string, error) {
	if base == "" {
		return "", nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an http(s) URL of a host and a path base", base)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Proxies are the networks of the reverse proxies whose forwarded headers
// are believed. The zero value trusts no one.
type Proxies struct {
	nets []netip.Prefix
}

// ParseProxies reads CIDRs ("10.0.0.0/8", "fd00::/8") or single addresses
// ("192.0.2.10"); every entry that is neither is reported at once.
func ParseProxies(entries []string) (Proxies, error) {
	var (
		p   Proxies
		bad []string
	)
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if pfx, err := netip.ParsePrefix(e); err == nil {
			p.nets = append(p.nets, pfx.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			p.nets = append(p.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		bad = append(bad, fmt.Sprintf("%q", e))
	}
	if len(bad) > 0 {
		return Proxies{}, fmt.Errorf("%s: not a CIDR (10.0.0.0/8) or an IP address", strings.Join(bad, ", "))
	}
	return p, nil
}

// Trusts says whether addr (an "ip:port" as http.Request.RemoteAddr has
// it, or an IP) is one of the proxies.
func (p Proxies) Trusts(addr string) bool {
	a, ok := parseAddr(addr)
	if !ok {
		return false
	}
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Origin is the scheme and host the caller reached the proxy at, from
// X-Forwarded-Proto and X-Forwarded-Host; ok is false unless the request's
// peer is a trusted proxy and both headers hold a value that can be one
// (http or https; a host and optional port, nothing else). With several
// values (in one header or in several) the last is the one the trusted
// proxy wrote: any before it may be the client's own.
func (p Proxies) Origin(r *http.Request) (scheme, host string, ok bool) {
	if !p.Trusts(r.RemoteAddr) {
		return "", "", false
	}
	scheme = strings.ToLower(last(r.Header.Values("X-Forwarded-Proto")))
	host = last(r.Header.Values("X-Forwarded-Host"))
	if (scheme != "http" && scheme != "https") || !validHost(host) {
		return "", "", false
	}
	return scheme, host, true
}

// ClientAddr is the address of the client: the peer, or, when the peer is
// a trusted proxy, the last address of X-Forwarded-For that is not one
// (each proxy appends the address it was reached from, so the addresses
// before the last untrusted one could have been written by the client).
func (p Proxies) ClientAddr(r *http.Request) string {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !p.Trusts(peer.String()) {
		return peer.String()
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseAddr(strings.TrimSpace(hops[i]))
		if !ok {
			break // a value no proxy writes: believe nothing before it
		}
		client = a
		if !p.Trusts(a.String()) {
			break
		}
	}
	return client.String()
}

func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// last is the last comma-separated value of a header's lines.
func last(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	v := lines[len(lines)-1]
	if i := strings.LastIndex(v, ","); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// validHost accepts a DNS name or an IP literal, with an optional port:
// nothing that could add a path, a user or a second URL.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	name, port, err := net.SplitHostPort(h)
	if err != nil {
		name, port = h, ""
	}
	if port != "" {
		for _, c := range port {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if a, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return !a.Is6() || strings.HasPrefix(h, "[")
	}
	if name == "" {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
