// Package postgres is the PostgreSQL engine of provisioning: it checks and
// creates ODS databases on a tenant's server and writes registrations into
// its EdFi_Admin database.
//
// Every identifier goes through pgx.Identifier.Sanitize and every value is a
// bind parameter. It never drops, renames or alters a database it was not
// asked to by name, and it never logs a connection string.
package postgres
