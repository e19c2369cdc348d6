// Package provisioning holds what the consumer needs to act on a database
// server, behind small interfaces with one implementation per engine
// (provisioning/postgres and provisioning/sqlserver): checking and
// creating ODS databases, and registering them in EdFi_Admin.
//
// It must never run a destructive statement on a database the system did not
// create, and never build SQL by concatenating an unquoted name or a value:
// identifiers go through the engine's quoting function, values are bind
// parameters.
package provisioning
