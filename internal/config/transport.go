package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/edfi-tools/instancemgr/internal/connstr"
)

// TransportNotes says, one line per connection, how each is protected: for
// the start-up log, so an operator sees at once what goes in the clear.
// Warnings are for plain transport off this machine.
func (c *Config) TransportNotes() (notes, warnings []string) {
	for _, u := range strings.Split(c.NATS.URL, ",") {
		u = strings.TrimSpace(u)
		host := urlHost(u)
		switch {
		case strings.HasPrefix(u, "tls://") || c.NATS.TLS.Enabled():
			notes = append(notes, fmt.Sprintf("nats %s: TLS", host))
		case IsLoopback(host):
			notes = append(notes, fmt.Sprintf("nats %s: plain (loopback)", host))
		default:
			warnings = append(warnings, fmt.Sprintf("nats %s: plain nats:// to a host off this machine; set nats.tls or use tls://", host))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Tenants)) {
		servers, err := c.Servers(name)
		if err != nil {
			continue
		}
		if sc := servers.SQLServer; sc != nil {
			for _, conn := range []struct {
				key  string
				conn connstr.SQLServerConn
			}{{"master", sc.Master}, {"admin", sc.Admin}} {
				line := fmt.Sprintf("tenants.%s.%s (SQL Server %s): Encrypt %s", name, conn.key, conn.conn.Server, conn.conn.Encrypt())
				if enc := conn.conn.Encrypt(); (enc == "false" || enc == "optional" || enc == "no" || enc == "disable") && !IsLoopback(conn.conn.Server) {
					warnings = append(warnings, line+": plain to a host off this machine, as configured")
					continue
				}
				notes = append(notes, line)
			}
			continue
		}
		for _, conn := range []struct {
			key  string
			conn connstr.Conn
		}{{"master", servers.Master}, {"admin", servers.Admin}} {
			mode := conn.conn.SSLMode()
			line := fmt.Sprintf("tenants.%s.%s (%s): sslmode %s", name, conn.key, conn.conn.Host, mode)
			if mode == "" {
				line = fmt.Sprintf("tenants.%s.%s (%s): sslmode prefer (loopback)", name, conn.key, conn.conn.Host)
			}
			if mode == "disable" && !IsLoopback(conn.conn.Host) {
				warnings = append(warnings, line+": plain to a host off this machine, as configured")
				continue
			}
			notes = append(notes, line)
		}
	}
	return notes, warnings
}

// IsLoopback reports whether host (a name, an address, or a Unix socket
// directory) stays on this machine, where plain transport is acceptable.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// urlHost is the host of a URL, "" when it does not parse.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "\x00" // not loopback
	}
	return u.Hostname()
}
