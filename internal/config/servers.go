package config

import (
	"fmt"
	"strings"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// Servers are a tenant's servers: the connections its entry resolves to,
// which a placement opens.
type Servers struct {
	Tenant string // the tenant asked for
	Entry  string // the configuration entry that serves it
	Engine string // EnginePostgres or EngineSQLServer
	// Master, Admin and ODS are a PostgreSQL tenant's connections.
	Master connstr.Conn
	Admin  connstr.Conn
	ODS    connstr.Conn
	// SQLServer is a SQL Server tenant's.
	SQLServer *SQLServerConns
}

// SQLServerConns are a SQL Server tenant's connections and how it makes
// databases.
type SQLServerConns struct {
	Master, Admin, ODS connstr.SQLServerConn
	Create, Backup     string
}

// Servers resolves a tenant to its entry, or the default entry.
func (c *Config) Servers(tenant string) (Servers, error) {
	entry := tenant
	t, ok := c.Tenants[tenant]
	if !ok {
		entry = DefaultTenant
		if t, ok = c.Tenants[DefaultTenant]; !ok {
			return Servers{}, fmt.Errorf("%w: %q (no tenants.%s and no tenants.%s entry)", provisioning.ErrUnknownTenant, tenant, tenant, DefaultTenant)
		}
	}
	servers := Servers{Tenant: tenant, Entry: entry, Engine: t.engine(c.Provisioning.Engine)}
	var err error
	if servers.Engine == EngineSQLServer {
		sc := &SQLServerConns{Create: t.Create, Backup: t.Backup}
		for _, f := range []struct {
			key, val string
			dst      *connstr.SQLServerConn
		}{{"master", t.Master, &sc.Master}, {"admin", t.Admin, &sc.Admin}, {"ods", t.ODS, &sc.ODS}} {
			if *f.dst, err = connstr.ParseSQLServer(f.val); err != nil {
				return Servers{}, fmt.Errorf("tenants.%s.%s: %w", entry, f.key, err)
			}
		}
		sc.Master, sc.Admin = secureSQLServer(sc.Master), secureSQLServer(sc.Admin)
		servers.SQLServer = sc
		return servers, nil
	}
	if servers.Master, err = connstr.ParsePostgres(t.Master); err != nil {
		return Servers{}, fmt.Errorf("tenants.%s.master: %w", entry, err)
	}
	if servers.Admin, err = connstr.ParsePostgres(t.Admin); err != nil {
		return Servers{}, fmt.Errorf("tenants.%s.admin: %w", entry, err)
	}
	// The ODS string is handed to the ODS/API as configured; the worker's
	// own connections get the secure default.
	servers.Master, servers.Admin = secure(servers.Master), secure(servers.Admin)
	if servers.ODS, err = connstr.ParsePostgres(t.ODS); err != nil {
		return Servers{}, fmt.Errorf("tenants.%s.ods: %w", entry, err)
	}
	return servers, nil
}

// Server names the server a tenant's databases live on, for metrics,
// probes and the fair share of a replica's slots: host and port, nothing
// else of the connection string.
func (s Servers) Server() string {
	if sc := s.SQLServer; sc != nil {
		return fmt.Sprintf("%s:%d", sc.Master.Server, sc.Master.Port)
	}
	return fmt.Sprintf("%s:%d", s.Master.Host, s.Master.Port)
}

// CopiesPerServer is consumer.copiesPerServer, or by default each server's
// even share of a replica's slots: consumer.concurrency divided by the
// servers the tenant entries name, rounded up; all of them when there is
// one server, so that one server alone loses nothing.
func (c *Config) CopiesPerServer() int {
	if c.Consumer.CopiesPerServer > 0 {
		return c.Consumer.CopiesPerServer
	}
	servers := map[string]bool{}
	for entry := range c.Tenants {
		if s, err := c.Servers(entry); err == nil {
			servers[s.Server()] = true
		}
	}
	n := max(len(servers), 1)
	return (c.Consumer.Concurrency + n - 1) / n
}

// secureSQLServer is secure for SQL Server: Encrypt=true (the server's
// certificate verified unless TrustServerCertificate says otherwise) off
// loopback when no Encrypt is written.
func secureSQLServer(c connstr.SQLServerConn) connstr.SQLServerConn {
	host, _, _ := strings.Cut(c.Server, `\`)
	if c.Encrypt() != "" || IsLoopback(host) {
		return c
	}
	return c.WithOption("Encrypt", "true")
}

// secure gives a connection of the worker's own that names no SSL mode the
// safe default: TLS with the server's certificate and host name verified,
// unless the server is on this machine. Going without TLS to another host
// takes an explicit sslmode=disable (SSL Mode=Disable).
func secure(c connstr.Conn) connstr.Conn {
	if c.SSLMode() != "" || IsLoopback(c.Host) {
		return c
	}
	return c.WithOption("SSL Mode", "VerifyFull")
}
