package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/connstr"
)

// AdminAPI is what the handlers need of the Admin API.
type AdminAPI interface {
	Instance(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error)
	Completed(ctx context.Context, tenant string, id int, connectionString string) error
	Renamed(ctx context.Context, tenant string, id int, connectionString string) error
	RenameFailed(ctx context.Context, tenant string, id int) error
	Deleted(ctx context.Context, tenant string, id int) error
	DeleteFailed(ctx context.Context, tenant string, id int) error
}

// Target is where a tenant's instances live.
type Target struct {
	Engine provisioning.Engine
	// Registry is nil when the worker's own registration is switched off.
	Registry provisioning.Registry
	// ODS is the connection string stored for the ODS/API, with {0} for
	// the database name.
	ODS      connstr.Conn
	Template string
	// Seal turns the ODS connection string into what dbo.odsinstances
	// stores (encrypted when a key is configured); nil stores it as is.
	Seal func(plain string) (string, error)
}

func (t *Target) seal(plain string) (string, error) {
	if t.Seal == nil {
		return plain, nil
	}
	return t.Seal(plain)
}

// Targets resolves a tenant to its target. A tenant with no mapping is a
// terminal error.
type Targets interface {
	Target(ctx context.Context, tenant string) (*Target, error)
}

// Hooks are test seams between the steps of a job; nil hooks do nothing. A
// hook that returns an error fails the delivery with it.
type Hooks struct {
	// AfterCheck runs after the existence checks, before any change.
	AfterCheck func(ctx context.Context, d Delivery) error
	// AfterDatabase runs after the database change, before registration.
	AfterDatabase func(ctx context.Context, d Delivery) error
}

func (h Hooks) run(f func(context.Context, Delivery) error, ctx context.Context, d Delivery) error {
	if f == nil {
		return nil
	}
	return f(ctx, d)
}

// Ops carries out the three operations. Each first checks what already
// exists (Admin API status, databases, registration) and does only what is
// missing, so a job delivered twice has the effect of one.
type Ops struct {
	API     AdminAPI
	Targets Targets
	Naming  provisioning.Naming
	Log     *slog.Logger
	Hooks   Hooks
}

func (o *Ops) logger(d Delivery) *slog.Logger {
	l := o.Log
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("op", d.Job.Operation, "tenant", d.Job.Tenant, "instance_id", d.Job.InstanceID, "job_id", d.Job.ID, "attempt", d.Attempt)
}

// Create returns the create handler.
func (o *Ops) Create() Handler { return HandlerFunc(o.create) }

// Rename returns the rename handler; it reports terminal failures with
// renameFailed.
func (o *Ops) Rename() Handler { return renameHandler{o} }

// Delete returns the delete handler; it reports terminal failures with
// deleteFailed.
func (o *Ops) Delete() Handler { return deleteHandler{o} }

func (o *Ops) create(ctx context.Context, d Delivery) error {
	j, log := d.Job, o.logger(d)
	inst, err := o.API.Instance(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return fmt.Errorf("look up instance %d of tenant %q: %w", j.InstanceID, j.Tenant, err)
	}
	switch inst.Status {
	case adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusError, adminapi.StatusCompleted:
	default:
		// Renamed, being deleted, deleted: the create is long done and a
		// later job owns the instance now.
		log.Info("create already done; the instance has moved on", "status", inst.Status)
		return nil
	}
	name, err := o.Naming.DatabaseName(j.Tenant, j.Name)
	if err != nil {
		return err
	}
	tg, err := o.Targets.Target(ctx, j.Tenant)
	if err != nil {
		return err
	}
	exists, err := tg.Engine.DatabaseExists(ctx, name)
	if err != nil {
		return err
	}
	if err := o.Hooks.run(o.Hooks.AfterCheck, ctx, d); err != nil {
		return err
	}
	if !exists {
		created, err := tg.Engine.CreateDatabase(ctx, name, tg.Template)
		if err != nil {
			return err
		}
		log.Info("database ready", "database", name, "created", created)
	}
	if err := o.Hooks.run(o.Hooks.AfterDatabase, ctx, d); err != nil {
		return err
	}

	plain := tg.ODS.ForDatabase(name).ADONet()
	complete := func(ctx context.Context, alreadyRegistered bool) error {
		if alreadyRegistered && o.statusIs(ctx, j.Tenant, j.InstanceID, adminapi.StatusCompleted) {
			return nil
		}
		if err := o.API.Completed(ctx, j.Tenant, j.InstanceID, plain); err != nil {
			return fmt.Errorf("mark instance %d completed: %w", j.InstanceID, err)
		}
		return nil
	}
	if tg.Registry == nil {
		return complete(ctx, inst.Status == adminapi.StatusCompleted)
	}
	stored, err := tg.seal(plain)
	if err != nil {
		return Terminal(fmt.Errorf("encrypt the connection string: %w", err))
	}
	reg := provisioning.Registration{
		Tenant: j.Tenant, InstanceID: j.InstanceID, Database: name,
		Name: j.Name, InstanceType: j.InstanceType, ConnectionString: stored, Derivatives: j.Derivatives,
	}
	for _, c := range j.Contexts {
		reg.Contexts = append(reg.Contexts, provisioning.Context{Key: c.Key, Value: c.Value})
	}
	res, err := tg.Registry.Register(ctx, reg, func(ctx context.Context, res provisioning.RegisterResult) error {
		return complete(ctx, res.Existed)
	})
	if err != nil {
		return err
	}
	log.Info("instance registered and completed", "database", name, "ods_instance_id", res.OdsInstanceID, "already_registered", res.Existed)
	return nil
}

// statusIs reads the instance's status again; an error counts as "no".
func (o *Ops) statusIs(ctx context.Context, tenant string, id int, status string) bool {
	cur, err := o.API.Instance(ctx, tenant, id)
	return err == nil && cur.Status == status
}

type renameHandler struct{ *Ops }

func (h renameHandler) Handle(ctx context.Context, d Delivery) error {
	j, log := d.Job, h.logger(d)
	inst, err := h.API.Instance(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return fmt.Errorf("look up instance %d of tenant %q: %w", j.InstanceID, j.Tenant, err)
	}
	newDB, err := h.Naming.DatabaseName(j.Tenant, j.Name)
	if err != nil {
		return err
	}
	tg, err := h.Targets.Target(ctx, j.Tenant)
	if err != nil {
		return err
	}
	if tg.Registry == nil {
		return Terminal(errors.New("rename needs the worker's own registration (provisioning.register), which records each instance's database"))
	}
	rec, err := tg.Registry.Lookup(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return err
	}
	if rec.Generation > j.Generation {
		// A rename of this instance has finished (or failed) since the job
		// was made: this one's, delivered again, or an older job's.
		log.Info("rename already settled", "database", rec.Database, "done", rec.Database == newDB)
		return nil
	}
	if inst.Status != adminapi.StatusPendingRename && inst.Status != adminapi.StatusCompleted {
		log.Info("nothing to rename; the instance has moved on", "status", inst.Status)
		return nil
	}
	oldDB := rec.Database
	if j.Database != "" && j.Database != oldDB && oldDB != newDB {
		return Terminal(fmt.Errorf("%w: the job renames %q but the ledger has %q", provisioning.ErrConflict, j.Database, oldDB))
	}
	if oldDB != newDB {
		oldExists, err := tg.Engine.DatabaseExists(ctx, oldDB)
		if err != nil {
			return err
		}
		newExists, err := tg.Engine.DatabaseExists(ctx, newDB)
		if err != nil {
			return err
		}
		if err := h.Hooks.run(h.Hooks.AfterCheck, ctx, d); err != nil {
			return err
		}
		switch {
		case oldExists && !newExists:
			if err := tg.Engine.RenameDatabase(ctx, oldDB, newDB); err != nil {
				return err
			}
			log.Info("database renamed", "from", oldDB, "to", newDB)
		case !oldExists && newExists:
			log.Info("database already renamed", "from", oldDB, "to", newDB)
		case oldExists && newExists:
			return fmt.Errorf("%w: both %q and %q exist; nothing is dropped to make room", provisioning.ErrConflict, oldDB, newDB)
		default:
			return fmt.Errorf("%w: neither %q nor %q exists", provisioning.ErrConflict, oldDB, newDB)
		}
	}
	if err := h.Hooks.run(h.Hooks.AfterDatabase, ctx, d); err != nil {
		return err
	}
	plain := tg.ODS.ForDatabase(newDB).ADONet()
	stored, err := tg.seal(plain)
	if err != nil {
		return Terminal(fmt.Errorf("encrypt the connection string: %w", err))
	}
	err = tg.Registry.Rename(ctx, provisioning.Renaming{Tenant: j.Tenant, InstanceID: j.InstanceID, NewName: j.Name, NewDatabase: newDB, ConnectionString: stored},
		func(ctx context.Context, before provisioning.Record) error {
			if before.Database == newDB && h.statusIs(ctx, j.Tenant, j.InstanceID, adminapi.StatusCompleted) {
				return nil
			}
			if err := h.API.Renamed(ctx, j.Tenant, j.InstanceID, plain); err != nil {
				return fmt.Errorf("mark instance %d renamed: %w", j.InstanceID, err)
			}
			return nil
		})
	if err != nil {
		return err
	}
	log.Info("instance renamed", "database", newDB)
	return nil
}

// Fail records a rename that will not succeed: the ledger's generation moves
// on (so a new rename request is a new job) and the Admin API hears
// renameFailed, in one transaction.
func (h renameHandler) Fail(ctx context.Context, d Delivery, cause error) error {
	j := d.Job
	report := func(ctx context.Context) error {
		err := h.API.RenameFailed(ctx, j.Tenant, j.InstanceID)
		if errors.Is(err, adminapi.ErrConflict) || errors.Is(err, adminapi.ErrNotFound) {
			return nil // no longer Pending_Rename: nothing to report
		}
		return err
	}
	tg, err := h.Targets.Target(ctx, j.Tenant)
	if err != nil || tg.Registry == nil {
		return report(ctx)
	}
	err = tg.Registry.RenameFailed(ctx, j.Tenant, j.InstanceID, report)
	if errors.Is(err, provisioning.ErrNotRecorded) {
		return report(ctx)
	}
	return err
}

type deleteHandler struct{ *Ops }

func (h deleteHandler) Handle(ctx context.Context, d Delivery) error {
	j, log := d.Job, h.logger(d)
	inst, err := h.API.Instance(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		return fmt.Errorf("look up instance %d of tenant %q: %w", j.InstanceID, j.Tenant, err)
	}
	if inst.Status != adminapi.StatusPendingDelete {
		log.Info("nothing to delete", "status", inst.Status)
		return nil
	}
	tg, err := h.Targets.Target(ctx, j.Tenant)
	if err != nil {
		return err
	}
	if tg.Registry == nil {
		return Terminal(errors.New("delete needs the worker's own registration (provisioning.register), which records each instance's database"))
	}
	rec, err := tg.Registry.Lookup(ctx, j.Tenant, j.InstanceID)
	if err != nil {
		// Still Pending_Delete, so the unregistering transaction never
		// committed: the system never created this instance.
		return err
	}
	if err := h.Hooks.run(h.Hooks.AfterCheck, ctx, d); err != nil {
		return err
	}
	dropped, err := tg.Engine.DropDatabase(ctx, rec.Database)
	if err != nil {
		return err
	}
	log.Info("database gone", "database", rec.Database, "dropped_now", dropped)
	if err := h.Hooks.run(h.Hooks.AfterDatabase, ctx, d); err != nil {
		return err
	}
	err = tg.Registry.Unregister(ctx, j.Tenant, j.InstanceID, func(ctx context.Context, _ provisioning.Record) error {
		if err := h.API.Deleted(ctx, j.Tenant, j.InstanceID); err != nil {
			return fmt.Errorf("mark instance %d deleted: %w", j.InstanceID, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	log.Info("instance deleted", "database", rec.Database)
	return nil
}

// Fail reports deleteFailed.
func (h deleteHandler) Fail(ctx context.Context, d Delivery, _ error) error {
	err := h.API.DeleteFailed(ctx, d.Job.Tenant, d.Job.InstanceID)
	if errors.Is(err, adminapi.ErrNotFound) {
		return nil
	}
	return err
}
