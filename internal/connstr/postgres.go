package connstr

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Conn is a parsed PostgreSQL connection string.
type Conn struct {
	Host     string
	Port     int // 0 = default
	Username string
	Password string
	Database string
	// Options holds every other key, in input order, with the key as
	// written; ADONet writes them back.
	Options []Option
}

// Option is a key and its value.
type Option struct{ Key, Value string }

// Placeholder marks the database name in an ODS connection string template.
const Placeholder = "{0}"

// DefaultPort is PostgreSQL's port, the one a Conn with Port 0 reaches.
const DefaultPort = 5432

// ParsePostgres parses an Npgsql ADO.NET connection string
// (host=...;port=...;username=...;password=...;database=...) or a PostgreSQL
// URL (postgres://user:pass@host:5432/db?sslmode=disable).
//
// Keys are case-insensitive and may be any of Npgsql's aliases (Server,
// User Id, UID, PWD, DB, ...). When a setting is given twice, under the same
// key or two aliases of it, the last one wins, as in Npgsql. Keys the parser
// does not interpret go to Options; of those, SSL Mode must be one of
// Npgsql's values and Timeout a number of seconds. A host and a database are
// required; the ODS template's {0} counts as a database.
//
// In a URL, libpq's query parameters become their Npgsql equivalents
// (sslmode=verify-full becomes SSL Mode=VerifyFull, connect_timeout becomes
// Timeout, application_name becomes Application Name, ...), so that ADONet
// yields a string Npgsql accepts.
func ParsePostgres(s string) (Conn, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Conn{}, errors.New("connection string is empty")
	}
	if isPostgresURL(t) {
		return parsePostgresURL(t)
	}
	pairs, err := splitADONet(t)
	if err != nil {
		return Conn{}, err
	}
	var c Conn
	for _, p := range pairs {
		if err := c.set(p.Key, p); err != nil {
			return Conn{}, err
		}
	}
	return c, c.checkRequired()
}

func isPostgresURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// npgsqlSetting maps a normalized Npgsql keyword or alias to one name per
// setting, so that aliases replace each other. Unknown keys map to
// themselves.
func npgsqlSetting(norm string) string {
	switch norm {
	case "host", "server":
		return "host"
	case "database", "db":
		return "database"
	case "username", "userid", "uid": // "User Name" normalizes to "username"
		return "username"
	case "password", "pwd", "psw":
		return "password"
	case "minpoolsize", "minimumpoolsize":
		return "minpoolsize"
	case "maxpoolsize", "maximumpoolsize":
		return "maxpoolsize"
	case "connectionlifetime", "loadbalancetimeout":
		return "connectionlifetime"
	case "kerberosservicename", "krbsrvname":
		return "kerberosservicename"
	}
	return norm
}

// set applies one key/value. written is the key as the operator wrote it,
// for errors; o is what to keep.
func (c *Conn) set(written string, o Option) error {
	switch setting := npgsqlSetting(normKey(o.Key)); setting {
	case "host":
		c.Host = o.Value
	case "port":
		p, err := parsePort(o.Value)
		if err != nil {
			return fmt.Errorf("key %q: %w", written, err)
		}
		c.Port = p
	case "username":
		c.Username = o.Value
	case "password":
		c.Password = o.Value
	case "database":
		c.Database = o.Value
	default:
		if err := checkNpgsqlOption(setting, o.Value); err != nil {
			return fmt.Errorf("key %q: %w", written, err)
		}
		c.Options = setOption(c.Options, o, npgsqlSetting)
	}
	return nil
}

// checkNpgsqlOption checks the values that PgxConnString translates and
// that would otherwise fail only later, at connect time. An empty value
// resets a setting to its default, as in Npgsql.
func checkNpgsqlOption(setting, v string) error {
	if v == "" {
		return nil
	}
	switch setting {
	case "sslmode":
		if _, ok := libpqSSLMode(v); !ok {
			return errors.New("want Disable, Allow, Prefer, Require, VerifyCA or VerifyFull")
		}
	case "timeout":
		if _, ok := seconds(v); !ok {
			return errors.New("want a whole number of seconds, 0 or more")
		}
	}
	return nil
}

// parsePort parses a port; empty means the default (0).
func parsePort(v string) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, errors.New("port must be a number from 1 to 65535")
	}
	return p, nil
}

func seconds(v string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	return n, err == nil && n >= 0
}

func (c Conn) checkRequired() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("no host (set Host or Server)"))
	}
	if c.Database == "" {
		errs = append(errs, errors.New("no database (set Database or DB)"))
	}
	return errors.Join(errs...)
}

// libpqParam maps a libpq URL query parameter (lower case) to its Npgsql
// keyword, and says whether the value is an enum to spell Npgsql's way
// (verify-full → VerifyFull). Keys it does not know are kept as written.
func libpqParam(k string) (key string, enum, ok bool) {
	switch k {
	case "dbname":
		return "Database", false, true
	case "user":
		return "Username", false, true
	case "sslmode":
		return "SSL Mode", true, true
	case "connect_timeout":
		return "Timeout", false, true
	case "application_name":
		return "Application Name", false, true
	case "options":
		return "Options", false, true
	case "search_path":
		return "Search Path", false, true
	case "timezone":
		return "Timezone", false, true
	case "client_encoding":
		return "Client Encoding", false, true
	case "sslcert":
		return "SSL Certificate", false, true
	case "sslkey":
		return "SSL Key", false, true
	case "sslrootcert":
		return "Root Certificate", false, true
	case "sslpassword":
		return "SSL Password", false, true
	case "sslnegotiation":
		return "SSL Negotiation", true, true
	case "passfile":
		return "Passfile", false, true
	case "krbsrvname":
		return "Kerberos Service Name", false, true
	case "target_session_attrs":
		return "Target Session Attributes", true, true
	case "channel_binding":
		return "Channel Binding", true, true
	case "pool_max_conns":
		return "Maximum Pool Size", false, true
	case "pool_min_conns":
		return "Minimum Pool Size", false, true
	}
	return "", false, false
}

// parsePostgresURL parses a postgres:// URL. net/url's own errors quote the
// input, password included, so they are replaced, never wrapped.
func parsePostgresURL(s string) (Conn, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Conn{}, errors.New("PostgreSQL URL is malformed (percent-encode '@', ':', '/', '?', '#' and '%' in the user name and password)")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return Conn{}, errors.New("PostgreSQL URL has a '#' (percent-encode it as %23 in the password)")
	}
	if strings.Contains(u.Host, ",") {
		return Conn{}, errors.New("PostgreSQL URL names several hosts; give one")
	}
	c := Conn{Host: u.Hostname()}
	if c.Port, err = parsePort(u.Port()); err != nil {
		return Conn{}, fmt.Errorf("PostgreSQL URL: %w", err)
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	c.Database = strings.TrimLeft(u.Path, "/")
	for _, f := range []struct{ what, v string }{
		{"host", c.Host}, {"user name", c.Username}, {"password", c.Password}, {"database", c.Database},
	} {
		if err := checkText("PostgreSQL URL: "+f.what, f.v); err != nil {
			return Conn{}, err
		}
	}
	for part := range strings.SplitSeq(u.RawQuery, "&") {
		if part == "" {
			continue
		}
		rawKey, rawVal, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return Conn{}, errors.New("PostgreSQL URL: a query parameter name has a bad percent-encoding")
		}
		key = strings.TrimFunc(key, unicode.IsSpace)
		if err := checkKey(key); err != nil {
			return Conn{}, fmt.Errorf("PostgreSQL URL: query parameter: %w", err)
		}
		val, err := url.QueryUnescape(rawVal)
		if err != nil {
			return Conn{}, fmt.Errorf("PostgreSQL URL: query parameter %q: bad percent-encoding", key)
		}
		if err := checkText(fmt.Sprintf("PostgreSQL URL: query parameter %q", key), val); err != nil {
			return Conn{}, err
		}
		o := Option{Key: key, Value: val}
		if k, enum, ok := libpqParam(strings.ToLower(key)); ok {
			o.Key = k
			if enum {
				o.Value = npgsqlEnum(val)
			}
		}
		if err := c.set(key, o); err != nil {
			return Conn{}, fmt.Errorf("PostgreSQL URL: %w", err)
		}
	}
	return c, c.checkRequired()
}

// npgsqlEnum spells a libpq enum value the way Npgsql's enums are named:
// verify-full → VerifyFull, verify-ca → VerifyCA, prefer-standby →
// PreferStandby.
func npgsqlEnum(v string) string {
	var b strings.Builder
	for w := range strings.SplitSeq(strings.TrimSpace(v), "-") {
		if strings.EqualFold(w, "ca") {
			b.WriteString("CA")
			continue
		}
		if w != "" {
			b.WriteString(strings.ToUpper(w[:1]) + strings.ToLower(w[1:]))
		}
	}
	return b.String()
}

// ADONet returns the Npgsql form, as the ODS/API reads it:
// host=...;port=...;username=...;password=...;database=...;<Options>. Empty
// fields and port 0 are left out; values are quoted as
// DbConnectionStringBuilder quotes them. Options whose key names one of the
// fields, or that cannot be written as a key, are left out.
func (c Conn) ADONet() string {
	port := ""
	if c.Port != 0 {
		port = strconv.Itoa(c.Port)
	}
	return adoNet([]Option{{"host", c.Host}, {"port", port}, {"username", c.Username}, {"password", c.Password}, {"database", c.Database}},
		c.Options, oneOf(npgsqlSetting, "host", "port", "username", "password", "database"))
}

// oneOf reports whether a key, read by setting, is one of settings.
func oneOf(setting func(norm string) string, settings ...string) func(key string) bool {
	return func(key string) bool { return slices.Contains(settings, setting(normKey(key))) }
}

// adoNet writes the fields that are set, then every option that is not one
// of them (fieldKey) and is a key ADO.NET can hold.
func adoNet(fields, options []Option, fieldKey func(key string) bool) string {
	var b strings.Builder
	for _, f := range fields {
		if f.Value != "" {
			appendPair(&b, f.Key, f.Value)
		}
	}
	for _, o := range options {
		if !fieldKey(o.Key) && checkKey(o.Key) == nil {
			appendPair(&b, o.Key, o.Value)
		}
	}
	return b.String()
}

// PgxConnString returns the libpq keyword/value form that
// pgx.ParseConfig and pgxpool.ParseConfig take, every value in single
// quotes with backslashes and single quotes escaped by a backslash.
//
// Besides host, port, user, password and dbname it carries the options libpq
// (and pgx) understand: SSL Mode → sslmode (VerifyCA → verify-ca, ...),
// Timeout → connect_timeout, Application Name → application_name,
// Search Path → search_path, Options → options, Timezone → timezone, the
// SSL certificate, key, password and root certificate files, Passfile,
// Kerberos Service Name, Target Session Attributes, Channel Binding and SSL
// Negotiation. Everything else is dropped: pooling and timeout settings that
// are Npgsql's own, Client Encoding (pgx needs UTF8), and unknown keys, which
// pgx would send to the server as run-time parameters.
func (c Conn) PgxConnString() string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
		b.WriteByte('\'')
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(c.Port))
	}
	add("user", c.Username)
	add("password", c.Password)
	add("dbname", c.Database)
	for _, o := range c.Options {
		if k, v, ok := libpqOption(o); ok {
			add(k, v)
		}
	}
	return b.String()
}

// libpqOption translates one Npgsql option to libpq, if libpq has it.
func libpqOption(o Option) (key, value string, ok bool) {
	if o.Value == "" {
		return "", "", false
	}
	enum := func(key string, values ...string) (string, string, bool) {
		n := strings.ToLower(strings.TrimSpace(o.Value))
		for _, v := range values {
			if strings.ReplaceAll(v, "-", "") == n {
				return key, v, true
			}
		}
		return "", "", false
	}
	switch npgsqlSetting(normKey(o.Key)) {
	case "sslmode":
		v, ok := libpqSSLMode(o.Value)
		return "sslmode", v, ok
	case "timeout":
		n, ok := seconds(o.Value)
		return "connect_timeout", strconv.Itoa(n), ok
	case "applicationname":
		return "application_name", o.Value, true
	case "searchpath":
		return "search_path", o.Value, true
	case "options":
		return "options", o.Value, true
	case "timezone":
		return "timezone", o.Value, true
	case "sslcertificate":
		return "sslcert", o.Value, true
	case "sslkey":
		return "sslkey", o.Value, true
	case "sslpassword":
		return "sslpassword", o.Value, true
	case "rootcertificate":
		return "sslrootcert", o.Value, true
	case "passfile":
		return "passfile", o.Value, true
	case "kerberosservicename":
		return "krbsrvname", o.Value, true
	case "targetsessionattributes":
		// Npgsql's PreferPrimary has no libpq equivalent.
		return enum("target_session_attrs", "any", "primary", "standby", "prefer-standby", "read-write", "read-only")
	case "channelbinding":
		return enum("channel_binding", "disable", "prefer", "require")
	case "sslnegotiation":
		return enum("sslnegotiation", "postgres", "direct")
	}
	return "", "", false
}

// libpqSSLMode translates Npgsql's SSL Mode (case-insensitive) to libpq's
// sslmode.
func libpqSSLMode(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "disable", "allow", "prefer", "require":
		return strings.ToLower(strings.TrimSpace(v)), true
	case "verifyca":
		return "verify-ca", true
	case "verifyfull":
		return "verify-full", true
	}
	return "", false
}

// SSLMode is the connection's SSL mode in libpq's spelling (disable,
// allow, prefer, require, verify-ca, verify-full), "" when none is set.
func (c Conn) SSLMode() string {
	for _, o := range c.Options {
		if npgsqlSetting(normKey(o.Key)) == "sslmode" {
			v, _ := libpqSSLMode(o.Value)
			return v
		}
	}
	return ""
}

// WithOption returns a copy of c with one more option.
func (c Conn) WithOption(key, value string) Conn {
	c.Options = append(slices.Clone(c.Options), Option{Key: key, Value: value})
	return c
}

// WithDatabase returns a copy of c naming another database.
func (c Conn) WithDatabase(name string) Conn {
	c.Options = slices.Clone(c.Options)
	c.Database = name
	return c
}

// IsTemplate reports whether the database name holds the {0} placeholder.
func (c Conn) IsTemplate() bool { return strings.Contains(c.Database, Placeholder) }

// ForDatabase returns the connection for database name: in an ODS template
// {0} is replaced by name; without a placeholder the database is replaced
// entirely.
func (c Conn) ForDatabase(name string) Conn {
	if c.IsTemplate() {
		return c.WithDatabase(strings.ReplaceAll(c.Database, Placeholder, name))
	}
	return c.WithDatabase(name)
}

// Redacted is safe for logs: "host=h port=p database=d username=u", without
// the password or any option, since option values (SSL Password, Options,
// ...) can hold secrets too.
func (c Conn) Redacted() string {
	return redacted("host", c.Host, c.Port, c.Database, "username", c.Username)
}

// redacted writes a server, port, database and user for logs, and nothing
// else.
func redacted(serverKey, server string, port int, database, userKey, user string) string {
	var b strings.Builder
	redactedField(&b, serverKey, server, true)
	if port != 0 {
		redactedField(&b, "port", strconv.Itoa(port), true)
	}
	redactedField(&b, "database", database, true)
	redactedField(&b, userKey, user, false)
	return b.String()
}

func redactedField(b *strings.Builder, k, v string, always bool) {
	if v == "" && !always {
		return
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(k)
	b.WriteByte('=')
	if v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return r == '"' || r == '\'' || r == '=' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}
