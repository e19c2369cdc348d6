package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// Phase is a part of a job's time: what it waited on.
type Phase string

// The phases a job's time is split into. Each is exclusive: the Admin API
// call made inside the registration transaction counts as adminapi, not as
// registration too.
const (
	PhaseAdminAPI     Phase = "adminapi"     // calls to the Admin API
	PhaseDatabase     Phase = "database"     // the tenant's server: reserve, create, rename, drop
	PhaseRegistration Phase = "registration" // EdFi_Admin: the ledger and the dbo rows
)

// Phases lists every phase, for metrics that export each from the start.
var Phases = []Phase{PhaseAdminAPI, PhaseDatabase, PhaseRegistration}

// phases adds up each delivery's time by phase and observes it when the
// handler returns. The handler's Admin API, server and EdFi_Admin are
// timed through the delivery's clock (Handlers.at, Placement.at): time
// goes to what a job waited on, wherever in the handler it waited.
func phases(m *Metrics) layer {
	return func(d *Delivery) message.HandlerMiddleware {
		if m == nil {
			return nil
		}
		return func(next message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				d.phases = &phaseClock{spent: map[Phase]time.Duration{}, now: time.Now}
				defer d.phases.observe(m, string(d.Job.Operation))
				return next(msg)
			}
		}
	}
}

// phaseClock adds up one delivery's time by phase.
type phaseClock struct {
	mu    sync.Mutex
	spent map[Phase]time.Duration
	stack []phaseFrame
	now   func() time.Time
}

type phaseFrame struct {
	phase Phase
	start time.Time
	inner time.Duration // spent in phases started inside this one
}

// start starts timing p; the returned func stops it.
func (c *phaseClock) start(p Phase) (stop func()) {
	c.mu.Lock()
	c.stack = append(c.stack, phaseFrame{phase: p, start: c.now()})
	depth := len(c.stack)
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.stack) != depth {
			return // stopped out of order: a bug; do not count twice
		}
		f := c.stack[depth-1]
		c.stack = c.stack[:depth-1]
		took := c.now().Sub(f.start)
		c.spent[f.phase] += took - f.inner
		if depth > 1 {
			c.stack[depth-2].inner += took
		}
	}
}

// observe records the time of each phase the delivery spent time in.
func (c *phaseClock) observe(m *Metrics, op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, spent := range c.spent {
		m.Phases.WithLabelValues(op, string(p)).Observe(spent.Seconds())
	}
}

// timedAPI times every Admin API call as PhaseAdminAPI.
type timedAPI struct {
	AdminAPI
	c *phaseClock
}

func (a timedAPI) Instance(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error) {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.Instance(ctx, tenant, id)
}

func (a timedAPI) OdsInstance(ctx context.Context, tenant string, id int) (adminapi.OdsInstance, error) {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.OdsInstance(ctx, tenant, id)
}

func (a timedAPI) Completed(ctx context.Context, tenant string, id int, cs string) error {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.Completed(ctx, tenant, id, cs)
}

func (a timedAPI) Renamed(ctx context.Context, tenant string, id int, cs string) error {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.Renamed(ctx, tenant, id, cs)
}

func (a timedAPI) RenameFailed(ctx context.Context, tenant string, id int) error {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.RenameFailed(ctx, tenant, id)
}

func (a timedAPI) Deleted(ctx context.Context, tenant string, id int) error {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.Deleted(ctx, tenant, id)
}

func (a timedAPI) DeleteFailed(ctx context.Context, tenant string, id int) error {
	defer a.c.start(PhaseAdminAPI)()
	return a.AdminAPI.DeleteFailed(ctx, tenant, id)
}

// timedEngine times the tenant's server as PhaseDatabase.
type timedEngine struct {
	provisioning.Engine
	c *phaseClock
}

func (e timedEngine) DatabaseExists(ctx context.Context, name string) (bool, error) {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.DatabaseExists(ctx, name)
}

func (e timedEngine) Reserve(ctx context.Context, name string, owner provisioning.Owner) (provisioning.Reservation, bool, error) {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.Reserve(ctx, name, owner)
}

func (e timedEngine) Reservation(ctx context.Context, name string) (provisioning.Reservation, bool, error) {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.Reservation(ctx, name)
}

func (e timedEngine) Release(ctx context.Context, name string, owner provisioning.Owner) error {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.Release(ctx, name, owner)
}

func (e timedEngine) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.CreateDatabase(ctx, name, template, owner)
}

func (e timedEngine) RenameDatabase(ctx context.Context, oldName, newName string, owner provisioning.Owner) (bool, error) {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.RenameDatabase(ctx, oldName, newName, owner)
}

func (e timedEngine) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	defer e.c.start(PhaseDatabase)()
	return trashDatabase(ctx, e.Engine, name, owner, retention, generation)
}

func (e timedEngine) DropDatabase(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	defer e.c.start(PhaseDatabase)()
	return e.Engine.DropDatabase(ctx, name, owner)
}

// timedRegistry times EdFi_Admin as PhaseRegistration; the Admin API calls
// its transactions make are timed as their own phase.
type timedRegistry struct {
	provisioning.Registry
	c *phaseClock
}

func (r timedRegistry) Lookup(ctx context.Context, tenant string, id int) (provisioning.Record, error) {
	defer r.c.start(PhaseRegistration)()
	return r.Registry.Lookup(ctx, tenant, id)
}

func (r timedRegistry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.Tx, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	defer r.c.start(PhaseRegistration)()
	return r.Registry.Register(ctx, reg, complete)
}

func (r timedRegistry) Rename(ctx context.Context, ren provisioning.Renaming, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	defer r.c.start(PhaseRegistration)()
	return r.Registry.Rename(ctx, ren, complete)
}

func (r timedRegistry) RenameFailed(ctx context.Context, tenant string, id, gen int, moved *provisioning.Renaming, complete func(context.Context, provisioning.Tx) error) error {
	defer r.c.start(PhaseRegistration)()
	return r.Registry.RenameFailed(ctx, tenant, id, gen, moved, complete)
}

func (r timedRegistry) DeleteFailed(ctx context.Context, tenant string, id, gen int, complete func(context.Context, provisioning.Tx) error) error {
	defer r.c.start(PhaseRegistration)()
	return r.Registry.DeleteFailed(ctx, tenant, id, gen, complete)
}

func (r timedRegistry) Unregister(ctx context.Context, tenant string, id int, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	defer r.c.start(PhaseRegistration)()
	return r.Registry.Unregister(ctx, tenant, id, complete)
}
