package provisioning

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Owner is the request a database belongs to: one instance of one tenant,
// of one Admin API line.
type Owner struct {
	Tenant     string
	InstanceID int
	Line       Line
}

func (o Owner) String() string {
	if o.Line == LineAdminConsole {
		return fmt.Sprintf("tenant %q instance %d", o.Tenant, o.InstanceID)
	}
	return fmt.Sprintf("tenant %q instance %d (%s)", o.Tenant, o.InstanceID, o.Line)
}

// ReservationState says how far the system got with a reserved name.
type ReservationState string

// Reservation states. Only a name in StateMaking or StateMade may be
// adopted when its database already exists: the system itself was making
// it (on a Publisher, only StateMade: its copy gets the name as it is
// marked made). A database that exists under a name merely reserved was
// made by someone else.
const (
	StateReserved ReservationState = "reserved" // name held; nothing made yet
	StateMaking   ReservationState = "making"   // CREATE or RENAME under way
	StateMade     ReservationState = "made"     // the database is the system's
)

// Reservation is the server's record that a database name belongs to one
// request.
type Reservation struct {
	Database string
	Owner    Owner
	State    ReservationState
	// Identity is the server's identity of the database the system made
	// (or, while making, is making) under the name: PostgreSQL's oid, SQL
	// Server's database_id with its create_date. Empty when none is
	// recorded: nothing made yet, or made by a version that recorded none.
	// A database under the name is the system's only when its identity is
	// this one.
	Identity string
}

// CheckOwner is the ownership rule for the reservation found under name
// (ok false: none): nil only when owner holds exactly that name, else
// ErrConflict naming the holder. Every engine applies it.
func CheckOwner(res Reservation, ok bool, name string, owner Owner) error {
	switch {
	case !ok:
		return fmt.Errorf("%w: database name %q is not reserved for %s", ErrConflict, name, owner)
	case res.Owner != owner:
		return fmt.Errorf("%w: database name %q is reserved for %s, not for %s", ErrConflict, res.Database, res.Owner, owner)
	case res.Database != name:
		return fmt.Errorf("%w: database name %q differs only in letter case from %q, reserved for %s", ErrConflict, name, res.Database, res.Owner)
	}
	return nil
}

// CheckMade is CheckOwner for a database the engine is to rename or drop:
// the reservation must also say the system made it.
func CheckMade(res Reservation, ok bool, name string, owner Owner) error {
	if err := CheckOwner(res, ok, name, owner); err != nil {
		return err
	}
	if res.State == StateReserved {
		return fmt.Errorf("%w: database %q is reserved for %s but instancemgr never made it", ErrConflict, name, owner)
	}
	return nil
}

// Engine acts on one database server (the tenant's "master" connection).
//
// The ownership rule lives here: the server keeps a reservation per
// database name (unique, case-insensitively), committed before the database
// is made, and CreateDatabase, RenameDatabase and DropDatabase act only on
// names reserved for the owner they are given.
type Engine interface {
	// DatabaseExists reports whether a database of that exact name exists.
	DatabaseExists(ctx context.Context, name string) (bool, error)
	// Identity is the server's identity of the database of exactly that
	// name (Inspector); with Reservation, what Holds reads.
	Identity(ctx context.Context, name string) (identity string, exists bool, err error)
	// Reserve holds name for owner. It returns the reservation, with
	// fresh=true when this call made it; a name held by another owner (or
	// the same name in another letter case) is ErrConflict naming the
	// holder.
	Reserve(ctx context.Context, name string, owner Owner) (res Reservation, fresh bool, err error)
	// Reservation returns who holds name; ok is false when nobody does.
	Reservation(ctx context.Context, name string) (res Reservation, ok bool, err error)
	// Release gives up owner's reservation of name, but never one whose
	// database the system made and that still exists. Releasing a name not
	// held by owner does nothing.
	Release(ctx context.Context, name string, owner Owner) error
	// CreateDatabase copies template into a new database under a name
	// reserved for owner. It returns created=false, and no error, when the
	// database exists and is the system's (another delivery of the same
	// job got there first); a database that exists under a name only
	// reserved is ErrConflict. An engine that can (a Publisher, through
	// MakePublished) counts a database as the system's only when the
	// reservation says made; others (Make) also under making.
	CreateDatabase(ctx context.Context, name, template string, owner Owner) (created bool, err error)
	// RenameDatabase renames old to new after ending or awaiting the
	// sessions on old. Both names pass the engine's Guard and must be
	// reserved for owner, old as made and holding the database the system
	// made (by identity). renamed is false, with no error, when an earlier
	// delivery did it: old is gone and new holds that very database. Both
	// present, or neither, or anything else under new, is ErrConflict.
	RenameDatabase(ctx context.Context, old, new string, owner Owner) (renamed bool, err error)
	// DropDatabase drops name, ending its sessions; an absent database is
	// not an error. The name passes the engine's Guard and must be reserved
	// for owner as made, and the database under it must be the one the
	// system made (by identity).
	DropDatabase(ctx context.Context, name string, owner Owner) (dropped bool, err error)
	// Import records a database that an earlier version made, from its
	// ledger, as reserved and made for owner. A name held by another owner
	// is ErrConflict and left as it is; a name with no database under it
	// is left unreserved (the ledger read may predate a delete or rename
	// that moved the database away, and nothing releases a made
	// reservation of an instance that has moved on).
	Import(ctx context.Context, name string, owner Owner) error
}

// Registration is what EdFi_Admin records about a new ODS instance.
type Registration struct {
	// Tenant and InstanceID identify the Admin API request; registrations
	// of one instance are serialised on them, so two deliveries of the same
	// job can never both insert.
	Tenant           string
	InstanceID       int
	Database         string
	Name             string
	InstanceType     string
	ConnectionString string
	Contexts         []Context
	Derivatives      []string
	// Generation is the ledger generation a new entry starts at: 0 for a
	// create; one past the delete's for a restore (Trashed.Generation).
	Generation int
}

// Context is one row of dbo.odsinstancecontexts.
type Context struct{ Key, Value string }

// RegisterResult says what Register found and did.
type RegisterResult struct {
	OdsInstanceID int
	// Existed is true when the instance row was already there.
	Existed bool
}

// Record is the system's own ledger entry for an instance it provisioned:
// where its database is now, whatever the Admin API's name says.
type Record struct {
	Tenant     string
	InstanceID int
	// Line is the Admin API line the instance was requested on.
	Line          Line
	OdsInstanceID int
	Database      string
	Name          string
	// Generation counts the rename and delete jobs that settled while the
	// instance lived on (renames done or failed, deletes failed), so that
	// each new request is a new job and a stale delivery can tell it is.
	Generation int
}

// Owner is the request the record belongs to.
func (r Record) Owner() Owner { return Owner{Tenant: r.Tenant, InstanceID: r.InstanceID, Line: r.Line} }

// Renaming is a rename's registration change.
type Renaming struct {
	Tenant           string
	InstanceID       int
	NewName          string
	NewDatabase      string
	ConnectionString string
	// Generation is the ledger generation the rename job was made for; a
	// ledger that has moved past it makes the rename ErrStale.
	Generation int
}

// ErrNotRecorded means the ledger has no entry for the instance: the system
// did not create it, or has deleted it.
var ErrNotRecorded = errors.New("instance not recorded by instancemgr")

// ErrStale means the ledger has moved past the generation a job was made
// for: a newer rename or delete request settled since. The job has nothing
// left to do; it is not an error to report.
var ErrStale = errors.New("stale job")

// Tx is a registry's transaction, through the engine's driver. A registry
// hands it to each completion as an argument, as River's
// JobCompleteTx(ctx, tx, job) takes the caller's: what a completion writes
// in it (the newest Admin API's request status) commits or rolls back with
// the registration. The registry alone commits or rolls it back.
type Tx interface {
	Exec(ctx context.Context, sql string, args ...any) error
	QueryRow(ctx context.Context, sql string, args ...any) ResultRow
	Query(ctx context.Context, sql string, args ...any) (ResultRows, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// ResultRow is one result row; Scan returns ErrNoRows when there is none.
type ResultRow interface{ Scan(dest ...any) error }

// ResultRows is a result set.
type ResultRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// ErrNoRows is what a driver's ResultRow.Scan returns when there is no row.
var ErrNoRows = errors.New("no rows")

// Registry writes registrations and the system's ledger in an EdFi_Admin
// database. Every write takes a lock on the instance and calls its
// completion inside the same transaction, with it (tx), after the writes
// and before the commit; when the completion fails everything is rolled
// back. A registry with no SQL transaction (the in-memory one of the
// tests) passes a nil tx.
// Its lookups and writes are of one Admin API line, the deployment's
// (adminApi.flavor): the ledger is keyed (line, tenant, instance id).
type Registry interface {
	Lookup(ctx context.Context, tenant string, instanceID int) (Record, error)
	// Records lists the whole ledger, every line's (to import it as
	// reservations).
	Records(ctx context.Context) ([]Record, error)
	// Register writes the registration and the ledger entry. A ledger entry
	// for the same instance is taken as an earlier delivery's only when it
	// names the same database and name and its dbo.odsinstances row is
	// still there under that name; anything else is ErrConflict.
	Register(ctx context.Context, reg Registration, complete func(ctx context.Context, tx Tx, res RegisterResult) error) (RegisterResult, error)
	// Rename moves the registration and the ledger to the new database, or
	// returns ErrStale when the ledger is past ren.Generation.
	Rename(ctx context.Context, ren Renaming, complete func(ctx context.Context, tx Tx, before Record) error) error
	// RenameFailed and DeleteFailed advance the generation, so that the
	// next request is a new job; both return ErrStale when the ledger is
	// past generation. A rename that failed after its database was renamed
	// passes moved (its Generation unused): the ledger and, with the worker
	// registering, the connection strings of the instance row and its
	// derivatives follow the database to moved.NewDatabase, so nothing
	// names a database that is gone; the instance row keeps its name.
	// moved nil changes nothing else.
	RenameFailed(ctx context.Context, tenant string, instanceID, generation int, moved *Renaming, complete func(ctx context.Context, tx Tx) error) error
	DeleteFailed(ctx context.Context, tenant string, instanceID, generation int, complete func(ctx context.Context, tx Tx) error) error
	// Unregister removes the instance's rows (contexts, derivatives, API
	// client links, the instance) and its ledger entry.
	Unregister(ctx context.Context, tenant string, instanceID int, complete func(ctx context.Context, tx Tx, before Record) error) error
}

// ErrUnknownTenant marks a tenant with no database mapping: no entry of its
// own and no default. It is terminal: the job is never routed elsewhere.
var ErrUnknownTenant = errors.New("tenant has no database mapping")

// ErrInvalidName marks a name that the naming rule refuses. It is terminal:
// retrying cannot help.
var ErrInvalidName = errors.New("invalid database name")

// ErrConflict marks a state the system will not "fix": a database or a
// registration that belongs to another request, both the old and the new
// database of a rename, or neither. It is terminal.
var ErrConflict = errors.New("conflict")

// ErrRejected marks a statement the database refused for a reason that a
// retry cannot change (SQLSTATE classes 22 and 23: bad data, a constraint).
// It is terminal, and the message carries the SQLSTATE.
var ErrRejected = errors.New("rejected by the database")

// ErrTransient marks a failure that is expected to heal (a busy template, a
// lost connection); the job is retried with backoff.
var ErrTransient = errors.New("transient failure")

// Listed is a reservation as a server's listing shows it, with when its
// state last changed.
type Listed struct {
	Reservation
	Updated time.Time
}

// Row is one dbo.odsinstances row of EdFi_Admin (no connection string:
// reconcile never needs it, and it may hold a password).
type Row struct {
	OdsInstanceID int
	Name          string
	InstanceType  string
}

// Inventory is what reconcile reads of one server, and the one change it
// may make there. The SQL engines implement it beside Engine.
type Inventory interface {
	// Identities lists every database on the server: its identity
	// (Inspector.Identity) by its name.
	Identities(ctx context.Context) (map[string]string, error)
	// Reservations lists the server's reservations, by name; none when the
	// system has never reserved anything there.
	Reservations(ctx context.Context) ([]Listed, error)
	// ReleaseUnused deletes owner's reservation of exactly name only while
	// it is still in state reserved and no database of that name exists,
	// both checked by the one statement that deletes. released is false
	// when the row did not qualify (any more).
	ReleaseUnused(ctx context.Context, name string, owner Owner) (released bool, err error)
}

// RegistryInventory is what reconcile reads of one EdFi_Admin database.
type RegistryInventory interface {
	// Records lists the ledger; none when it does not exist yet.
	Records(ctx context.Context) ([]Record, error)
	// Rows lists dbo.odsinstances.
	Rows(ctx context.Context) ([]Row, error)
}
