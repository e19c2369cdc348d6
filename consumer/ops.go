package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// AdminAPI is what the handlers need of the Admin API.
type AdminAPI interface {
	Instance(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error)
	// OdsInstance is the request's details: its name, template, instance
	// type, contexts and derivatives, read on every create delivery.
	OdsInstance(ctx context.Context, tenant string, id int) (adminapi.OdsInstance, error)
	Completed(ctx context.Context, tenant string, id int, connectionString string) error
	Renamed(ctx context.Context, tenant string, id int, connectionString string) error
	RenameFailed(ctx context.Context, tenant string, id int) error
	Deleted(ctx context.Context, tenant string, id int) error
	DeleteFailed(ctx context.Context, tenant string, id int) error
}

// Placement is a tenant's placement: the servers its instances live on,
// opened (the engine and registry pools), and the templates it copies.
type Placement struct {
	Engine provisioning.Engine
	// Registry keeps the ledger, and the dbo rows too when the worker
	// registers (provisioning.registration: worker).
	Registry provisioning.Registry
	// ODS is the connection string the ODS/API gets for a database, in
	// the ADO.NET syntax of the tenant's engine (Npgsql or SqlClient).
	ODS      func(database string) string
	Template string
	// Templates are the template databases a request may name by key (the
	// newest Admin API's Minimal and Sample); a request naming none copies
	// Template, one naming a key not here is refused.
	Templates map[string]string
	// MaxNameBytes is the engine's limit on a database name; zero for
	// the naming rule's default (PostgreSQL's).
	MaxNameBytes int
	// Seal turns the ODS connection string into what dbo.odsinstances
	// stores (encrypted when a key is configured); nil stores it as is.
	Seal func(plain string) (string, error)
}

func (t *Placement) seal(plain string) (string, error) {
	if t.Seal == nil {
		return plain, nil
	}
	return t.Seal(plain)
}

// template is the database a request's copy starts from: the template
// database of the key it names, or the tenant's when it names none.
func (t *Placement) template(key string) (string, error) {
	if key == "" {
		return t.Template, nil
	}
	db, ok := t.Templates[key]
	if !ok {
		return "", fmt.Errorf("%w: the request names database template %q, which this tenant has no template database for", provisioning.ErrInvalidName, key)
	}
	return db, nil
}

// Claimer is an Admin API whose requests the worker claims before it
// changes anything (the newest Admin API's manage rows: PendingCreate to
// CreateInProgress), so that no other executor takes them up; Claim also
// finds the claim of an earlier delivery of the same job. It fails with
// provisioning.ErrConflict when another executor holds the request.
type Claimer interface {
	Claim(ctx context.Context, tenant string, id int, op jobs.Operation, database string) error
}

// Operations is an Admin API line that has only some of the operations
// (the newest line has no rename of a managed instance). A job for one it
// lacks is refused before anything is read or changed.
type Operations interface {
	Has(op jobs.Operation) bool
}

// has refuses a job whose operation the Admin API line does not have.
func (o *Handlers) has(j jobs.Job) error {
	if ops, ok := o.API.(Operations); ok && !ops.Has(j.Operation) {
		return foreign("this Admin API line has no %s of an instance", j.Operation)
	}
	return nil
}

// agree checks one field of the message against the source's value.
func agree(j jobs.Job, field, inMessage, inSource string) error {
	if inMessage != inSource {
		return foreign("the message names %s %q for %s request %d of tenant %q; the request names %q", field, inMessage, j.Operation, j.InstanceID, j.Tenant, inSource)
	}
	return nil
}

// agreeIfNamed is agree for a field the bridge leaves empty when it does
// not know it.
func agreeIfNamed(j jobs.Job, field, inMessage, inSource string) error {
	if inMessage == "" {
		return nil
	}
	return agree(j, field, inMessage, inSource)
}

// claim claims the job's request when the Admin API asks for claims.
func (o *Handlers) claim(ctx context.Context, j jobs.Job, database string) error {
	c, ok := o.API.(Claimer)
	if !ok {
		return nil
	}
	if err := c.Claim(ctx, j.Tenant, j.InstanceID, j.Operation, database); err != nil {
		return fmt.Errorf("claim %s request %d of tenant %q: %w", j.Operation, j.InstanceID, j.Tenant, err)
	}
	return nil
}

// Placements resolves a tenant to its placement. A tenant with no mapping is a
// terminal error.
type Placements interface {
	Placement(ctx context.Context, tenant string) (*Placement, error)
}

// Handlers carries out the three operations. Each first checks what already
// exists (Admin API status, databases, registration) and does only what is
// missing, so a job delivered twice has the effect of one.
type Handlers struct {
	API        AdminAPI
	Placements Placements
	Naming     provisioning.Naming
	// AllowDelete is provisioning.allowDelete, enforced here too: a delete
	// job that reaches a consumer with deletion off drops nothing.
	AllowDelete bool
	// DeleteRetention is provisioning.deleteRetention: how long a deleted
	// instance's database waits in trash; 0 drops it at once.
	DeleteRetention time.Duration
	// InstancesPerTenant is limits.instancesPerTenant (0: none),
	// and Rate limits.createsPerMinute a tenant (nil: none): checked
	// before a create reserves a new name, so a redelivery of a create
	// under way is never held back.
	InstancesPerTenant int
	Rate               *limits.Rate
	Log                *slog.Logger

	// d is the delivery this copy serves (at).
	d Delivery
}

func (o *Handlers) logger(d Delivery) *slog.Logger {
	l := o.Log
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return d.logger(l)
}

// at is o for delivery d: what the middleware set on d (phase timing,
// test seams) wraps the Admin API, servers and EdFi_Admin that api and
// tenant hand the handler.
func (o *Handlers) at(d Delivery) *Handlers {
	if d.phases == nil && d.seams == nil {
		return o
	}
	c := *o
	c.d = d
	return &c
}

// api is the Admin API, each call timed as PhaseAdminAPI in a timed
// delivery.
func (o *Handlers) api() AdminAPI {
	if o.d.phases == nil {
		return o.API
	}
	return timedAPI{o.API, o.d.phases}
}

// tenant resolves a tenant to its placement as the delivery uses it
// (Placement.at).
func (o *Handlers) tenant(ctx context.Context, name string) (*Placement, error) {
	placement, err := o.Placements.Placement(ctx, name)
	if err != nil {
		return nil, err
	}
	return placement.at(o.d), nil
}

// Create returns the create handler; it reports terminal failures to an
// Admin API line that has a failed state for a create (CreateFailer).
func (o *Handlers) Create() Handler { return createHandler{o} }

type createHandler struct{ *Handlers }

func (h createHandler) Handle(ctx context.Context, d Delivery) error { return h.at(d).create(ctx, d) }

// CreateFailer is an Admin API line with a terminal failed state for a
// create, and a place for why (the newest line: CreateError, and an Error
// row of adminapi.JobStatuses). Admin API 2.2.2 has neither: there a
// failed create stays Pending, and its dead letter says why.
type CreateFailer interface {
	CreateFailed(ctx context.Context, tenant string, id int, why Failure) error
}

// FailureRecorder is an Admin API line that keeps why a request failed
// where its own executor keeps it.
type FailureRecorder interface {
	RecordFailure(ctx context.Context, tenant string, id int, why Failure) error
}

// Failure is why a job ended without success, as its dead letter says it.
type Failure struct {
	JobID     string
	StreamSeq uint64 // the ended delivery's job stream sequence
	Reason    string
}

// failure is why d ended.
func failure(d Delivery, cause error) Failure {
	return Failure{JobID: d.Job.ID, StreamSeq: d.StreamSeq, Reason: ReasonCode(cause) + ": " + cause.Error()}
}

// Fail reports a create that ended to a line with a failed state for it.
func (h createHandler) Fail(ctx context.Context, d Delivery, cause error) error {
	if f, ok := h.API.(CreateFailer); ok {
		return f.CreateFailed(ctx, d.Job.Tenant, d.Job.InstanceID, failure(d, cause))
	}
	return nil
}

// Rename returns the rename handler; it reports terminal failures with
// renameFailed.
func (o *Handlers) Rename() Handler { return renameHandler{o} }

// Delete returns the delete handler; it reports terminal failures with
// deleteFailed.
func (o *Handlers) Delete() Handler { return deleteHandler{o} }

func (o *Handlers) create(ctx context.Context, d Delivery) error {
	j, log := d.Job, o.logger(d)
	if err := o.has(j); err != nil {
		return err
	}
	inst, err := o.instance(ctx, j)
	if err != nil {
		return err
	}
	switch inst.Status {
	case adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusError, adminapi.StatusCompleted:
	default:
		// Renamed, being deleted, deleted: the create is long done and a
		// later job owns the instance now.
		log.Info("create already done; the instance has moved on", "status", inst.Status)
		return nil
	}
	placement, err := o.tenant(ctx, j.Tenant)
	if err != nil {
		return err
	}
	rec, err := placement.Registry.Lookup(ctx, j.Tenant, j.InstanceID)
	recorded := err == nil
	if err != nil && !errors.Is(err, provisioning.ErrNotRecorded) {
		return err
	}
	if recorded && inst.Status == adminapi.StatusCompleted && rec.Generation > 0 {
		// A create replayed after a rename: never make the old name again.
		log.Info("create already done; the instance has been renamed since", "database", rec.Database)
		return nil
	}
	// What to make comes from the request, never from the message.
	req, err := o.api().OdsInstance(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return fmt.Errorf("read the details of instance %d of tenant %q: %w", j.InstanceID, j.Tenant, err)
	}
	if req.Name == "" {
		req.Name = inst.InstanceName
	}
	if err := errors.Join(agree(j, "name", j.Name, req.Name), agree(j, "database template", j.Template, req.DatabaseTemplate)); err != nil {
		return err
	}
	name, err := o.name(placement, j.Tenant, req.Name, req.DatabaseTemplate)
	if err != nil {
		return err
	}
	owner := j.Owner()
	if recorded && rec.Database != name {
		return fmt.Errorf("%w: the ledger has tenant %q instance %d on database %q (name %q); this create asks for %q (name %q)",
			provisioning.ErrConflict, j.Tenant, j.InstanceID, rec.Database, rec.Name, name, req.Name)
	}
	if err := o.claim(ctx, j, name); err != nil {
		return err
	}
	template, err := placement.template(req.DatabaseTemplate)
	if err != nil {
		return err
	}
	_, fresh, err := placement.Engine.Reserve(ctx, name, owner)
	if err != nil {
		return err
	}
	if fresh && inst.Status != adminapi.StatusCompleted {
		if err := o.withinLimits(ctx, placement, j); err != nil {
			o.release(ctx, placement, name, owner, log)
			return err
		}
	}
	if fresh && inst.Status == adminapi.StatusCompleted {
		o.release(ctx, placement, name, owner, log)
		return fmt.Errorf("%w: instance %d is already Completed, but instancemgr never reserved %q for it (another worker completed it?)",
			provisioning.ErrConflict, j.InstanceID, name)
	}
	created, err := placement.Engine.CreateDatabase(ctx, name, template, owner)
	if err != nil {
		if errors.Is(err, provisioning.ErrConflict) {
			o.release(ctx, placement, name, owner, log)
		}
		return err
	}
	log.Info("database ready", "database", name, "created", created)

	plain := placement.ODS(name)
	var movedTo string  // the status that ended a create before it registered
	var registered bool // the ledger had the instance when it did
	complete := func(ctx context.Context, tx provisioning.Tx, alreadyRegistered bool) error {
		registered = alreadyRegistered
		// Read again under the ledger entry's lock: a delivery that lost its
		// lock may reach here after a delete (or rename) of the instance ran
		// to its end, and Admin API 2.2.2 takes completed even on a Deleted
		// instance. A delete asked since holds the entry until it commits,
		// and one that committed left none: either way the status says so.
		cur, err := o.api().Instance(ctx, j.Tenant, j.InstanceID)
		if err != nil {
			return fmt.Errorf("look up instance %d again before completing it: %w", j.InstanceID, err)
		}
		switch cur.Status {
		case adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusError:
		case adminapi.StatusCompleted:
			if alreadyRegistered {
				return nil
			}
		default:
			movedTo = cur.Status
			return errMovedOn
		}
		if err := o.inTx(tx).Completed(ctx, j.Tenant, j.InstanceID, plain); err != nil {
			return fmt.Errorf("mark instance %d completed: %w", j.InstanceID, err)
		}
		return nil
	}
	stored, err := placement.seal(plain)
	if err != nil {
		return Terminal(fmt.Errorf("encrypt the connection string: %w", err))
	}
	reg := registration(j.Tenant, j.InstanceID, name, stored, req)
	res, err := placement.Registry.Register(ctx, reg, func(ctx context.Context, tx provisioning.Tx, res provisioning.RegisterResult) error {
		return complete(ctx, tx, res.Existed)
	})
	if errors.Is(err, errMovedOn) {
		// Nothing registered: the later job owns the instance and its
		// database, as when the status said so at the start. A database
		// this very delivery reserved and made is nobody's when the ledger
		// has no entry: the one the instance had was another (its name was
		// free again), so it goes, by identity. With an entry, the job's
		// next delivery adopted it and registered it: it is the instance's
		// own, which the later job moves to trash or renames.
		log.Info("create already done; the instance has moved on", "status", movedTo)
		if fresh && created && !registered {
			if _, err := placement.Engine.DropDatabase(ctx, name, owner); err != nil {
				return fmt.Errorf("drop %q, made for an instance that had moved on: %w", name, err)
			}
			o.release(ctx, placement, name, owner, log)
		}
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("instance registered and completed", "database", name, "ods_instance_id", res.OdsInstanceID, "already_registered", res.Existed)
	return nil
}

// errMovedOn aborts a create's registration when the instance has moved
// on since the create began (a delete or rename asked meanwhile).
var errMovedOn = errors.New("the instance has moved on")

// withinLimits refuses a new instance over its tenant's instance limit
// (terminal) or create rate (retried when the rate allows). Concurrent
// creates of one tenant may pass the instance limit by the jobs running
// at once: each counts the ledger before the others commit.
func (o *Handlers) withinLimits(ctx context.Context, placement *Placement, j jobs.Job) error {
	if o.InstancesPerTenant > 0 {
		recs, err := placement.Registry.Records(ctx)
		if err != nil {
			return fmt.Errorf("count the instances of tenant %q: %w", j.Tenant, err)
		}
		n := 0
		for _, r := range recs {
			if r.Tenant == j.Tenant && r.Line == j.Line {
				n++
			}
		}
		if n >= o.InstancesPerTenant {
			return fmt.Errorf("%w: tenant %q has %d instances, the limit (limits.instancesPerTenant) is %d; delete one or raise the limit, then replay", ErrLimit, j.Tenant, n, o.InstancesPerTenant)
		}
	}
	if ok, after := o.Rate.Take(j.Tenant); !ok {
		return &retryAfter{fmt.Errorf("%w: tenant %q started its limit of creates this minute (limits.createsPerMinute); trying again in %s", ErrRateLimited, j.Tenant, after), after}
	}
	return nil
}

// release gives a reservation back; the engine keeps any whose database the
// system made and that still exists. A failure only leaves the name held,
// which an operator can see and clear, so it is logged, not returned.
func (o *Handlers) release(ctx context.Context, placement *Placement, name string, owner provisioning.Owner, log *slog.Logger) {
	if err := placement.Engine.Release(ctx, name, owner); err != nil {
		log.Warn("could not release a database name; it stays reserved", "database", name, "err", err)
	}
}

// name is the database a request's name and template key give on the
// tenant's server, by the naming rule within the engine's limit.
func (o *Handlers) name(placement *Placement, tenant, name, template string) (string, error) {
	naming := o.Naming
	naming.MaxBytes = placement.MaxNameBytes
	return naming.NameFor(tenant, name, template)
}

// releaseGone gives back owner's reservation of name when it is one whose
// database the system made and that no longer exists (renamed away or
// dropped by an earlier delivery that died after its commit). A
// reservation still reserved or making, someone else's, or one whose
// database exists is left: a stale or forged message names it.
func (o *Handlers) releaseGone(ctx context.Context, placement *Placement, name string, owner provisioning.Owner, log *slog.Logger) {
	res, held, err := placement.Engine.Reservation(ctx, name)
	if err != nil || !held || res.Owner != owner || res.State != provisioning.StateMade {
		return
	}
	if exists, err := placement.Engine.DatabaseExists(ctx, name); err != nil || exists {
		return
	}
	o.release(ctx, placement, name, owner, log)
}

// place is where a job's database goes by the message's own fields: only
// for settling a job that failed (Fail), never for making a change, which
// reads the request first.
func (o *Handlers) place(ctx context.Context, j jobs.Job) (string, *Placement, error) {
	placement, err := o.tenant(ctx, j.Tenant)
	if err != nil {
		return "", nil, err
	}
	name, err := o.name(placement, j.Tenant, j.Name, j.Template)
	return name, placement, err
}

// instance reads the job's instance from the Admin API.
func (o *Handlers) instance(ctx context.Context, j jobs.Job) (adminapi.WorkerInstance, error) {
	inst, err := o.api().Instance(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return inst, fmt.Errorf("look up instance %d of tenant %q: %w", j.InstanceID, j.Tenant, err)
	}
	return inst, nil
}

// statusIs reads the instance's status again; an error counts as "no".
func (o *Handlers) statusIs(ctx context.Context, tenant string, id int, status string) bool {
	cur, err := o.api().Instance(ctx, tenant, id)
	return err == nil && cur.Status == status
}

type renameHandler struct{ *Handlers }

func (h renameHandler) Handle(ctx context.Context, d Delivery) error {
	h.Handlers = h.at(d)
	j, log := d.Job, h.logger(d)
	if err := h.has(j); err != nil {
		return err
	}
	inst, err := h.instance(ctx, j)
	if err != nil {
		return err
	}
	placement, err := h.tenant(ctx, j.Tenant)
	if err != nil {
		return err
	}
	rec, err := placement.Registry.Lookup(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return err
	}
	owner := rec.Owner()
	switch {
	case rec.Generation > j.Generation:
		// A rename of this instance has finished (or failed) since the job
		// was made: this one's, delivered again, or an older job's. A
		// delivery that died after its commit left the old name reserved;
		// only a name whose database the system made and that is gone now
		// goes, never one reserved for a rename under way, whatever the
		// message says.
		if j.Database != "" && j.Database != rec.Database {
			h.releaseGone(ctx, placement, j.Database, owner, log)
		}
		log.Info("rename already settled", "database", rec.Database)
		return nil
	case rec.Generation < j.Generation:
		return foreign("the message is rename %d of instance %d, but the ledger has had only %d", j.Generation, j.InstanceID, rec.Generation)
	}
	if inst.Status == adminapi.StatusRenameFailed {
		// Failed before, and reported, with the ledger still at this
		// generation (the report's transaction died after the Admin API
		// heard it, or the Admin API marked it itself): settled now as a
		// failure is, so that the rename asked again is a new job.
		log.Info("nothing to rename; the rename failed before", "status", inst.Status)
		return h.Fail(ctx, d, errors.New("the Admin API shows the rename failed"))
	}
	if inst.Status != adminapi.StatusPendingRename && inst.Status != adminapi.StatusCompleted {
		log.Info("nothing to rename; the instance has moved on", "status", inst.Status)
		return nil
	}
	// The new name is the request's; the database to rename is the ledger's.
	if err := errors.Join(agree(j, "name", j.Name, inst.InstanceName), agree(j, "database", j.Database, rec.Database),
		agree(j, "database template", j.Template, "")); err != nil {
		return err
	}
	oldDB := rec.Database
	newDB, err := h.name(placement, j.Tenant, inst.InstanceName, "")
	if err != nil {
		return err
	}
	if inst.Status == adminapi.StatusCompleted {
		// Only Pending_Rename renames. A Completed instance at the job's
		// generation is one whose renamed the Admin API heard while the
		// ledger's commit failed: the database must already be the one
		// renamed for it, and only the ledger is left to finish.
		if moved, err := h.renamedFor(ctx, placement, oldDB, newDB, owner); err != nil || !moved {
			if err != nil {
				return err
			}
			return foreign("instance %d is Completed and its database %q was never renamed to %q; a rename runs only from Pending_Rename", j.InstanceID, oldDB, newDB)
		}
	} else if oldDB != newDB {
		if err := h.renameDatabase(ctx, placement, oldDB, newDB, owner, log); err != nil {
			return err
		}
	}
	plain := placement.ODS(newDB)
	stored, err := placement.seal(plain)
	if err != nil {
		return Terminal(fmt.Errorf("encrypt the connection string: %w", err))
	}
	ren := provisioning.Renaming{Tenant: j.Tenant, InstanceID: j.InstanceID, NewName: inst.InstanceName, NewDatabase: newDB, ConnectionString: stored, Generation: j.Generation}
	err = placement.Registry.Rename(ctx, ren, func(ctx context.Context, tx provisioning.Tx, before provisioning.Record) error {
		if before.Database == newDB && h.statusIs(ctx, j.Tenant, j.InstanceID, adminapi.StatusCompleted) {
			return nil
		}
		if err := h.inTx(tx).Renamed(ctx, j.Tenant, j.InstanceID, plain); err != nil {
			return fmt.Errorf("mark instance %d renamed: %w", j.InstanceID, err)
		}
		return nil
	})
	if errors.Is(err, provisioning.ErrStale) {
		// Paused past a newer rename: the ledger must not go back.
		log.Warn("rename is stale; the ledger has moved on and is left as it is", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if oldDB != newDB {
		h.release(ctx, placement, oldDB, owner, log)
	}
	log.Info("instance renamed", "database", newDB)
	return nil
}

// renamedFor says whether the rename from oldDB to newDB is done on the
// server: oldDB gone, and newDB the very database the system made for
// owner.
func (h renameHandler) renamedFor(ctx context.Context, placement *Placement, oldDB, newDB string, owner provisioning.Owner) (bool, error) {
	if oldDB == newDB {
		// Names that make one database ("Foo Bar" to "Foo_Bar"): there was
		// nothing to rename, only the ledger to move.
		return provisioning.Holds(ctx, placement.Engine, newDB, owner)
	}
	if oldExists, err := placement.Engine.DatabaseExists(ctx, oldDB); err != nil || oldExists {
		return false, err
	}
	return provisioning.Holds(ctx, placement.Engine, newDB, owner)
}

// renameDatabase reserves the new name, then renames, or finds the rename
// done by an earlier delivery of this job. The engine decides which (only
// the very database the system made counts as renamed); a conflict gives
// the new name back unless the system made a database under it.
func (h renameHandler) renameDatabase(ctx context.Context, placement *Placement, oldDB, newDB string, owner provisioning.Owner, log *slog.Logger) error {
	if _, _, err := placement.Engine.Reserve(ctx, newDB, owner); err != nil {
		return err
	}
	renamed, err := placement.Engine.RenameDatabase(ctx, oldDB, newDB, owner)
	switch {
	case errors.Is(err, provisioning.ErrConflict):
		h.release(ctx, placement, newDB, owner, log)
	case err == nil && renamed:
		log.Info("database renamed", "from", oldDB, "to", newDB)
	case err == nil:
		log.Info("database already renamed", "from", oldDB, "to", newDB)
	}
	return err
}

// Fail records a rename that will not succeed: the ledger's generation moves
// on (so a new rename request is a new job) and the Admin API hears
// renameFailed, in one transaction. A rename that failed after its database
// was renamed (the registration or the Admin API refused it, or its
// deliveries ran out) moves the ledger and the registration's connection
// strings to the database as it now is, in the same transaction, and
// gives back the old name: nothing is left naming a database that is gone.
// A stale job (the ledger has moved on) reports nothing.
func (h renameHandler) Fail(ctx context.Context, d Delivery, cause error) error {
	j := d.Job
	report := func(ctx context.Context, tx provisioning.Tx) error {
		err := h.inTx(tx).RenameFailed(ctx, j.Tenant, j.InstanceID)
		if errors.Is(err, adminapi.ErrConflict) || errors.Is(err, adminapi.ErrNotFound) {
			return nil // no longer Pending_Rename: nothing to report
		}
		return err
	}
	moved, from, err := h.moved(ctx, j)
	if err != nil {
		return err
	}
	advance := func(reg provisioning.Registry, ctx context.Context, tenant string, id, gen int, complete func(context.Context, provisioning.Tx) error) error {
		return reg.RenameFailed(ctx, tenant, id, gen, moved, complete)
	}
	placement, err := h.recordFailure(ctx, j, advance, report)
	if err != nil || placement == nil {
		return err
	}
	owner, log := j.Owner(), h.logger(d)
	if moved != nil {
		log.Warn("the rename failed after its database was renamed; the ledger and registration follow the database", "from", from, "database", moved.NewDatabase, "err", cause)
		h.release(ctx, placement, from, owner, log)
		return nil
	}
	// The new name goes back, unless the system made a database under it.
	if newDB, _, nerr := h.place(ctx, j); nerr == nil {
		h.release(ctx, placement, newDB, owner, log)
	}
	return nil
}

// moved says where a failed rename left the instance's database: a
// Renaming to record when the ledger's database (from) is gone and the
// job's new name holds the very database the system made for the
// instance; nil when the database is where the ledger says, or the job
// cannot be placed (a refused name: nothing was renamed).
func (h renameHandler) moved(ctx context.Context, j jobs.Job) (moved *provisioning.Renaming, from string, err error) {
	newDB, placement, err := h.place(ctx, j)
	if err != nil {
		return nil, "", nil
	}
	rec, err := placement.Registry.Lookup(ctx, j.Tenant, j.InstanceID)
	switch {
	case errors.Is(err, provisioning.ErrNotRecorded):
		return nil, "", nil // recordFailure reports it alone
	case err != nil:
		return nil, "", err // try again rather than record a guess
	case rec.Generation != j.Generation || rec.Database == newDB:
		return nil, "", nil // stale, or nothing moved: recordFailure settles it
	}
	if held, err := h.renamedFor(ctx, placement, rec.Database, newDB, rec.Owner()); err != nil || !held {
		return nil, "", err
	}
	stored, err := placement.seal(placement.ODS(newDB))
	if err != nil {
		return nil, "", fmt.Errorf("encrypt the connection string: %w", err)
	}
	return &provisioning.Renaming{Tenant: j.Tenant, InstanceID: j.InstanceID, NewName: j.Name, NewDatabase: newDB, ConnectionString: stored, Generation: j.Generation}, rec.Database, nil
}

// recordFailure reports a rename's or delete's failure to the Admin API in
// one transaction with the ledger's move to the next generation (advance
// is the registry's RenameFailed or DeleteFailed, which hands report its
// transaction), or alone, with no transaction, when there is no ledger
// entry. A stale job (the ledger has moved on) reports nothing.
// It returns the tenant's target when the ledger moved.
func (o *Handlers) recordFailure(ctx context.Context, j jobs.Job, advance func(provisioning.Registry, context.Context, string, int, int, func(context.Context, provisioning.Tx) error) error, report func(context.Context, provisioning.Tx) error) (*Placement, error) {
	placement, err := o.tenant(ctx, j.Tenant)
	if err != nil {
		return nil, report(ctx, nil)
	}
	err = advance(placement.Registry, ctx, j.Tenant, j.InstanceID, j.Generation, report)
	switch {
	case errors.Is(err, provisioning.ErrNotRecorded):
		return nil, report(ctx, nil)
	case errors.Is(err, provisioning.ErrStale):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return placement, nil
}

// failedAt moves the ledger past the generation of delete j, whose
// failure the Admin API already shows (Delete_Failed), unless it has moved
// on already: so that the delete asked again is a job of its own.
func (h deleteHandler) failedAt(ctx context.Context, j jobs.Job) error {
	_, err := h.recordFailure(ctx, j, provisioning.Registry.DeleteFailed, func(context.Context, provisioning.Tx) error { return nil })
	return err
}

// ErrDeletionDisabled ends a delete job that reached a consumer while
// provisioning.allowDelete is off (a second bridge, a replayed dead letter,
// a hand-written message): nothing is dropped and the Admin API status is
// left as the bridge leaves it, Pending_Delete.
var ErrDeletionDisabled = errors.New("deletion is switched off (provisioning.allowDelete)")

type deleteHandler struct{ *Handlers }

func (h deleteHandler) Handle(ctx context.Context, d Delivery) error {
	h.Handlers = h.at(d)
	j, log := d.Job, h.logger(d)
	if !h.AllowDelete {
		return ErrDeletionDisabled
	}
	if err := h.has(j); err != nil {
		return err
	}
	inst, err := h.instance(ctx, j)
	if err != nil {
		return err
	}
	if inst.Status == adminapi.StatusDeleteFailed {
		// Failed before, and reported: the ledger's generation may not
		// have moved with it (the report's transaction died after the
		// Admin API heard it). Moved now, the delete asked again is a new
		// job, not this one's subject, which the stream holds for good.
		log.Info("nothing to delete; the delete failed before", "status", inst.Status)
		return h.failedAt(ctx, j)
	}
	if inst.Status != adminapi.StatusPendingDelete && inst.Status != adminapi.StatusDeleted {
		log.Info("nothing to delete", "status", inst.Status)
		return nil
	}
	placement, err := h.tenant(ctx, j.Tenant)
	if err != nil {
		return err
	}
	owner := j.Owner()
	rec, err := placement.Registry.Lookup(ctx, j.Tenant, j.InstanceID)
	switch {
	case errors.Is(err, provisioning.ErrNotRecorded) && inst.Status == adminapi.StatusDeleted:
		// Deleted and unregistered: at most the name is still held.
		if j.Database != "" {
			h.releaseGone(ctx, placement, j.Database, owner, log)
		}
		log.Info("already deleted", "database", j.Database)
		return nil
	case err != nil:
		// Still Pending_Delete, so the unregistering transaction never
		// committed: the system never created this instance.
		return err
	case inst.Status == adminapi.StatusPendingDelete && rec.Generation > j.Generation:
		log.Info("delete is stale; a newer request settled since", "generation", rec.Generation)
		return nil
	case rec.Generation < j.Generation:
		return foreign("the message is delete %d of instance %d, but the ledger has had only %d", j.Generation, j.InstanceID, rec.Generation)
	}
	// The database to drop is the ledger's, never the message's. One that
	// names none was published before the ledger had the instance.
	if err := errors.Join(agree(j, "name", j.Name, inst.InstanceName), agreeIfNamed(j, "database", j.Database, rec.Database)); err != nil {
		return err
	}
	if inst.Status == adminapi.StatusPendingDelete {
		// The claim also checks that the request is for the ledger's
		// database: ids of two Admin API lines can meet in one ledger.
		if err := h.claim(ctx, j, rec.Database); err != nil {
			return err
		}
	}
	// Restored from trash since this delivery read the ledger, the
	// database's reservation and the ledger entry are a generation past the
	// delete's (a restore registers one past it): the move to trash and the
	// unregistering each refuse it as stale.
	unregister := func(ctx context.Context, tx provisioning.Tx, before provisioning.Record) error {
		if before.Generation > j.Generation {
			return fmt.Errorf("%w: the ledger entry is at generation %d, past the delete's %d", provisioning.ErrStale, before.Generation, j.Generation)
		}
		if inst.Status == adminapi.StatusDeleted {
			// An earlier delivery's commit failed after the Admin API heard
			// deleted: only what is left in EdFi_Admin goes.
			return nil
		}
		if err := h.inTx(tx).Deleted(ctx, j.Tenant, j.InstanceID); err != nil {
			return fmt.Errorf("mark instance %d deleted: %w", j.InstanceID, err)
		}
		return nil
	}
	err = h.removeDatabase(ctx, placement, rec, owner, log)
	if err == nil {
		err = placement.Registry.Unregister(ctx, j.Tenant, j.InstanceID, unregister)
	}
	if errors.Is(err, provisioning.ErrStale) {
		log.Info("delete is stale; the instance was restored since", "database", rec.Database, "why", err)
		return nil
	}
	if err != nil {
		return err
	}
	h.release(ctx, placement, rec.Database, owner, log)
	log.Info("instance deleted", "database", rec.Database, "status_was", inst.Status)
	return nil
}

// removeDatabase drops a deleted instance's database, or with a retention
// moves it to trash, where it stays restorable until it is purged. Either
// way the registration then goes as before: the Admin API sees the same.
// The trash keeps the ledger's generation, for a restore to go on from.
func (o *Handlers) removeDatabase(ctx context.Context, placement *Placement, rec provisioning.Record, owner provisioning.Owner, log *slog.Logger) error {
	name := rec.Database
	if o.DeleteRetention <= 0 {
		dropped, err := placement.Engine.DropDatabase(ctx, name, owner)
		if err == nil {
			log.Info("database gone", "database", name, "dropped_now", dropped)
		}
		return err
	}
	moved, err := trashDatabase(ctx, placement.Engine, name, owner, o.DeleteRetention, rec.Generation)
	if err == nil {
		log.Info("database in trash", "database", name, "moved_now", moved, "retention", o.DeleteRetention)
	}
	return err
}

// trashMover is an engine that can keep a deleted database
// (provisioning.Trasher's move); the engine's wrappers for a delivery's
// phases and seams are ones too, passing the move on.
type trashMover interface {
	TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (moved bool, err error)
}

// trashDatabase moves name to e's trash, or refuses, dropping nothing, when
// e cannot keep a database.
func trashDatabase(ctx context.Context, e provisioning.Engine, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	t, ok := e.(trashMover)
	if !ok {
		return false, fmt.Errorf("%w: provisioning.deleteRetention is set, but this server's engine cannot keep a deleted database; nothing is dropped", provisioning.ErrRejected)
	}
	return t.TrashDatabase(ctx, name, owner, retention, generation)
}

// Fail reports deleteFailed, and moves the ledger's generation on so that a
// new delete request is a new job, in one transaction. Only a delete still
// Pending_Delete is reported: a stale job never turns Deleted (or a later
// status) into Delete_Failed.
func (h deleteHandler) Fail(ctx context.Context, d Delivery, cause error) error {
	j := d.Job
	if errors.Is(cause, ErrDeletionDisabled) {
		return nil
	}
	inst, err := h.api().Instance(ctx, j.Tenant, j.InstanceID)
	if errors.Is(err, adminapi.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	switch inst.Status {
	case adminapi.StatusPendingDelete:
	case adminapi.StatusDeleteFailed:
		// The Admin API marked it itself (Admin API 2.2.2's deleted does
		// when it fails): only the ledger's generation is left to move.
		return h.failedAt(ctx, j)
	default:
		return nil
	}
	reported := false
	report := func(ctx context.Context, tx provisioning.Tx) error {
		err := h.inTx(tx).DeleteFailed(ctx, j.Tenant, j.InstanceID)
		if errors.Is(err, adminapi.ErrNotFound) {
			return nil
		}
		reported = err == nil
		return err
	}
	if _, err = h.recordFailure(ctx, j, provisioning.Registry.DeleteFailed, report); err != nil || !reported {
		return err
	}
	if r, ok := h.API.(FailureRecorder); ok {
		return r.RecordFailure(ctx, j.Tenant, j.InstanceID, failure(d, cause))
	}
	return nil
}
