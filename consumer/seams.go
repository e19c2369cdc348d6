package consumer

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// TestSeams are the only places where tests reach into a running replica:
// to stop a job between its steps, to hear how each delivery ended, or to
// let a lock expire under a running job. Production code leaves them zero;
// the binary sets them only from its test switches, which it refuses
// without --enable-test-switches.
type TestSeams struct {
	// AfterCheck runs after a handler's existence checks, before any
	// change; AfterDatabase after the database change, before the
	// registration. An error fails the delivery with it.
	AfterCheck    func(ctx context.Context, d Delivery) error
	AfterDatabase func(ctx context.Context, d Delivery) error
	// Observe hears the outcome of every delivery.
	Observe func(Outcome)
	// DisableHeartbeat stops running jobs from renewing their lock.
	DisableHeartbeat bool
}

// seams puts AfterCheck and AfterDatabase around each delivery's changes:
// AfterCheck runs as the handler asks its server for the change (create,
// rename or drop the database), AfterDatabase as it asks EdFi_Admin for
// the registration (register, rename, unregister). Handlers do not call
// them; the wrapped server and EdFi_Admin do (Placement.at). With neither
// set, as in production, the layer is left out.
func seams(s TestSeams) layer {
	return func(d *Delivery) message.HandlerMiddleware {
		if s.AfterCheck == nil && s.AfterDatabase == nil {
			return nil
		}
		return func(next message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				d.seams = &s
				return next(msg)
			}
		}
	}
}

// observe tells Observe, if set, how a delivery ended.
func (s TestSeams) observe(o Outcome) {
	if s.Observe != nil {
		s.Observe(o)
	}
}

func runSeam(seam func(context.Context, Delivery) error, ctx context.Context, d Delivery) error {
	if seam == nil {
		return nil
	}
	return seam(ctx, d)
}

// seamEngine runs d's AfterCheck before each change of a database.
type seamEngine struct {
	provisioning.Engine
	d Delivery
}

func (e seamEngine) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	if err := runSeam(e.d.seams.AfterCheck, ctx, e.d); err != nil {
		return false, err
	}
	return e.Engine.CreateDatabase(ctx, name, template, owner)
}

func (e seamEngine) RenameDatabase(ctx context.Context, oldName, newName string, owner provisioning.Owner) (bool, error) {
	if err := runSeam(e.d.seams.AfterCheck, ctx, e.d); err != nil {
		return false, err
	}
	return e.Engine.RenameDatabase(ctx, oldName, newName, owner)
}

func (e seamEngine) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	if err := runSeam(e.d.seams.AfterCheck, ctx, e.d); err != nil {
		return false, err
	}
	return trashDatabase(ctx, e.Engine, name, owner, retention, generation)
}

func (e seamEngine) DropDatabase(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	if err := runSeam(e.d.seams.AfterCheck, ctx, e.d); err != nil {
		return false, err
	}
	return e.Engine.DropDatabase(ctx, name, owner)
}

// seamRegistry runs d's AfterDatabase before each registration.
type seamRegistry struct {
	provisioning.Registry
	d Delivery
}

func (r seamRegistry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.Tx, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	if err := runSeam(r.d.seams.AfterDatabase, ctx, r.d); err != nil {
		return provisioning.RegisterResult{}, err
	}
	return r.Registry.Register(ctx, reg, complete)
}

func (r seamRegistry) Rename(ctx context.Context, ren provisioning.Renaming, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	if err := runSeam(r.d.seams.AfterDatabase, ctx, r.d); err != nil {
		return err
	}
	return r.Registry.Rename(ctx, ren, complete)
}

func (r seamRegistry) Unregister(ctx context.Context, tenant string, id int, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	if err := runSeam(r.d.seams.AfterDatabase, ctx, r.d); err != nil {
		return err
	}
	return r.Registry.Unregister(ctx, tenant, id, complete)
}
