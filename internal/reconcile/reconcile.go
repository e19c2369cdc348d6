// Package reconcile compares, per tenant, what the four records of an
// instance say: the Admin API's status, the system's ledger (instancemgr.
// instances in EdFi_Admin), the dbo rows of EdFi_Admin, and the server's
// databases with their reservations (instancemgr.reservations). Each
// disagreement is a Difference with the command that resolves it.
//
// It reads; the only change it can make (Fix) is one that cannot lose data.
// It never drops, renames or adopts a database: the ownership rule
// (provisioning.CheckOwner) leaves those to the request that reserved the
// database, or to an operator.
package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// Kind names a sort of difference.
type Kind string

// The kinds of difference.
const (
	// OrphanDatabase: a database the system made (or was making) for a
	// request, that no ledger entry names and no live job will finish: left
	// by a failed create or rename, or by a request withdrawn since.
	OrphanDatabase Kind = "orphan_database"
	// ForeignDatabase: a database the naming pattern could have made that
	// the system did not make (no reservation, or one merely reserved). Not
	// the system's; never touched.
	ForeignDatabase Kind = "foreign_database"
	// MissingDatabase: a ledger entry whose database does not exist.
	MissingDatabase Kind = "missing_database"
	// UnreservedDatabase: a ledger entry whose database is not reserved for
	// its instance (an upgrade not yet imported, or another request's).
	UnreservedDatabase Kind = "unreserved_database"
	// MissingRegistration: a Completed instance whose dbo.odsinstances row
	// is gone.
	MissingRegistration Kind = "missing_registration"
	// UntrackedInstance: a Completed instance the ledger does not know.
	UntrackedInstance Kind = "untracked_instance"
	// OrphanRegistration: a ledger entry (and its dbo row) for an instance
	// the Admin API no longer has, or has Deleted.
	OrphanRegistration Kind = "orphan_registration"
	// DeadRequest: a pending request whose job ended as a dead letter.
	DeadRequest Kind = "dead_request"
	// StuckRequest: a pending request whose job was published longer ago
	// than the pending-after limit, with no dead letter; or a delete that
	// the configuration will never carry out.
	StuckRequest Kind = "stuck_request"
	// StaleReservation: a reservation whose database does not exist, that
	// no ledger entry names and no live job holds.
	StaleReservation Kind = "stale_reservation"
	// Unchecked: a source could not be read, so some checks were not made.
	Unchecked Kind = "unchecked"
)

// Difference is one disagreement between the records.
type Difference struct {
	Tenant     string `json:"tenant"`
	InstanceID int    `json:"instanceId,omitempty"`
	Kind       Kind   `json:"kind"`
	Database   string `json:"database,omitempty"`
	Detail     string `json:"detail"`
	// Command resolves it, or says how to decide.
	Command string `json:"command,omitempty"`
	// Fixable says Fix may resolve it (instancemgr reconcile -fix); Fixed
	// that it did.
	Fixable bool `json:"fixable,omitempty"`
	Fixed   bool `json:"fixed,omitempty"`

	owner provisioning.Owner // of the reservation Fix releases
}

// Snapshot is everything read about one Admin API tenant.
type Snapshot struct {
	Name string
	// Engine is "postgres" or "sqlserver": the SQL of suggested commands.
	Engine string
	// Instances are the Admin API's requests of this tenant, all statuses.
	Instances []adminapi.WorkerInstance
	// Ledger is this tenant's part of the ledger.
	Ledger []provisioning.Record
	// Rows are the dbo.odsinstances rows of the tenant's EdFi_Admin (which
	// tenants of one configuration entry share), by id.
	Rows map[int]provisioning.Row
	// Reservations are the server's reservations held for this tenant.
	Reservations []provisioning.Listed
	// Databases are every database on the tenant's server.
	Databases []string
	// Identities are their identities, by name; a database whose identity
	// differs from the one its reservation recorded is not the system's.
	Identities map[string]string
	// Foreign are the databases of the server that match the naming
	// pattern for this tenant, are not protected, and that nobody reserved.
	Foreign []string
	// AdminAPIRegisters is provisioning.registration: adminapi.
	AdminAPIRegisters bool
	// AllowDelete is provisioning.allowDelete.
	AllowDelete bool
	// Line is the Admin API line Instances come from (adminApi.flavor).
	// Ledger entries and reservations of the other line (instances made
	// before the flavor changed) are checked against their databases, not
	// against Instances, whose ids are another table's.
	Line provisioning.Line
}

// JobState is the last job published on one subject.
type JobState struct {
	Seq       uint64
	Published time.Time
	// Live is true while the durable consumer may still deliver it (above
	// its ack floor): queued, running, or waiting for a retry.
	Live bool
}

// Jobs is what reconcile reads of JetStream.
type Jobs interface {
	// Last is the last job on subject; ok false when there is none.
	Last(ctx context.Context, subject string) (JobState, bool, error)
}

// Options are the checks' settings.
type Options struct {
	// PendingAfter is how long a request may stay pending after its job
	// was published before it is reported.
	PendingAfter time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// checker holds one tenant's indexes while it is checked.
type checker struct {
	t       Snapshot
	o       Options
	jobs    Jobs
	jobsErr error // JetStream could not be read: job-dependent checks skipped
	dead    map[string]jobs.StoredDead
	inst    map[int]adminapi.WorkerInstance
	ledger  map[int]provisioning.Record // the tenant's entries of its line
	// otherLine are the other line's entries, by lower-case database.
	otherLine map[string]provisioning.Record
	dbs       map[string]bool // exact names
	dbsCI     map[string]bool // lower case
	byName    map[string]provisioning.Listed
	out       []Difference
}

// Check compares one tenant's records. dead are the dead letters read
// (nil with deadErr when JetStream could not be read; jobs may then fail
// too, and the checks that need it are left out and said so).
func Check(ctx context.Context, t Snapshot, stream Jobs, dead []jobs.StoredDead, deadErr error, o Options) []Difference {
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &checker{t: t, o: o, jobs: stream, jobsErr: deadErr, dead: map[string]jobs.StoredDead{},
		inst: map[int]adminapi.WorkerInstance{}, ledger: map[int]provisioning.Record{},
		dbs: map[string]bool{}, dbsCI: map[string]bool{}, byName: map[string]provisioning.Listed{}, otherLine: map[string]provisioning.Record{}}
	for _, d := range dead {
		// The subject the consumer derived from the delivery, not the
		// body's, which anyone allowed to publish could have written.
		subject, ok := d.JobSubject()
		if !ok {
			continue
		}
		if prev, ok := c.dead[subject]; !ok || d.Seq > prev.Seq {
			c.dead[subject] = d
		}
	}
	for _, i := range t.Instances {
		c.inst[i.ID] = i
	}
	for _, r := range t.Ledger {
		if r.Line == t.Line {
			c.ledger[r.InstanceID] = r
		} else {
			c.otherLine[strings.ToLower(r.Database)] = r
		}
	}
	for _, d := range t.Databases {
		c.dbs[d], c.dbsCI[strings.ToLower(d)] = true, true
	}
	for _, r := range t.Reservations {
		c.byName[strings.ToLower(r.Database)] = r
	}
	c.requests(ctx)
	c.ledgerEntries(ctx)
	c.reservations(ctx)
	for _, name := range t.Foreign {
		c.add(Difference{Kind: ForeignDatabase, Database: name,
			Detail:  "matches the naming pattern but instancemgr never reserved it: not the system's, left alone",
			Command: "none needed; if it should become an instance's database, reserve it by hand as made for that request (docs/behaviour.md, \"Resolving a conflict\")"})
	}
	if c.jobsErr != nil {
		c.add(Difference{Kind: Unchecked, Detail: "JetStream could not be read, so dead letters, stuck requests and live jobs were not checked: " + c.jobsErr.Error(),
			Command: "check nats.url and the NATS credentials (instancemgr config check), then run reconcile again"})
	}
	sort.SliceStable(c.out, func(i, j int) bool {
		if c.out[i].InstanceID != c.out[j].InstanceID {
			return c.out[i].InstanceID < c.out[j].InstanceID
		}
		return c.out[i].Kind < c.out[j].Kind
	})
	return c.out
}

func (c *checker) add(d Difference) {
	d.Tenant = c.t.Name
	c.out = append(c.out, d)
}

// status is the instance's Admin API status; "" when the Admin API does
// not have it.
func (c *checker) status(id int) string { return c.inst[id].Status }

// pending reports whether a request of the instance is still to be done.
func pending(status string) bool {
	switch status {
	case adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusPendingRename, adminapi.StatusPendingDelete:
		return true
	}
	return false
}

// subject is the subject of the job for the instance's current request
// ("" when none is pending): the bridge's, with the ledger's generation.
func (c *checker) subject(id int) string {
	gen := strconv.Itoa(c.ledger[id].Generation)
	base := jobs.SubjectPrefix + ".%s." + jobs.SubjectToken(c.t.Name) + "." + c.token(id)
	switch c.status(id) {
	case adminapi.StatusPending, adminapi.StatusInProgress:
		return fmt.Sprintf(base, jobs.OpCreate)
	case adminapi.StatusPendingRename:
		return fmt.Sprintf(base, jobs.OpRename) + "." + gen
	case adminapi.StatusPendingDelete:
		return fmt.Sprintf(base, jobs.OpDelete) + "." + gen
	}
	return ""
}

// last reads the last job on subject; an error turns the job checks off.
func (c *checker) last(ctx context.Context, subject string) (JobState, bool) {
	if subject == "" || c.jobsErr != nil {
		return JobState{}, false
	}
	st, ok, err := c.jobs.Last(ctx, subject)
	if err != nil {
		c.jobsErr = err
		return JobState{}, false
	}
	return st, ok
}

// liveJob reports whether the instance's current request has a job the
// consumers may still deliver; unknown (true) when JetStream is unreadable,
// so nothing is reported stale on a guess.
func (c *checker) liveJob(ctx context.Context, id int) bool {
	st, ok := c.last(ctx, c.subject(id))
	if c.jobsErr != nil {
		return true
	}
	return ok && st.Live
}

// deadLetter is the dead letter of the instance's current job, unless a
// later copy of the job (a replay) was published after it.
func (c *checker) deadLetter(ctx context.Context, id int) (jobs.StoredDead, bool) {
	subject := c.subject(id)
	d, ok := c.dead[subject]
	if !ok {
		return d, false
	}
	if st, found := c.last(ctx, subject); found && st.Seq > d.Letter.StreamSequence {
		return d, false // replayed since
	}
	return d, true
}

// replay is the command that re-submits a dead letter.
func replay(d jobs.StoredDead) string {
	return fmt.Sprintf("instancemgr jobs dead show %d; after fixing the cause: instancemgr jobs dead replay %d", d.Seq, d.Seq)
}

// requests checks each Admin API request against the ledger, the rows and
// JetStream.
func (c *checker) requests(ctx context.Context) {
	for _, i := range c.t.Instances {
		rec, recorded := c.ledger[i.ID]
		switch {
		case i.Status == adminapi.StatusCompleted && !recorded:
			c.add(Difference{InstanceID: i.ID, Kind: UntrackedInstance,
				Detail:  "Completed, but the ledger has no entry for it: completed by something other than instancemgr, or its ledger entry was lost; a rename or delete of it will fail",
				Command: "find its database; if instancemgr made it, restore the ledger entry (" + c.sqlInsertLedger(i) + ")"})
		case i.Status == adminapi.StatusCompleted && c.t.AdminAPIRegisters && i.OdsInstanceID != nil:
			if _, ok := c.t.Rows[*i.OdsInstanceID]; !ok {
				c.add(Difference{InstanceID: i.ID, Kind: MissingRegistration, Database: rec.Database,
					Detail:  fmt.Sprintf("Completed with odsInstanceId %d, but dbo.odsinstances has no such row: the ODS/API cannot serve it", *i.OdsInstanceID),
					Command: "re-register it with the Admin API (its rows are the Admin API's in this mode): request a rename to its own name and back, or insert the row by hand"})
			}
		}
		if !pending(i.Status) {
			continue
		}
		if i.Status == adminapi.StatusPendingDelete && !c.t.AllowDelete {
			c.add(Difference{InstanceID: i.ID, Kind: StuckRequest, Database: rec.Database,
				Detail:  "Pending_Delete, but deletion is switched off (provisioning.allowDelete: false): the bridge will not publish it",
				Command: "to delete it, set provisioning.allowDelete: true and restart the bridge and consumers; otherwise ask the Admin Console user to withdraw the request"})
			continue
		}
		if d, ok := c.deadLetter(ctx, i.ID); ok {
			c.add(Difference{InstanceID: i.ID, Kind: DeadRequest, Database: rec.Database,
				Detail:  fmt.Sprintf("%s, and its job ended as dead letter %d (code %s): %s", i.Status, d.Seq, d.Letter.Code, firstLine(d.Letter.Reason)),
				Command: replay(d)})
			continue
		}
		st, ok := c.last(ctx, c.subject(i.ID))
		if !ok {
			// Not published yet (or JetStream unreadable): the Admin API
			// gives no time, so its age is unknown.
			continue
		}
		if age := c.o.Now().Sub(st.Published); age > c.o.PendingAfter {
			state := "waiting for a consumer or a retry"
			if !st.Live {
				state = "acknowledged or terminated without its status changing"
			}
			c.add(Difference{InstanceID: i.ID, Kind: StuckRequest, Database: rec.Database,
				Detail:  fmt.Sprintf("%s for %s since its job (stream sequence %d) was published; the job is %s", i.Status, age.Round(time.Second), st.Seq, state),
				Command: fmt.Sprintf("instancemgr jobs show %s %s; then look for job_id=%s in the consumers' logs (are any running?)", c.t.Name, c.token(i.ID), strings.TrimPrefix(c.subject(i.ID), jobs.SubjectPrefix+"."))})
		}
	}
}

// ledgerEntries checks each ledger entry against its instance, database,
// reservation and row.
func (c *checker) ledgerEntries(ctx context.Context) {
	for _, rec := range c.t.Ledger {
		i, known := c.inst[rec.InstanceID]
		ours := rec.Line == c.t.Line // another line's entry has no request here to compare
		if ours && (!known || i.Status == adminapi.StatusDeleted) {
			what := "the Admin API has no instance " + strconv.Itoa(rec.InstanceID)
			cmd := "if database " + rec.Database + " is not needed, drop it by hand, then remove the registration: " + c.sqlUnregister(rec)
			if known {
				what = "the instance is Deleted"
				cmd = fmt.Sprintf("the delete did not finish: find its job with instancemgr jobs show %s %s and put it back (instancemgr jobs dead replay SEQ for a dead letter); a delete delivered again while Deleted removes what is left", c.t.Name, c.token(rec.InstanceID))
			}
			c.add(Difference{InstanceID: rec.InstanceID, Kind: OrphanRegistration, Database: rec.Database,
				Detail: "the ledger (and dbo.odsinstances, when the worker registers) still has it, but " + what, Command: cmd})
		}
		exists := c.dbs[rec.Database]
		if !exists && (!ours || !c.liveJob(ctx, rec.InstanceID)) {
			c.add(Difference{InstanceID: rec.InstanceID, Kind: MissingDatabase, Database: rec.Database,
				Detail:  "the ledger names this database, which does not exist on the server",
				Command: fmt.Sprintf("restore %s from a backup; or, if the instance is to go, request its delete (DELETE /adminconsole/odsInstances/%d): a delete of a missing database only unregisters it", rec.Database, rec.InstanceID)})
		}
		if exists {
			res, ok := c.byName[strings.ToLower(rec.Database)]
			err := provisioning.CheckMade(res.Reservation, ok, rec.Database, rec.Owner())
			switch {
			case err != nil:
				c.add(Difference{InstanceID: rec.InstanceID, Kind: UnreservedDatabase, Database: rec.Database,
					Detail:  "the ledger names this database, but " + strings.TrimPrefix(err.Error(), provisioning.ErrConflict.Error()+": "),
					Command: "start a consumer: on first use of the tenant it reserves every ledger database as made; if another request holds the name, resolve it by hand (docs/behaviour.md, \"Resolving a conflict\")"})
			case c.swapped(res):
				c.add(Difference{InstanceID: rec.InstanceID, Kind: ForeignDatabase, Database: rec.Database,
					Detail:  fmt.Sprintf("the ledger names this database, but it is not the one instancemgr made (identity %s, instancemgr made %s): it was dropped and another made under its name; every job refuses to touch it", c.t.Identities[rec.Database], res.Identity),
					Command: "decide whose it is: if it is the instance's (restored from a backup, say), record its identity by hand: " + c.sqlRecordIdentity(res)})
			}
		}
		if ours && !c.t.AdminAPIRegisters && known && i.Status == adminapi.StatusCompleted {
			row, ok := c.t.Rows[rec.OdsInstanceID]
			switch {
			case !ok:
				c.add(Difference{InstanceID: rec.InstanceID, Kind: MissingRegistration, Database: rec.Database,
					Detail:  fmt.Sprintf("Completed, but dbo.odsinstances row %d that the ledger names is gone: the ODS/API cannot serve it", rec.OdsInstanceID),
					Command: fmt.Sprintf("insert the row again in EdFi_Admin (name %q, its instance type and the ODS connection string for %s) and point the ledger at it: %s", rec.Name, rec.Database, c.sqlPointLedger(rec))})
			case row.Name != rec.Name:
				c.add(Difference{InstanceID: rec.InstanceID, Kind: MissingRegistration, Database: rec.Database,
					Detail:  fmt.Sprintf("dbo.odsinstances row %d is named %q, the ledger says %q: someone changed it", rec.OdsInstanceID, row.Name, rec.Name),
					Command: fmt.Sprintf("rename the row back: UPDATE dbo.odsinstances SET name = %s WHERE odsinstanceid = %d", sqlString(rec.Name), rec.OdsInstanceID)})
			}
		}
	}
}

// swapped reports whether the database under a made reservation's name is
// not the one the reservation recorded.
func (c *checker) swapped(res provisioning.Listed) bool {
	current, ok := c.t.Identities[res.Database]
	return ok && res.State == provisioning.StateMade && res.Identity != "" && current != res.Identity
}

// reservations checks each of the tenant's reservations that no ledger
// entry explains.
func (c *checker) reservations(ctx context.Context) {
	for _, res := range c.t.Reservations {
		id := res.Owner.InstanceID
		if res.Owner.Line != c.t.Line {
			c.otherLineReservation(res)
			continue
		}
		if rec, ok := c.ledger[id]; ok && strings.EqualFold(rec.Database, res.Database) {
			continue // the instance's own database: checked with the ledger
		}
		if res.State == provisioning.StateTrashed {
			c.trashed(res)
			continue
		}
		exists := c.dbsCI[strings.ToLower(res.Database)]
		copyName := provisioning.ScratchName(res.Reservation) // a create's copy before it has its name
		status := c.status(id)
		statusText := status
		if statusText == "" {
			statusText = "unknown to the Admin API"
		}
		switch {
		case exists && res.State == provisioning.StateReserved:
			c.add(Difference{InstanceID: id, Kind: ForeignDatabase, Database: res.Database,
				Detail:  fmt.Sprintf("reserved for instance %d (%s), but the database exists and instancemgr never made it: its create or rename will end as a conflict", id, statusText),
				Command: "decide whose it is: rename it out of the way (it is not the system's), or, if it is this instance's, mark it made: " + c.sqlMarkMade(res)})
		case exists && c.swapped(res):
			c.add(Difference{InstanceID: id, Kind: ForeignDatabase, Database: res.Database,
				Detail:  fmt.Sprintf("reserved for instance %d (%s) as made, but the database under this name is not the one instancemgr made (identity %s, instancemgr made %s)", id, statusText, c.t.Identities[res.Database], res.Identity),
				Command: "decide whose it is: rename it out of the way (it is not the system's), or, if it is this instance's, record its identity by hand: " + c.sqlRecordIdentity(res)})
		case exists && c.liveJob(ctx, id):
			// Being made or renamed right now.
		case exists && res.State == provisioning.StateMaking && (res.Identity == "" || c.t.Identities[res.Database] != res.Identity):
			// The system's copy gets the name only once its identity is
			// recorded (PostgreSQL: as it is marked made; SQL Server: before
			// it is renamed), so this is not it.
			c.add(Difference{InstanceID: id, Kind: ForeignDatabase, Database: res.Database,
				Detail:  fmt.Sprintf("reserved for instance %d (%s) and marked making, but the database under this name is not instancemgr's copy (that gets the name only once its identity is recorded): someone else made it meanwhile, or an instancemgr before the publish protocol stopped between CREATE DATABASE and marking it made", id, statusText),
				Command: "decide whose it is: rename it out of the way (it is not the system's), or, if it is this instance's, mark it made: " + c.sqlMarkMade(res)})
		case exists:
			d := Difference{InstanceID: id, Kind: OrphanDatabase, Database: res.Database}
			dl, dead := c.deadLetter(ctx, id)
			switch {
			case pending(status) && dead:
				d.Detail = fmt.Sprintf("instancemgr made it (reservation %s) for instance %d, which is %s: its job ended as dead letter %d (code %s)", res.State, id, statusText, dl.Seq, dl.Letter.Code)
				d.Command = replay(dl) + " (the job adopts the database it was making)"
			case pending(status):
				d.Detail = fmt.Sprintf("instancemgr made it (reservation %s) for instance %d, which is %s with no job to finish it", res.State, id, statusText)
				d.Command = fmt.Sprintf("the bridge publishes each request once: find its job with instancemgr jobs show %s %s and put it back, so that it adopts this database", c.t.Name, c.token(id))
			default:
				d.Detail = fmt.Sprintf("instancemgr made it (reservation %s) for instance %d, which is %s and registered elsewhere or not at all: left by a failed create or rename", res.State, id, statusText)
				d.Command = "check it holds nothing needed, then drop it and its reservation by hand: " + c.sqlDrop(res)
			}
			c.add(d)
		case c.liveJob(ctx, id):
			// Reserved for a job still to run.
		case res.State == provisioning.StateReserved && !pending(status):
			c.add(Difference{InstanceID: id, Kind: StaleReservation, Database: res.Database, owner: res.Owner, Fixable: true,
				Detail:  fmt.Sprintf("reserved for instance %d (%s), which no longer needs it; no database of this name exists", id, statusText),
				Command: "instancemgr reconcile -fix (releases it: nothing was made under it)"})
		case res.State == provisioning.StateReserved:
			dl, dead := c.deadLetter(ctx, id)
			cmd := "once the request is settled or withdrawn, instancemgr reconcile -fix releases it"
			if dead {
				cmd = replay(dl) + "; or, once the request is withdrawn, instancemgr reconcile -fix releases it"
			}
			c.add(Difference{InstanceID: id, Kind: StaleReservation, Database: res.Database,
				Detail:  fmt.Sprintf("reserved for instance %d, which is %s with no live job; no database of this name exists", id, statusText),
				Command: cmd})
		case res.State == provisioning.StateMaking && c.dbsCI[strings.ToLower(copyName)]:
			d := Difference{InstanceID: id, Kind: OrphanDatabase, Database: copyName,
				Detail: fmt.Sprintf("instancemgr copied the template for %q (instance %d, %s) as %q and stopped before giving it its name", res.Database, id, statusText, copyName)}
			if dl, dead := c.deadLetter(ctx, id); dead && pending(status) {
				d.Command = replay(dl) + " (the job gives the copy its name)"
			} else {
				d.Command = "if the request is withdrawn, drop the copy and the reservation by hand: DROP DATABASE " + c.ident(copyName) + " WITH (FORCE); then " + c.sqlRelease(res)
			}
			c.add(d)
		default:
			c.add(Difference{InstanceID: id, Kind: StaleReservation, Database: res.Database,
				Detail:  fmt.Sprintf("the reservation says instancemgr %s it (for instance %d, %s), but no database of this name exists and no ledger entry names it", map[provisioning.ReservationState]string{provisioning.StateMaking: "was making", provisioning.StateMade: "made"}[res.State], id, statusText),
				Command: "check the database was not renamed by hand; then remove the reservation: " + c.sqlRelease(res)})
		}
	}
}

// trashed checks a deleted instance's database held in trash: a known
// state while the database under the trash name is the one moved there.
func (c *checker) trashed(res provisioning.Listed) {
	current, exists := c.t.Identities[res.Database]
	switch {
	case exists && current == res.Identity:
		// Kept for provisioning.deleteRetention; the purge drops it.
	case exists:
		c.add(Difference{InstanceID: res.Owner.InstanceID, Kind: ForeignDatabase, Database: res.Database,
			Detail:  fmt.Sprintf("held in trash for deleted instance %d, but the database under this trash name is not the one instancemgr moved there (identity %s, instancemgr moved %s): the purge leaves it alone", res.Owner.InstanceID, current, res.Identity),
			Command: "decide whose it is: rename it out of the way (it is not the system's); then remove the trash record: " + c.sqlRelease(res)})
	default:
		c.add(Difference{InstanceID: res.Owner.InstanceID, Kind: StaleReservation, Database: res.Database,
			Detail:  fmt.Sprintf("held in trash for deleted instance %d, but no database of this name exists: dropped by hand, or a purge is finishing", res.Owner.InstanceID),
			Command: "run reconcile again in a minute; if it stays, remove the trash record: " + c.sqlRelease(res)})
	}
}

// token is the instance's token in its jobs' subjects.
func (c *checker) token(id int) string { return jobs.InstanceToken(c.t.Line, id) }

// otherLineReservation checks a reservation of the other line's instance:
// its ledger entry explains it (checked with the ledger), or nothing will
// ever use it, since no bridge of this flavor publishes that line's jobs.
func (c *checker) otherLineReservation(res provisioning.Listed) {
	if rec, ok := c.otherLine[strings.ToLower(res.Database)]; ok && rec.Owner() == res.Owner {
		return
	}
	d := Difference{InstanceID: res.Owner.InstanceID, Kind: StaleReservation, Database: res.Database,
		Detail: fmt.Sprintf("reserved for the %s line's instance %d, which no ledger entry names; this deployment serves the %s line, so no job will use it", res.Owner.Line, res.Owner.InstanceID, c.t.Line)}
	if c.dbsCI[strings.ToLower(res.Database)] {
		d.Kind = OrphanDatabase
		d.Command = "check it holds nothing needed, then drop it and its reservation by hand: " + c.sqlDrop(res)
	} else {
		d.Command = "remove the reservation: " + c.sqlRelease(res)
	}
	c.add(d)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Kinds lists every kind, for documentation and tests.
func Kinds() []Kind {
	return slices.Clone([]Kind{OrphanDatabase, ForeignDatabase, MissingDatabase, UnreservedDatabase, MissingRegistration,
		UntrackedInstance, OrphanRegistration, DeadRequest, StuckRequest, StaleReservation, Unchecked})
}
