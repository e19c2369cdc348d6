package config

import (
	"net/url"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/internal/connstr"
)

// Redacted stands for a secret in what is shown.
const Redacted = "REDACTED"

// MarshalYAML writes a duration as it is read ("30s").
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Redacted is a copy of the configuration with every secret replaced: the
// client secret, the NATS password and token, the encryption key, the
// passwords inside the tenants' connection strings and inside URLs. It is
// what `instancemgr config check` prints.
func (c *Config) Redacted() *Config {
	r := *c
	hide := func(s *string) {
		if *s != "" {
			*s = Redacted
		}
	}
	hide(&r.AdminAPI.ClientSecret)
	hide(&r.NATS.Password)
	hide(&r.NATS.Token)
	hide(&r.Provisioning.EncryptionKey)
	r.AdminAPI.BaseURL = RedactURL(r.AdminAPI.BaseURL)
	r.AdminAPI.TokenURL = RedactURL(r.AdminAPI.TokenURL)
	r.NATS.URL = RedactURL(r.NATS.URL)
	r.NATS.BackOff = append([]Duration(nil), c.NATS.BackOff...)
	r.Provisioning.ProtectedDatabases = append([]string(nil), c.Provisioning.ProtectedDatabases...)
	r.Tenants = make(map[string]TenantEntry, len(c.Tenants))
	for name, t := range c.Tenants {
		engine := t.engine(c.Provisioning.Engine)
		t.Master, t.Admin, t.ODS = redactConn(engine, t.Master), redactConn(engine, t.Admin), redactConn(engine, t.ODS)
		r.Tenants[name] = t
	}
	return &r
}

// redactConn shows a connection string without its password; one that
// does not parse is not shown at all (it might hold anything).
func redactConn(engine, s string) string {
	if s == "" {
		return ""
	}
	if engine == EngineSQLServer {
		if c, err := connstr.ParseSQLServer(s); err == nil {
			return c.Redacted()
		}
		return Redacted
	}
	if c, err := connstr.ParsePostgres(s); err == nil {
		return c.Redacted()
	}
	return Redacted
}

// RedactURL hides the user information of a URL, which may be a password
// or a token (comma-separated NATS URLs each).
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ",")
	for i, part := range parts {
		u, err := url.Parse(strings.TrimSpace(part))
		switch {
		case err != nil:
			parts[i] = Redacted
		case u.User != nil:
			u.User = url.User(Redacted)
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
