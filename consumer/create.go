package consumer

import (
	"context"
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
}

// Targets resolves a tenant to its target. A tenant with no mapping is a
// terminal error.
type Targets interface {
	Target(ctx context.Context, tenant string) (*Target, error)
}

// CreateHooks are test seams between the steps of a create; nil hooks do
// nothing. A hook that returns an error fails the delivery with it.
type CreateHooks struct {
	// AfterCheck runs after the existence check, before any change.
	AfterCheck func(ctx context.Context, d Delivery, dbExists bool) error
	// AfterDatabase runs after the database exists, before registration.
	AfterDatabase func(ctx context.Context, d Delivery) error
}

// Create provisions a new instance: database from template, registration in
// EdFi_Admin, completed in the Admin API, in that order, each step skipped
// when a previous delivery already did it.
type Create struct {
	API     AdminAPI
	Targets Targets
	Naming  provisioning.Naming
	Log     *slog.Logger
	Hooks   CreateHooks
}

// Handle implements Handler.
func (h *Create) Handle(ctx context.Context, d Delivery) error {
	j := d.Job
	log := h.logger().With("op", j.Operation, "tenant", j.Tenant, "instance_id", j.InstanceID, "job_id", j.ID, "attempt", d.Attempt)

	inst, err := h.API.Instance(ctx, j.Tenant, j.InstanceID)
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

	name, err := h.Naming.DatabaseName(j.Tenant, j.Name)
	if err != nil {
		return err
	}
	tg, err := h.Targets.Target(ctx, j.Tenant)
	if err != nil {
		return err
	}
	exists, err := tg.Engine.DatabaseExists(ctx, name)
	if err != nil {
		return err
	}
	if hook := h.Hooks.AfterCheck; hook != nil {
		if err := hook(ctx, d, exists); err != nil {
			return err
		}
	}
	if !exists {
		created, err := tg.Engine.CreateDatabase(ctx, name, tg.Template)
		if err != nil {
			return err
		}
		log.Info("database ready", "database", name, "created", created)
	}
	if hook := h.Hooks.AfterDatabase; hook != nil {
		if err := hook(ctx, d); err != nil {
			return err
		}
	}

	connString := tg.ODS.ForDatabase(name).ADONet()
	complete := func(ctx context.Context, alreadyRegistered bool) error {
		if alreadyRegistered {
			// Another delivery may have finished since the first look.
			cur, err := h.API.Instance(ctx, j.Tenant, j.InstanceID)
			if err != nil {
				return fmt.Errorf("look up instance %d again: %w", j.InstanceID, err)
			}
			if cur.Status == adminapi.StatusCompleted {
				return nil
			}
		}
		if err := h.API.Completed(ctx, j.Tenant, j.InstanceID, connString); err != nil {
			return fmt.Errorf("mark instance %d completed: %w", j.InstanceID, err)
		}
		return nil
	}
	if tg.Registry == nil {
		return complete(ctx, inst.Status == adminapi.StatusCompleted)
	}
	reg := provisioning.Registration{
		LockKey:          string(j.Operation) + ":" + j.Tenant + ":" + fmt.Sprint(j.InstanceID),
		Name:             j.Name,
		InstanceType:     j.InstanceType,
		ConnectionString: connString,
		Derivatives:      j.Derivatives,
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

func (h *Create) logger() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}
