package connstr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SQLServerConn is a parsed SqlClient connection string.
type SQLServerConn struct {
	Server   string
	Port     int
	Database string
	UserID   string
	Password string
	Options  []Option
}

var sqlAliases = map[string]string{
	"server": "server", "data source": "server", "address": "server", "addr": "server", "network address": "server",
	"database": "database", "initial catalog": "database",
	"user id": "user", "uid": "user", "user": "user",
	"password": "password", "pwd": "password",
}

// ParseSQLServer parses a SqlClient connection string
// (Server=tcp:host,1433;Database=...;User Id=...;Password=...).
func ParseSQLServer(s string) (SQLServerConn, error) {
	pairs, err := splitPairs(strings.TrimSpace(s))
	if err != nil {
		return SQLServerConn{}, err
	}
	var c SQLServerConn
	for _, p := range pairs {
		switch sqlAliases[strings.ToLower(p.Key)] {
		case "server":
			host := strings.TrimPrefix(p.Value, "tcp:")
			if h, port, ok := strings.Cut(host, ","); ok {
				n, err := strconv.Atoi(strings.TrimSpace(port))
				if err != nil || n < 1 || n > 65535 {
					return SQLServerConn{}, fmt.Errorf("key %q: port is not a number from 1 to 65535", p.Key)
				}
				host, c.Port = strings.TrimSpace(h), n
			}
			c.Server = host
		case "database":
			c.Database = p.Value
		case "user":
			c.UserID = p.Value
		case "password":
			c.Password = p.Value
		default:
			c.Options = setOption(c.Options, p)
		}
	}
	var errs []error
	if c.Server == "" {
		errs = append(errs, errors.New("server is missing"))
	}
	if c.Database == "" {
		errs = append(errs, errors.New("database is missing"))
	}
	return c, errors.Join(errs...)
}

// ADONet returns the SqlClient form.
func (c SQLServerConn) ADONet() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+quoteValue(v))
		}
	}
	server := c.Server
	if c.Port != 0 {
		server += "," + strconv.Itoa(c.Port)
	}
	add("Server", server)
	add("Database", c.Database)
	add("User Id", c.UserID)
	add("Password", c.Password)
	for _, o := range c.Options {
		add(o.Key, o.Value)
	}
	return strings.Join(parts, ";")
}

// Redacted is safe for logs.
func (c SQLServerConn) Redacted() string {
	return fmt.Sprintf("server=%s port=%d database=%s user=%s", c.Server, c.Port, c.Database, c.UserID)
}

// Validate reports whether s is a usable PostgreSQL or SQL Server
// connection string: it parses and names a host and a database.
func Validate(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("connection string is empty")
	}
	pgErr := func() error { _, err := ParsePostgres(s); return err }()
	if pgErr == nil {
		return nil
	}
	if _, err := ParseSQLServer(s); err == nil {
		return nil
	}
	return fmt.Errorf("not a PostgreSQL or SQL Server connection string: %w", pgErr)
}
