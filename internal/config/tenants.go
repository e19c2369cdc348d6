package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// TenantEntry is a tenant entry of the configuration (tenants.NAME): it maps
// a tenant to its database server. The entry named "default"
// serves every tenant without an entry of its own.
type TenantEntry struct {
	// Engine is "postgres" or "sqlserver"; provisioning.engine by default.
	// Tenants of both engines are served by the same consumers.
	Engine string `yaml:"engine"`
	// Master is used for DDL (CREATE DATABASE) on the tenant's server. On
	// SQL Server it names a database the system may keep its reservations
	// in (a small one of its own, rather than master).
	Master string `yaml:"master"`
	// Admin is the tenant's EdFi_Admin database.
	Admin string `yaml:"admin"`
	// ODS is the connection string stored for the ODS/API, with {0} for
	// the database name.
	ODS string `yaml:"ods"`
	// Create and Backup say how SQL Server makes a database: "restore"
	// (the default) of Backup, the template's .bak as a path on the
	// server, or "copy" of the template (Azure SQL Database).
	Create string `yaml:"create"`
	Backup string `yaml:"backup"`
}

// DefaultTenant is the name of the fallback tenant entry.
const DefaultTenant = "default"

// The engines a tenant can be on.
const (
	EnginePostgres  = "postgres"
	EngineSQLServer = "sqlserver"
)

// engine is the entry's engine, def (provisioning.engine) when unset.
func (t TenantEntry) engine(def string) string {
	if t.Engine != "" {
		return t.Engine
	}
	return def
}

// parseConn parses a connection string of engine and returns its server,
// database and whether the database is a {0} template.
func parseConn(engine, s string) (server, database string, template bool, err error) {
	if engine == EngineSQLServer {
		c, err := connstr.ParseSQLServer(s)
		return fmt.Sprintf("%s:%d", strings.ToLower(c.Server), c.Port), c.Database, c.IsTemplate(), err
	}
	c, err := connstr.ParsePostgres(s)
	return serverKey(c), c.Database, c.IsTemplate(), err
}

// serverKey names the server a connection reaches: host and port, host in
// lower case, the default port written out.
func serverKey(c connstr.Conn) string {
	port := c.Port
	if port == 0 {
		port = connstr.DefaultPort
	}
	return fmt.Sprintf("%s:%d", strings.ToLower(c.Host), port)
}

// checkTenants reports what is wrong in tenants: no entry, an entry's
// engine and how it makes databases, its connection strings, and entries
// that share a server without the rules that keep their names apart.
// defEngine is provisioning.engine, naming the configured naming rule.
func checkTenants(tenants map[string]TenantEntry, defEngine string, naming provisioning.Naming) []error {
	var p problems
	if len(tenants) == 0 {
		p.add("tenants", "at least one tenant (or %q) is required", DefaultTenant)
	}
	names := slices.Sorted(maps.Keys(tenants))
	p = append(p, checkSharedServers(tenants, names, defEngine, naming)...)
	for _, name := range names {
		t := tenants[name]
		key := "tenants." + name + "."
		engine := t.engine(defEngine)
		switch engine {
		case EnginePostgres:
			if t.Create != "" || t.Backup != "" {
				p.add(key+"create", "create and backup are for SQL Server tenants")
			}
		case EngineSQLServer:
			switch t.Create {
			case "", "restore":
				if t.Backup == "" {
					p.add(key+"backup", "is required to create by restore (the template's .bak, as a path on the server)")
				}
			case "copy":
			default:
				p.add(key+"create", "%q is neither restore nor copy", t.Create)
			}
		default:
			if t.Engine != "" { // else provisioning.engine is reported
				p.add(key+"engine", "%q is neither postgres nor sqlserver", engine)
			}
			engine = EnginePostgres // to check the connection strings all the same
		}
		for _, f := range []struct{ key, val string }{{"master", t.Master}, {"admin", t.Admin}, {"ods", t.ODS}} {
			if f.val == "" {
				p.add(key+f.key, "is required")
				continue
			}
			_, _, template, err := parseConn(engine, f.val)
			if err != nil {
				p.add(key+f.key, "%v", err)
				continue
			}
			if f.key == "ods" && !template {
				p.add(key+f.key, "must hold {0} where the database name goes")
			}
		}
	}
	return p
}

// checkSharedServers holds entries that share a database server to the two
// rules that keep their names apart: the naming pattern holds {tenant}, and
// they reach the server through one maintenance database, where its
// reservations live.
func checkSharedServers(tenants map[string]TenantEntry, names []string, defEngine string, naming provisioning.Naming) []error {
	type server struct{ entries, masters []string }
	servers := map[string]*server{}
	var order []string
	for _, name := range names {
		key, master, _, err := parseConn(tenants[name].engine(defEngine), tenants[name].Master)
		if err != nil {
			continue // reported with the entry
		}
		sv, ok := servers[key]
		if !ok {
			sv = &server{}
			servers[key] = sv
			order = append(order, key)
		}
		sv.entries = append(sv.entries, name)
		if !slices.Contains(sv.masters, master) {
			sv.masters = append(sv.masters, master)
		}
	}
	var errs []error
	for _, key := range order {
		sv := servers[key]
		if len(sv.entries) < 2 {
			continue
		}
		switch {
		case naming.Rule == provisioning.RuleAdminAPI:
			errs = append(errs, fmt.Errorf("provisioning.naming: tenants %s share the server %s, and the Admin API's rule puts no tenant in a name; give each tenant its own server, or use naming: pattern with {tenant}",
				strings.Join(sv.entries, ", "), key))
		case !naming.HasTenant():
			errs = append(errs, fmt.Errorf("provisioning.namePattern: tenants %s share the server %s, so the pattern must hold {tenant}",
				strings.Join(sv.entries, ", "), key))
		}
		if len(sv.masters) > 1 {
			errs = append(errs, fmt.Errorf("tenants: %s share the server %s but name different maintenance databases (%s); the server's reservations live in one, so give them the same",
				strings.Join(sv.entries, ", "), key, strings.Join(sv.masters, ", ")))
		}
	}
	return errs
}
