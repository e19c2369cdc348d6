package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// A restore puts a deleted instance back from trash (instancemgr trash
// restore): its database renamed back, by identity, and registered again
// the way its Admin API line registers an existing database, so that the
// Admin Console and the Admin App show it Completed (Created) again.

// Editor is an Admin API line whose deleted request is renamed before it is
// registered again under a new name: Admin API 2.2.2's PUT
// /adminconsole/odsInstances/{id}, which keeps a Deleted instance Deleted.
type Editor interface {
	UpdateOdsInstance(ctx context.Context, tenant string, id int, req adminapi.InstanceRequest) error
}

// RestoredTx is an Admin API line that hears a restore in the
// registration's transaction (the newest line's manage rows: Deleted back
// to Created, under the ledger's name). A line without it hears the
// restore as a completion, as Admin API 2.2.2's completed registers a
// Deleted instance again.
type RestoredTx interface {
	RestoredTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error
}

// Restored is what a restore did.
type Restored struct {
	provisioning.Trashed
	// Database and Name are the database and instance name it has now.
	Database, Name string
}

// Restore puts instance id of tenant on line back from trash, under its
// own name or, with as, under that instance name (and the database that
// name gives). Only a Deleted instance is restored, never over a name in
// use. The database is renamed back before the registration; when the
// registration fails it goes back to trash, so a failed restore leaves
// the instance deleted, as it was.
func (o *Handlers) Restore(ctx context.Context, line provisioning.Line, tenant string, id int, as string) (Restored, error) {
	var out Restored
	inst, err := o.API.Instance(ctx, tenant, id)
	if err != nil {
		return out, fmt.Errorf("look up instance %d of tenant %q: %w", id, tenant, err)
	}
	if inst.Status != adminapi.StatusDeleted {
		return out, fmt.Errorf("%w: instance %d of tenant %q is %s; only a Deleted instance is restored", provisioning.ErrConflict, id, tenant, inst.Status)
	}
	placement, err := o.tenant(ctx, tenant)
	if err != nil {
		return out, err
	}
	engine, ok := placement.Engine.(provisioning.Restorer)
	if !ok {
		return out, fmt.Errorf("tenant %q: this server's engine cannot restore a deleted database", tenant)
	}
	owner := provisioning.Owner{Tenant: tenant, InstanceID: id, Line: line}
	t, err := lastTrashed(ctx, engine, owner)
	if err != nil {
		return out, err
	}
	req, err := o.API.OdsInstance(ctx, tenant, id)
	if err != nil {
		return out, fmt.Errorf("read the details of instance %d of tenant %q: %w", id, tenant, err)
	}
	req.Name = cmp.Or(req.Name, inst.InstanceName)
	database := t.Original
	if as != "" {
		if database, err = o.name(placement, tenant, as, req.DatabaseTemplate); err != nil {
			return out, err
		}
		// Refused before the Admin API hears the new name; the engine's
		// rename checks again, in its transaction.
		if err := nameFree(ctx, placement.Engine, database); err != nil {
			return out, err
		}
		// A run again after one that renamed the request finds it named.
		if as != req.Name {
			if err := o.renameDeleted(ctx, tenant, inst, req, as); err != nil {
				return out, err
			}
		}
		req.Name = as
	}
	out = Restored{Trashed: t, Database: database, Name: req.Name}
	if _, err := engine.Restore(ctx, t.Name, database); err != nil {
		return out, err
	}
	if err := o.registerRestoredRetrying(ctx, placement, owner, t, req, database); err != nil {
		if o.statusIs(context.WithoutCancel(ctx), tenant, id, adminapi.StatusCompleted) {
			// Admin API 2.2.2 heard completed and the commit failed after
			// it: the instance is in use again, so its database stays.
			return out, fmt.Errorf("register the restored %q: %w; the Admin API has the instance Completed, so the database stays under its name without a ledger entry (instancemgr reconcile: untracked_instance)", database, err)
		}
		// Back to trash, with what was left of its retention, at the
		// generation the restore gave its reservation: the instance
		// stays deleted, as the Admin API still says it is.
		left := max(time.Until(t.PurgeAt), time.Minute)
		if _, terr := engine.TrashDatabase(context.WithoutCancel(ctx), database, owner, left, t.Generation+1); terr != nil {
			return out, fmt.Errorf("register the restored %q: %w; and moving it back to trash failed: %w (it is under its name, reserved, not registered)", database, err, terr)
		}
		return out, fmt.Errorf("register the restored %q: %w (it is back in trash)", database, err)
	}
	return out, nil
}

// lastTrashed is the database of owner that trash holds, the latest
// deleted when there are several.
func lastTrashed(ctx context.Context, engine provisioning.Trasher, owner provisioning.Owner) (provisioning.Trashed, error) {
	held, err := engine.Trash(ctx)
	if err != nil {
		return provisioning.Trashed{}, err
	}
	held = slices.DeleteFunc(held, func(t provisioning.Trashed) bool { return t.Owner != owner })
	if len(held) == 0 {
		return provisioning.Trashed{}, fmt.Errorf("%w: trash holds nothing of %s (purged, restored, or deleted with no retention)", provisioning.ErrConflict, owner)
	}
	return slices.MaxFunc(held, func(a, b provisioning.Trashed) int { return a.DeletedAt.Compare(b.DeletedAt) }), nil
}

// nameFree refuses a database name that a database or a reservation holds.
func nameFree(ctx context.Context, e provisioning.Engine, name string) error {
	exists, err := e.DatabaseExists(ctx, name)
	if err != nil {
		return err
	}
	res, held, err := e.Reservation(ctx, name)
	if err != nil {
		return err
	}
	switch {
	case held:
		return fmt.Errorf("%w: database name %q is reserved for %s; nothing is restored", provisioning.ErrConflict, name, res.Owner)
	case exists:
		return fmt.Errorf("%w: a database named %q exists; nothing is restored", provisioning.ErrConflict, name)
	}
	return nil
}

// renameDeleted gives a Deleted request its new name at the Admin API
// first, where the line keeps names (Editor); the line checks that no
// other instance of the tenant has it.
func (o *Handlers) renameDeleted(ctx context.Context, tenant string, inst adminapi.WorkerInstance, req adminapi.OdsInstance, name string) error {
	e, ok := o.API.(Editor)
	if !ok {
		return nil
	}
	// The PUT replaces contexts and derivatives: all of them go with it.
	put := adminapi.InstanceRequest{TenantID: req.TenantID, TenantName: inst.TenantName, Name: name, InstanceType: req.InstanceType,
		OdsInstanceContexts: []adminapi.OdsInstanceContext{}, OdsInstanceDerivatives: []adminapi.OdsInstanceDerivative{}}
	for _, c := range req.OdsInstanceContexts {
		put.OdsInstanceContexts = append(put.OdsInstanceContexts, adminapi.OdsInstanceContext{ContextKey: c.ContextKey, ContextValue: c.ContextValue})
	}
	for _, d := range req.OdsInstanceDerivatives {
		put.OdsInstanceDerivatives = append(put.OdsInstanceDerivatives, adminapi.OdsInstanceDerivative{DerivativeType: d.DerivativeType})
	}
	if err := e.UpdateOdsInstance(ctx, tenant, inst.ID, put); err != nil {
		return fmt.Errorf("rename deleted instance %d of tenant %q to %q: %w", inst.ID, tenant, name, err)
	}
	return nil
}

// restoreRetries bounds how long a restore keeps trying a registration
// that failed for a passing cause (EdFi_Admin restarting, a lost commit):
// an operator waits at the terminal.
const restoreRetries = 30 * time.Second

// registerRestoredRetrying is registerRestored, tried again while it fails
// for a passing cause: a commit lost after Admin API 2.2.2 heard completed
// would otherwise leave the instance Completed without its ledger entry
// (completed again on a Completed instance changes nothing).
func (o *Handlers) registerRestoredRetrying(ctx context.Context, placement *Placement, owner provisioning.Owner, t provisioning.Trashed, req adminapi.OdsInstance, database string) error {
	b := backoff.NewExponentialBackOff()
	b.MaxElapsedTime = restoreRetries
	return backoff.Retry(func() error {
		err := o.registerRestored(ctx, placement, owner, t, req, database)
		if err != nil && !errors.Is(err, provisioning.ErrTransient) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx))
}

// registerRestored registers the restored database as a create does, in
// one transaction with the ledger (one generation past the delete's, so
// that the instance's next rename or delete is a new job) and the Admin
// API's completion.
func (o *Handlers) registerRestored(ctx context.Context, placement *Placement, owner provisioning.Owner, t provisioning.Trashed, req adminapi.OdsInstance, database string) error {
	plain := placement.ODS(database)
	stored, err := placement.seal(plain)
	if err != nil {
		return fmt.Errorf("encrypt the connection string: %w", err)
	}
	reg := registration(owner.Tenant, owner.InstanceID, database, stored, req)
	reg.Generation = t.Generation + 1
	_, err = placement.Registry.Register(ctx, reg, func(ctx context.Context, tx provisioning.Tx, _ provisioning.RegisterResult) error {
		if r, ok := o.API.(RestoredTx); ok {
			return r.RestoredTx(ctx, tx, owner.Tenant, owner.InstanceID)
		}
		if err := o.inTx(tx).Completed(ctx, owner.Tenant, owner.InstanceID, plain); err != nil {
			return fmt.Errorf("mark instance %d completed: %w", owner.InstanceID, err)
		}
		return nil
	})
	return err
}

// registration is what EdFi_Admin records of request req on database.
func registration(tenant string, id int, database, connectionString string, req adminapi.OdsInstance) provisioning.Registration {
	reg := provisioning.Registration{
		Tenant: tenant, InstanceID: id, Database: database,
		Name: req.Name, InstanceType: req.InstanceType, ConnectionString: connectionString,
	}
	for _, c := range req.OdsInstanceContexts {
		reg.Contexts = append(reg.Contexts, provisioning.Context{Key: c.ContextKey, Value: c.ContextValue})
	}
	for _, dv := range req.OdsInstanceDerivatives {
		reg.Derivatives = append(reg.Derivatives, dv.DerivativeType)
	}
	return reg
}
