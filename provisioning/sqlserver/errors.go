package sqlserver

import (
	"errors"
	"fmt"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// SQL Server error numbers the engine and registry act on.
const (
	errDatabaseExists = 1801  // CREATE DATABASE (or MODIFY NAME to) a name that exists
	errNoSuchDatabase = 911   // a database of that name does not exist
	errNotMade        = 51002 // guardSQL: the database is not the one the system made
	errNameInUse      = 51003 // restoreTrashSQL: a database holds the name to restore to
	errUniqueKey      = 2627  // PRIMARY KEY or UNIQUE constraint
	errUniqueIndex    = 2601  // unique index
)

// transientNumbers heal by waiting: sessions in the way, locks, deadlocks,
// a server or database briefly unavailable, a login the server is not ready
// for.
var transientNumbers = map[int32]bool{
	1205:  true, // deadlock victim
	1222:  true, // lock request time out
	3101:  true, // exclusive access could not be obtained: the database is in use
	3702:  true, // cannot drop the database: it is in use
	5030:  true, // the database could not be exclusively locked
	5061:  true, // ALTER DATABASE failed: a lock could not be placed
	5064:  true, // changes to the state or options could not be made now
	4060:  true, // cannot open the database requested by the login
	18456: true, // login failed (a password being rotated, a server starting)
	40197: true, // Azure: the service had an error processing the request
	40501: true, // Azure: the service is busy
	40613: true, // Azure: the database is not currently available
	49918: true, // Azure: not enough resources
	3021:  true, // cannot perform a backup or restore while another is in progress
}

// rejectedNumbers will fail again: bad data, a constraint, a missing or
// unreadable backup.
var rejectedNumbers = map[int32]bool{
	515:  true, // cannot insert NULL
	547:  true, // foreign key or check constraint
	2628: true, // string or binary data would be truncated
	8152: true, // string or binary data would be truncated (older servers)
	3201: true, // cannot open backup device
	3241: true, // the media family is incorrectly formed
}

// numbers are the SQL Server error numbers of err, every one the server
// sent (a failed RESTORE ends with 3013, "terminating abnormally", after the
// error that says why); none when the server did not answer.
func numbers(err error) []int32 {
	var e mssql.Error
	if !errors.As(err, &e) {
		var p *mssql.Error
		if !errors.As(err, &p) || p == nil {
			return nil
		}
		e = *p
	}
	if len(e.All) == 0 {
		return []int32{e.Number}
	}
	out := make([]int32, 0, len(e.All))
	for _, a := range e.All {
		out = append(out, a.Number)
	}
	return out
}

// classify marks errors by number into the provisioning classes, as
// transient() does for PostgreSQL's SQLSTATE classes: transient when any
// number the server sent heals by waiting, rejected when any will fail
// again. An error that is not an answer from the server (network,
// time-out) is transient.
func classify(err error) error {
	if err == nil {
		return nil
	}
	ns := numbers(err)
	if len(ns) == 0 {
		return fmt.Errorf("%w: %w", provisioning.ErrTransient, err)
	}
	for _, n := range ns {
		if transientNumbers[n] {
			return fmt.Errorf("%w: %w", provisioning.ErrTransient, err)
		}
	}
	for _, n := range ns {
		if rejectedNumbers[n] {
			return fmt.Errorf("%w (error %d): %w", provisioning.ErrRejected, n, err)
		}
	}
	return err
}

func hasNumber(err error, want ...int32) bool {
	for _, n := range numbers(err) {
		for _, w := range want {
			if n == w {
				return true
			}
		}
	}
	return false
}

func isUniqueViolation(err error) bool { return hasNumber(err, errUniqueKey, errUniqueIndex) }
