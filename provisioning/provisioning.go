package provisioning

import (
	"context"
	"errors"
)

// Engine acts on one database server (the tenant's "master" connection).
type Engine interface {
	// DatabaseExists reports whether a database of that exact name exists.
	DatabaseExists(ctx context.Context, name string) (bool, error)
	// CreateDatabase copies template into a new database. It returns
	// created=false, and no error, when the database already exists
	// (another delivery of the same job got there first).
	CreateDatabase(ctx context.Context, name, template string) (created bool, err error)
	// RenameDatabase renames old to new after ending or awaiting the
	// sessions on old. Both names pass the engine's Guard first.
	RenameDatabase(ctx context.Context, old, new string) error
	// DropDatabase drops name, ending its sessions; an absent database is
	// not an error. The name passes the engine's Guard first.
	DropDatabase(ctx context.Context, name string) (dropped bool, err error)
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
	Tenant        string
	InstanceID    int
	OdsInstanceID int
	Database      string
	Name          string
	// Generation counts finished renames (and failed ones), so that each
	// rename of the same instance is a new job.
	Generation int
}

// Renaming is a rename's registration change.
type Renaming struct {
	Tenant           string
	InstanceID       int
	NewName          string
	NewDatabase      string
	ConnectionString string
}

// ErrNotRecorded means the ledger has no entry for the instance: the system
// did not create it, or has deleted it.
var ErrNotRecorded = errors.New("instance not recorded by instancemgr")

// Registry writes registrations and the system's ledger in an EdFi_Admin
// database. Every write takes a lock on the instance and calls its
// completion inside the same transaction, after the writes and before the
// commit; when the completion fails everything is rolled back.
type Registry interface {
	Lookup(ctx context.Context, tenant string, instanceID int) (Record, error)
	Register(ctx context.Context, reg Registration, complete func(ctx context.Context, res RegisterResult) error) (RegisterResult, error)
	Rename(ctx context.Context, ren Renaming, complete func(ctx context.Context, before Record) error) error
	// RenameFailed advances the generation without renaming, so the next
	// rename request is a new job.
	RenameFailed(ctx context.Context, tenant string, instanceID int, complete func(ctx context.Context) error) error
	// Unregister removes the instance's rows (contexts, derivatives, API
	// client links, the instance) and its ledger entry.
	Unregister(ctx context.Context, tenant string, instanceID int, complete func(ctx context.Context, before Record) error) error
}

// ErrInvalidName marks a name that the naming rule refuses. It is terminal:
// retrying cannot help.
var ErrInvalidName = errors.New("invalid database name")

// ErrConflict marks a state the system will not "fix": both the old and the
// new database exist, or neither. It is terminal.
var ErrConflict = errors.New("conflict")

// ErrTransient marks a failure that is expected to heal (a busy template, a
// lost connection); the job is retried with backoff.
var ErrTransient = errors.New("transient failure")
