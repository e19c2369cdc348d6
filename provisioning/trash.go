package provisioning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Recoverable deletes (provisioning.deleteRetention). A delete with a
// retention moves the database aside instead of dropping it: renamed, by
// identity, to its trash name, closed to every login, its reservation
// moved to the trash name and marked trashed. After the retention one
// replica drops it, by identity, once.

// DefaultDeleteRetention is how long a deleted database is kept when the
// configuration says nothing: a week covers a wrong click noticed after a
// weekend or a school holiday's long weekend, and a week of deletes is
// seldom more than a server's spare disk (docs/configuration.md).
const DefaultDeleteRetention = 7 * 24 * time.Hour

// TrashPrefix begins every trash name: the system's own, apart from any
// naming pattern an ODS database follows, so nothing a request names can
// meet it.
const TrashPrefix = SystemPrefix + "trash_"

// StateTrashed is a reservation whose database a delete moved aside: it is
// held under the trash name, with the name it had, until it is purged or
// restored.
const StateTrashed ReservationState = "trashed"

// TrashName is the name the database res holds goes under when it is
// deleted with a retention: the same for every delivery of that delete,
// and for no other database (the identity is part of it).
func TrashName(res Reservation) string {
	key := res.Database + "\x00" + res.Owner.Tenant + "\x00" + strconv.Itoa(res.Owner.InstanceID) + "\x00" + res.Owner.Line.String() + "\x00" + res.Identity
	h := sha256.Sum256([]byte(key))
	return TrashPrefix + hex.EncodeToString(h[:12])
}

// Trashed is a database held in trash, as its reservation records it.
type Trashed struct {
	// Name is the trash name the database is under now.
	Name string
	// Original is the name it had when it was deleted.
	Original  string
	Owner     Owner
	Identity  string
	DeletedAt time.Time
	PurgeAt   time.Time
	// Generation is the ledger's generation the delete settled at: a
	// restore registers the instance one past it, so that its next rename
	// or delete is a job of its own, never one the stream holds already.
	Generation int
	// Bytes is the database's size on disk (0 when it is gone, or a
	// listing was asked without sizes).
	Bytes int64
}

// Purged is what a purge did with one trashed database.
type Purged struct {
	Trashed
	// Dropped is true when this purge dropped it; false when it was gone
	// already (an earlier purge died before forgetting it).
	Dropped bool
	// Err is why it was not dropped: ErrConflict when the database under
	// its trash name is not the one the system moved there. Such a
	// database is never touched, and its record stays.
	Err error
}

// Trasher is an engine that can hold deleted databases in trash.
type Trasher interface {
	// TrashDatabase moves owner's database name aside, by identity, as
	// DropDatabase would drop it: renamed to its TrashName, closed to
	// every login with its sessions ended, and its reservation moved to
	// the trash name as trashed, to be purged after retention, with the
	// delete's ledger generation. moved is false, with no error, when an
	// earlier delivery did it or the database is gone.
	TrashDatabase(ctx context.Context, name string, owner Owner, retention time.Duration, generation int) (moved bool, err error)
	// Trash lists the databases held in trash, with their sizes.
	Trash(ctx context.Context) ([]Trashed, error)
	// PurgeDue drops every trashed database whose retention has passed,
	// each by whichever replica takes it first, once.
	PurgeDue(ctx context.Context) ([]Purged, error)
	// Purge drops one trashed database now, by its trash name.
	Purge(ctx context.Context, trashName string) (Purged, error)
}

// Restorer is a Trasher that can put a trashed database back.
type Restorer interface {
	Trasher
	// Restore renames a trashed database back, by identity, to name (not
	// in use), opens it to logins again and marks its reservation made for
	// its owner.
	Restore(ctx context.Context, trashName, name string) (Trashed, error)
}
