// Package connstr parses, checks and rebuilds database connection strings in
// the syntaxes operators already hold: Npgsql's ADO.NET form from the Ed-Fi
// appsettings (where the ODS template has {0} for the database name),
// PostgreSQL URLs (postgres://, postgresql://), and SqlClient's ADO.NET form
// for SQL Server.
//
// A parsed PostgreSQL string can be rebuilt in Npgsql form (what the ODS/API
// reads from dbo.odsinstances) or in libpq keyword/value form (what pgx and
// pgxpool parse). ADO.NET quoting follows .NET's DbConnectionStringBuilder in
// both directions, so ADONet output parses back to the same Conn.
//
// It must never put a password into a log line or an error message. Errors
// name the problem and the key, or the position of a segment, never a value
// and never the input; Redacted is the only form meant for logs.
package connstr
