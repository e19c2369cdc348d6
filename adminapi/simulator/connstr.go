package simulator

import (
	"net/url"
	"strings"
)

const (
	msgConnRequired = "Connection string is required."
	msgConnInvalid  = "Connection string is not valid. Please check the connection string and try again."
)

// Keywords, lower-cased with single spaces, that name the server and the
// database in Npgsql and SqlClient connection strings.
var (
	hostKeys     = []string{"host", "server", "data source", "address", "addr", "network address"}
	databaseKeys = []string{"database", "db", "initial catalog"}
)

// validateConnectionString returns "" when cs is a usable PostgreSQL or SQL
// Server connection string, else the message Admin API 2.3 answers with.
// Usable means ADO.NET `key=value;` pairs (values may be quoted, quotes
// doubled inside) naming a server and a database, or a postgres:// or
// postgresql:// URL with a host and a database path. It checks the shape,
// not the keywords: an unknown keyword passes here.
func validateConnectionString(cs string) string {
	cs = strings.TrimSpace(cs)
	if cs == "" {
		return msgConnRequired
	}
	if lower := strings.ToLower(cs); strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		u, err := url.Parse(cs)
		if err != nil || u.Hostname() == "" || strings.Trim(u.Path, "/") == "" {
			return msgConnInvalid
		}
		return ""
	}
	pairs, ok := parseADONet(cs)
	if !ok || !hasValue(pairs, hostKeys) || !hasValue(pairs, databaseKeys) {
		return msgConnInvalid
	}
	return ""
}

func hasValue(pairs map[string]string, keys []string) bool {
	for _, k := range keys {
		if pairs[k] != "" {
			return true
		}
	}
	return false
}

// parseADONet splits an ADO.NET connection string into lower-cased keys and
// values, the way DbConnectionStringBuilder reads one: pairs separated by
// semicolons, white space around keys and values ignored, values optionally
// in single or double quotes with the quote doubled inside. A later key
// overrides an earlier one.
func parseADONet(s string) (map[string]string, bool) {
	out := map[string]string{}
	i := 0
	for {
		for i < len(s) && (s[i] == ';' || isSpace(s[i])) {
			i++
		}
		if i == len(s) {
			return out, true
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, false
		}
		rawKey := s[i : i+eq]
		if strings.ContainsRune(rawKey, ';') {
			return nil, false
		}
		key := strings.ToLower(strings.Join(strings.Fields(rawKey), " "))
		if key == "" {
			return nil, false
		}
		i += eq + 1
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val string
		if i < len(s) && (s[i] == '\'' || s[i] == '"') {
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
				return nil, false
			}
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			if i < len(s) && s[i] != ';' {
				return nil, false
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
		out[key] = val
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }
