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
}

// Registration is what EdFi_Admin records about an ODS instance.
type Registration struct {
	// LockKey serialises every registration of one instance, so two
	// deliveries of the same job can never both insert.
	LockKey          string
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

// Registry writes registrations in an EdFi_Admin database.
type Registry interface {
	// Register makes sure the registration exists and calls complete inside
	// the same transaction, after the writes and before the commit. When
	// complete fails, everything is rolled back and its error returned.
	Register(ctx context.Context, reg Registration, complete func(ctx context.Context, res RegisterResult) error) (RegisterResult, error)
}

// ErrInvalidName marks a name that the naming rule refuses. It is terminal:
// retrying cannot help.
var ErrInvalidName = errors.New("invalid database name")

// ErrTransient marks a failure that is expected to heal (a busy template, a
// lost connection); the job is retried with backoff.
var ErrTransient = errors.New("transient failure")
