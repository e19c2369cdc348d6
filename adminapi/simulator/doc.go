// Package simulator is an in-memory Ed-Fi Admin API 2.2.2 that serves the
// project's Admin API contract (adminapi-contract.md) over net/http: client
// registration and tokens, tenants, the Admin Console's instance requests
// (/adminconsole/odsInstances), the registered instances (/v2/odsInstances)
// and the worker endpoints (/adminconsole/instances...). It stands in for a
// real Admin API in `instancemgr dev` and in integration tests, and is held
// to the contract as strictly as the client: a client that works against the
// simulator must work against Admin API 2.2.2, so where the contract is silent
// the simulator takes the stricter reading an ASP.NET Core minimal API would
// (415 for a body that is not JSON, 400 for a route id that is not a number).
//
// Decisions where the contract is silent (tests pin each one):
//
//   - Routes match case-insensitively and ignore one trailing slash. An
//     unknown route is 404 and a known route with the wrong method is 405
//     with an Allow header, both before authentication, as ASP.NET routing
//     answers them.
//   - A Tenant header names a tenant case-insensitively; an unknown name is
//     400 (checked after the bearer token, so anonymous callers learn no
//     tenant names). With the header, every endpoint sees only that tenant.
//     Without it, console endpoints use the body's tenantId/tenantName, else
//     the first tenant; worker endpoints (/adminconsole/instances) see every
//     tenant, and tenantName narrows them. A body tenant that contradicts the
//     header is a validation error.
//   - Validation follows Admin API 2.2.2's validators: name required, at
//     most 58 characters when Options.Engine is PostgreSQL (the default)
//     and 100 for SqlServer; instanceType required, at most 100; tenantId
//     required; tenantName required, at most 250, and stored as given
//     (2.2.2 does not check that such a tenant exists; the worker views
//     report it as stored, and it decides nothing: the tenant is the
//     Tenant header's, else the body tenantId's); context keys and values
//     required, at most 50 each. Lengths count UTF-16 units, as .NET does.
//   - Instance names are unique per tenant case-insensitively (SQL Server's
//     default collation) and, as in Admin API 2.2.2, a Deleted instance keeps
//     its name. Context keys must be unique (case-sensitive), derivative
//     types unique per instance (the EdFi_Admin tables have these keys).
//   - PUT is 409 while a rename or delete is pending; a name change moves
//     Completed, Rename_Failed and Delete_Failed to Pending_Rename and
//     leaves other statuses alone. A Deleted instance may be changed, as in
//     Admin API 2.2.2 (which checks no status): it stays Deleted under its
//     new name, and a completed then registers it under that name.
//   - The worker POSTs validate their body before looking the instance up
//     (400 before 404), as Admin API 2.2.2's handlers do. A connection string
//     must be what Npgsql or SqlClient parses: ADO.NET key=value pairs
//     naming a server and a database (a postgres:// URL is a 400). completed
//     is 204 on Completed and, as in Admin API 2.2.2, which checks for
//     Completed alone, registers the instance again from every other status
//     and moves it to Completed: from Deleted that puts a deleted instance
//     back (a new odsInstanceId, also without RegistrationAdminAPI); from
//     Pending_Rename, Rename_Failed, Pending_Delete and Delete_Failed it
//     logs a warning, as no worker calls it there. renamed validates its
//     connection string like completed. deleted and deleteFailed accept any
//     status, as the contract says, but log a warning outside the lifecycle.
//   - With Options.Registration RegistrationAdminAPI and each tenant's
//     EdFi_Admin (Options.AdminDatabases), the handlers write EdFi_Admin as
//     2.2.2 does (the contract's "Where the registration lives"), each in one
//     transaction: completed inserts the instance row, its contexts, its
//     derivatives (empty connection string), an API client of the Admin
//     Console's application and vendor (key and secret generated, not
//     hashed) and its link, and the worker views then report the client's
//     key and secret, and oAuthUrl and resourceUrl under the discovery
//     URL; a PUT that renames removes those rows, and every PUT resets
//     odsInstanceId to 0; renamed inserts them again under the new name
//     with a new client; deleted removes them. completed on a Deleted
//     instance inserts them again from the instance's own contexts and
//     derivatives (a delete keeps them). completed never removes rows
//     first, so from Pending_Delete or Delete_Failed, whose rows are still
//     there under the same name and type, EdFi_Admin's unique index on
//     (name, instancetype) refuses the second row: a 500 that changes
//     nothing, as 2.2.2's transaction does. completed and renamed on a
//     Completed instance, and deleted on a Deleted one, write nothing. A
//     failed write is a 500 (problem details); renamed then leaves the
//     instance Rename_Failed and deleted Delete_Failed.
//   - ConnectionString in an InstanceState is the last one received by completed or
//     renamed, including idempotent repeats.
//   - GET /v2/odsInstances lists every instance that has an odsInstanceId and
//     is not Deleted (the EdFi_Admin row exists until the delete), under the
//     name it had when last completed or renamed.
//   - With Options.Manage, the newest line's /v2/odsInstances/manage and
//     /v3/dataStores/manage are that line's handlers, written from Ed-Fi's
//     (manage.go), never instancemgr's own write routes
//     (bridge/managewrite), which are tested against them: FluentValidation
//     reports every failing rule of a property, names are unique among the
//     requests not Deleted and the dbo.OdsInstances rows (as stored, case
//     and all), a request is inserted PendingCreate with no database name,
//     and a delete moves only a Created request to PendingDelete.
//   - Integer ids below 1 are unknown (404); ids that are not integers are
//     400. GET /adminconsole/tenants reports edfiApiDiscoveryUrl as
//     scheme://host/api/ of the request; nothing is served there.
//
// Faults (Fault, InjectFault) are consulted before routing, in the order
// they were injected; the first that matches a call and is selected by its
// Share applies, and only it consumes one of its Times. Share decisions come
// from a PCG generator per fault seeded with Options.FaultSeed and the
// fault's ordinal, so a run is reproducible for a given order of calls.
// Worker calls are counted in InstanceState.Calls before faults apply, so a faulted
// call counts.
//
// The fault plan is also served, without a bearer token, at
// /_simulator/faults: POST a JSON array of faults to add them, DELETE to
// clear them, GET to see what is left. A fault reads
//
//	{"method": "POST", "path": "/adminconsole/instances/*/completed",
//	 "status": 503, "delay": "250ms", "drop": false, "times": 3, "share": 0.5}
//
// where delay is a Go duration string or a number of milliseconds. Anyone who
// can reach a simulator can break it, so expose one only in test and dev
// deployments: `instancemgr simulator` and `dev` listen on loopback only
// unless -allow-non-loopback-for-tests. GET /_simulator/instances, also
// without a token, reports every record without its connection string
// (which carries the ODS password); no route without a token returns one.
//
// The simulator must never be deployed as a real Admin API: it keeps
// everything in memory, accepts any client that registers, and its fault
// endpoints are unauthenticated. It never logs a client secret, a token or a
// connection string, and touches no database but the EdFi_Admin it is
// given with RegistrationAdminAPI or Manage.
package simulator
