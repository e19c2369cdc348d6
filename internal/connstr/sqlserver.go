package connstr

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/microsoft/go-mssqldb/msdsn"
)

// SQLServerConn is a parsed SqlClient connection string.
type SQLServerConn struct {
	// Server is the host, with \instance if one was named, without the
	// "tcp:" prefix or the ",port" suffix. Other protocol prefixes (np:,
	// lpc:, admin:) are kept as written.
	Server   string
	Port     int // 0 = default
	Database string
	UserID   string
	Password string
	// Options holds every other key, in input order, with the key as
	// written; ADONet writes them back.
	Options []Option
}

// sqlServerSetting maps a normalized SqlClient keyword or synonym to one
// name per setting, so that synonyms replace each other. Unknown keys map to
// themselves.
func sqlServerSetting(norm string) string {
	switch norm {
	case "server", "datasource", "address", "addr", "networkaddress":
		return "server"
	case "database", "initialcatalog":
		return "database"
	case "userid", "uid", "user":
		return "userid"
	case "password", "pwd":
		return "password"
	case "integratedsecurity", "trusted_connection":
		return "integratedsecurity"
	case "connecttimeout", "connectiontimeout", "timeout":
		return "connecttimeout"
	case "applicationname", "app":
		return "applicationname"
	case "workstationid", "wsid":
		return "workstationid"
	case "minpoolsize", "minimumpoolsize":
		return "minpoolsize"
	case "maxpoolsize", "maximumpoolsize":
		return "maxpoolsize"
	}
	return norm
}

// sqlServerOnly reports whether a normalized key means the string is meant
// for SqlClient, not Npgsql; Validate uses it to choose which error to give.
func sqlServerOnly(norm string) bool {
	switch norm {
	case "datasource", "address", "addr", "networkaddress", "initialcatalog",
		"integratedsecurity", "trusted_connection", "encrypt", "multipleactiveresultsets",
		"applicationintent", "multisubnetfailover", "authentication", "failoverpartner",
		"workstationid", "wsid", "packetsize":
		return true
	}
	return false
}

// ParseSQLServer parses a SqlClient connection string
// (Server=tcp:host,1433;Database=x;User Id=sa;Password=...). Keys are
// case-insensitive and may be any of SqlClient's synonyms (Data Source,
// Address, Initial Catalog, UID, PWD, ...); the last of repeated settings
// wins. A server and a database are required; a user is not (Integrated
// Security).
func ParseSQLServer(s string) (SQLServerConn, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return SQLServerConn{}, errors.New("connection string is empty")
	}
	pairs, err := splitADONet(t)
	if err != nil {
		return SQLServerConn{}, err
	}
	var c SQLServerConn
	for _, p := range pairs {
		switch sqlServerSetting(normKey(p.Key)) {
		case "server":
			if c.Server, c.Port, err = parseDataSource(p.Value); err != nil {
				return SQLServerConn{}, fmt.Errorf("key %q: %w", p.Key, err)
			}
		case "database":
			c.Database = p.Value
		case "userid":
			c.UserID = p.Value
		case "password":
			c.Password = p.Value
		default:
			c.Options = setOption(c.Options, p, sqlServerSetting)
		}
	}
	var errs []error
	if c.Server == "" {
		errs = append(errs, errors.New("no server (set Server or Data Source)"))
	}
	if c.Database == "" {
		errs = append(errs, errors.New("no database (set Database or Initial Catalog)"))
	}
	if len(errs) == 0 {
		// The driver's own parser has the last word on what it will accept.
		if _, err := msdsn.Parse(c.ADONet()); err != nil {
			msg := err.Error()
			if (c.Password != "" && strings.Contains(msg, c.Password)) || strings.Contains(msg, s) {
				msg = "a setting's value is invalid"
			}
			errs = append(errs, fmt.Errorf("the SQL Server driver refuses it: %s", msg))
		}
	}
	return c, errors.Join(errs...)
}

// parseDataSource splits "[tcp:]host[\instance][,port]". Other protocols
// (np:, lpc:, admin:) are kept whole: a pipe name has no port.
func parseDataSource(v string) (string, int, error) {
	v = strings.TrimSpace(v)
	switch {
	case hasPrefixFold(v, "tcp:"):
		v = strings.TrimSpace(v[len("tcp:"):])
	case hasPrefixFold(v, "np:"), hasPrefixFold(v, "lpc:"), hasPrefixFold(v, "admin:"):
		return v, 0, nil
	}
	host, port, ok := strings.Cut(v, ",")
	if !ok {
		return v, 0, nil
	}
	host = strings.TrimSpace(host)
	p, err := strconv.Atoi(strings.TrimSpace(port))
	if err != nil || p < 1 || p > 65535 {
		return "", 0, errors.New("port after ',' must be a number from 1 to 65535")
	}
	if host == "" {
		return "", 0, errors.New("no host before the port")
	}
	return host, p, nil
}

// ADONet returns the SqlClient form:
// Server=host,port;Database=...;User Id=...;Password=...;<Options>. Empty
// fields are left out; values are quoted as DbConnectionStringBuilder quotes
// them. Options whose key names one of the fields, or that cannot be written
// as a key, are left out.
func (c SQLServerConn) ADONet() string {
	server := c.Server
	if c.Port != 0 {
		server += "," + strconv.Itoa(c.Port)
	}
	return adoNet([]Option{{"Server", server}, {"Database", c.Database}, {"User Id", c.UserID}, {"Password", c.Password}},
		c.Options, oneOf(sqlServerSetting, "server", "database", "userid", "password"))
}

// Encrypt is the connection's Encrypt setting as written ("true", "strict",
// "false", ...), "" when none is set.
func (c SQLServerConn) Encrypt() string {
	for _, o := range c.Options {
		if sqlServerSetting(normKey(o.Key)) == "encrypt" {
			return strings.ToLower(strings.TrimSpace(o.Value))
		}
	}
	return ""
}

// WithOption returns a copy of c with one more option.
func (c SQLServerConn) WithOption(key, value string) SQLServerConn {
	c.Options = append(slices.Clone(c.Options), Option{Key: key, Value: value})
	return c
}

// IsTemplate reports whether the database name holds the {0} placeholder.
func (c SQLServerConn) IsTemplate() bool { return strings.Contains(c.Database, Placeholder) }

// ForDatabase returns the connection for database name, as Conn.ForDatabase
// does.
func (c SQLServerConn) ForDatabase(name string) SQLServerConn {
	c.Options = slices.Clone(c.Options)
	if c.IsTemplate() {
		c.Database = strings.ReplaceAll(c.Database, Placeholder, name)
	} else {
		c.Database = name
	}
	return c
}

// Redacted is safe for logs: "server=s port=p database=d user=u", without
// the password or any option.
func (c SQLServerConn) Redacted() string {
	return redacted("server", c.Server, c.Port, c.Database, "user", c.UserID)
}

// Validate reports whether s is a usable PostgreSQL or SQL Server connection
// string: it parses (ParsePostgres or ParseSQLServer) and names a host or
// server and a database. It is what the Admin API checks in what the worker
// sends. A template's {0} counts as a database; callers that need a concrete
// one check IsTemplate. The error never holds the password.
func Validate(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("connection string is empty")
	}
	_, pgErr := ParsePostgres(s)
	if pgErr == nil {
		return nil
	}
	_, ssErr := ParseSQLServer(s)
	if ssErr == nil {
		return nil
	}
	if isPostgresURL(strings.TrimSpace(s)) {
		return fmt.Errorf("not a valid PostgreSQL connection string: %w", pgErr)
	}
	pairs, err := splitADONet(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("not a valid connection string: %w", err)
	}
	for _, p := range pairs {
		if sqlServerOnly(normKey(p.Key)) {
			return fmt.Errorf("not a valid SQL Server connection string: %w", ssErr)
		}
	}
	return fmt.Errorf("not a valid PostgreSQL connection string: %w", pgErr)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
