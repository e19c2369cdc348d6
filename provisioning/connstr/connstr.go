// Package connstr parses and builds database connection strings in the
// syntaxes operators already have: Npgsql's ADO.NET form from Ed-Fi
// appsettings (with {0} for the database name in the ODS template),
// PostgreSQL URLs, and SqlClient's form for SQL Server.
//
// It must never put a password into a log line or an error message: errors
// name the key that is wrong, never the input.
package connstr

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Conn is a parsed PostgreSQL connection string.
type Conn struct {
	Host     string
	Port     int // 0 = default
	Username string
	Password string
	Database string
	// Options holds every other key, in input order, as written.
	Options []Option
}

// Option is a key and value the parser does not interpret.
type Option struct{ Key, Value string }

// Placeholder marks the database name in an ODS connection string template.
const Placeholder = "{0}"

var pgAliases = map[string]string{
	"host": "host", "server": "host",
	"port":     "port",
	"username": "username", "user id": "username", "userid": "username", "user name": "username", "user": "username", "uid": "username",
	"password": "password", "pwd": "password",
	"database": "database", "db": "database",
}

// ParsePostgres parses an Npgsql ADO.NET string or a postgres:// URL.
func ParsePostgres(s string) (Conn, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Conn{}, errors.New("connection string is empty")
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return parseURL(s)
	}
	pairs, err := splitPairs(s)
	if err != nil {
		return Conn{}, err
	}
	var c Conn
	for _, p := range pairs {
		switch pgAliases[strings.ToLower(p.Key)] {
		case "host":
			c.Host = p.Value
		case "port":
			port, err := parsePort(p.Value)
			if err != nil {
				return Conn{}, fmt.Errorf("key %q: %w", p.Key, err)
			}
			c.Port = port
		case "username":
			c.Username = p.Value
		case "password":
			c.Password = p.Value
		case "database":
			c.Database = p.Value
		default:
			c.Options = setOption(c.Options, p)
		}
	}
	return c, c.check()
}

func (c Conn) check() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("host is missing"))
	}
	if c.Database == "" {
		errs = append(errs, errors.New("database is missing"))
	}
	return errors.Join(errs...)
}

func parsePort(v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, errors.New("port is not a number from 1 to 65535")
	}
	return p, nil
}

func parseURL(s string) (Conn, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Conn{}, errors.New("PostgreSQL URL does not parse")
	}
	c := Conn{Host: u.Hostname()}
	if p := u.Port(); p != "" {
		if c.Port, err = parsePort(p); err != nil {
			return Conn{}, fmt.Errorf("URL: %w", err)
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	c.Database = strings.TrimPrefix(u.Path, "/")
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for _, k := range keys {
		v := q.Get(k)
		switch k {
		case "sslmode":
			c.Options = setOption(c.Options, Option{"SSL Mode", v})
		case "connect_timeout":
			c.Options = setOption(c.Options, Option{"Timeout", v})
		case "application_name":
			c.Options = setOption(c.Options, Option{"Application Name", v})
		default:
			c.Options = setOption(c.Options, Option{k, v})
		}
	}
	return c, c.check()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// setOption appends o, replacing an earlier value of the same key (last
// wins, as in Npgsql).
func setOption(opts []Option, o Option) []Option {
	for i := range opts {
		if strings.EqualFold(opts[i].Key, o.Key) {
			opts[i].Value = o.Value
			return opts
		}
	}
	return append(opts, o)
}

func (c Conn) option(key string) (string, bool) {
	for _, o := range c.Options {
		if strings.EqualFold(strings.ReplaceAll(o.Key, " ", ""), strings.ReplaceAll(key, " ", "")) {
			return o.Value, true
		}
	}
	return "", false
}

// ADONet returns the Npgsql form, as stored for the ODS/API.
func (c Conn) ADONet() string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quoteValue(v))
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(c.Port))
	}
	add("username", c.Username)
	add("password", c.Password)
	add("database", c.Database)
	for _, o := range c.Options {
		add(o.Key, o.Value)
	}
	return b.String()
}

// PgxConnString returns the libpq keyword/value form that pgx parses.
func (c Conn) PgxConnString() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
		}
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(c.Port))
	}
	add("user", c.Username)
	add("password", c.Password)
	add("dbname", c.Database)
	if v, ok := c.option("SSL Mode"); ok {
		add("sslmode", libpqSSLMode(v))
	}
	if v, ok := c.option("Timeout"); ok {
		add("connect_timeout", v)
	}
	if v, ok := c.option("Application Name"); ok {
		add("application_name", v)
	}
	if v, ok := c.option("Search Path"); ok {
		add("search_path", v)
	}
	return strings.Join(parts, " ")
}

func libpqSSLMode(v string) string {
	switch strings.ToLower(strings.ReplaceAll(v, "-", "")) {
	case "verifyca":
		return "verify-ca"
	case "verifyfull":
		return "verify-full"
	}
	return strings.ToLower(v)
}

// WithDatabase returns a copy naming another database.
func (c Conn) WithDatabase(name string) Conn {
	c.Options = append([]Option(nil), c.Options...)
	c.Database = name
	return c
}

// IsTemplate reports whether the database holds the {0} placeholder.
func (c Conn) IsTemplate() bool { return strings.Contains(c.Database, Placeholder) }

// ForDatabase fills the {0} placeholder with name; without a placeholder
// the database is replaced entirely.
func (c Conn) ForDatabase(name string) Conn {
	if c.IsTemplate() {
		return c.WithDatabase(strings.ReplaceAll(c.Database, Placeholder, name))
	}
	return c.WithDatabase(name)
}

// Redacted is safe for logs: no password, no option values.
func (c Conn) Redacted() string {
	s := fmt.Sprintf("host=%s", c.Host)
	if c.Port != 0 {
		s += fmt.Sprintf(" port=%d", c.Port)
	}
	return s + fmt.Sprintf(" database=%s username=%s", c.Database, c.Username)
}

// quoteValue quotes a value the way DbConnectionStringBuilder does when it
// needs to: double quotes, with embedded double quotes doubled (or single
// quotes when the value holds double quotes but no single ones).
func quoteValue(v string) string {
	if !strings.ContainsAny(v, `;="'`) && strings.TrimSpace(v) == v {
		return v
	}
	if strings.Contains(v, `"`) && !strings.Contains(v, `'`) {
		return "'" + v + "'"
	}
	return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
}

// splitPairs splits "k=v;k2='v;2'" into pairs. Keys are trimmed; values
// are trimmed unless quoted; a quoted value doubles its quote character.
func splitPairs(s string) ([]Option, error) {
	var out []Option
	i := 0
	for i < len(s) {
		// key
		for i < len(s) && (s[i] == ';' || s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			break
		}
		eq := strings.IndexByte(s[i:], '=')
		semi := strings.IndexByte(s[i:], ';')
		if eq < 0 || (semi >= 0 && semi < eq) {
			return nil, fmt.Errorf("segment %d has no '=' (want key=value)", len(out)+1)
		}
		key := strings.TrimSpace(s[i : i+eq])
		if key == "" {
			return nil, fmt.Errorf("segment %d has an empty key", len(out)+1)
		}
		i += eq + 1
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var val string
		if i < len(s) && (s[i] == '"' || s[i] == '\'') {
			q := s[i]
			i++
			var b strings.Builder
			closed := false
			for i < len(s) {
				if s[i] == q {
					if i+1 < len(s) && s[i+1] == q {
						b.WriteByte(q)
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("key %q: unterminated quote", key)
			}
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && s[i] != ';' {
				return nil, fmt.Errorf("key %q: text after the closing quote", key)
			}
			val = b.String()
		} else {
			end := strings.IndexByte(s[i:], ';')
			if end < 0 {
				end = len(s) - i
			}
			val = strings.TrimSpace(s[i : i+end])
			i += end
		}
		out = append(out, Option{Key: key, Value: val})
	}
	if len(out) == 0 {
		return nil, errors.New("connection string has no key=value pairs")
	}
	return out, nil
}
