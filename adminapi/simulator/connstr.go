package simulator

import (
	"strings"

	"github.com/edfi-tools/instancemgr/internal/connstr"
)

const (
	msgConnRequired = "Connection string is required."
	msgConnInvalid  = "Connection string is not valid. Please check the connection string and try again."
)

// validateConnectionString returns "" when cs is a usable PostgreSQL or SQL
// Server connection string, else the message Admin API 2.2.2 answers with.
// Usable means what Npgsql or SqlClient would parse: ADO.NET key=value
// pairs (a postgres:// URL is not one), naming a server and a concrete
// database, not a {0} template.
func validateConnectionString(cs string) string {
	if strings.TrimSpace(cs) == "" {
		return msgConnRequired
	}
	if strings.Contains(cs, "://") || connstr.Validate(cs) != nil || strings.Contains(cs, connstr.Placeholder) {
		return msgConnInvalid
	}
	return ""
}
