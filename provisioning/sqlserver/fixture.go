package sqlserver

import _ "embed" // the fixture

// AdminFixture is the part of the ODS/API 7.x EdFi_Admin database that
// registration touches, in SQL Server's spelling: the same tables, keys and
// unique constraints as the PostgreSQL one. Tests load it into an empty
// database.
//
//go:embed edfi_admin_mssql.sql
var AdminFixture string
