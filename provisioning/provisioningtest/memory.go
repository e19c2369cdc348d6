// Package provisioningtest is to the provisioning interfaces what River's
// rivertest and riverdrivertest are to River: in-memory fakes of Engine and
// Registry for tests of the code above them (the consumer's handlers), and
// exported conformance suites (Engine, Registry) that every implementation
// must pass, the PostgreSQL one and the fakes alike, so that a test against
// a fake says something about the real thing.
//
// The fakes keep everything in memory and must never be used outside tests.
package provisioningtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// MemoryEngine is an in-memory provisioning.Engine: databases and
// reservations in maps, held to the same ownership protocol as the
// PostgreSQL engine (provisioning.MakePublished, Move, Drop), each database
// with an identity of its own. It records every statement that changes an
// ODS database in Calls.
type MemoryEngine struct {
	// Guard is checked before every rename and drop; without one, nothing
	// is renamed or dropped.
	Guard *provisioning.Guard

	mu     sync.Mutex
	dbs    map[string]int                      // name to identity
	res    map[string]provisioning.Reservation // by lower-case name
	nextID int
	calls  []string
}

var (
	_ provisioning.Engine    = (*MemoryEngine)(nil)
	_ provisioning.Publisher = (*MemoryEngine)(nil)
)

// NewMemoryEngine returns an engine whose server holds the given databases (a
// template, say), made by nobody the engine knows.
func NewMemoryEngine(guard *provisioning.Guard, databases ...string) *MemoryEngine {
	e := &MemoryEngine{Guard: guard, dbs: map[string]int{}, res: map[string]provisioning.Reservation{}}
	for _, d := range databases {
		e.makeLocked(d)
	}
	return e
}

// makeLocked creates a database with a new identity; the caller holds e.mu.
func (e *MemoryEngine) makeLocked(name string) {
	e.nextID++
	e.dbs[name] = e.nextID
}

// MakeForeign creates a database as someone else would, outside the
// engine: no reservation, no call recorded.
func (e *MemoryEngine) MakeForeign(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.makeLocked(name)
}

// DropForeign drops a database as someone else would, outside the engine.
func (e *MemoryEngine) DropForeign(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.dbs, name)
}

// Databases lists the server's databases, sorted.
func (e *MemoryEngine) Databases() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.dbs))
}

// Calls lists the changes made, in order: "create NAME", "rename OLD NEW",
// "drop NAME".
func (e *MemoryEngine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty database name", provisioning.ErrInvalidName)
	case len(name) > provisioning.MaxNameBytes:
		return fmt.Errorf("%w: database name of %d bytes", provisioning.ErrInvalidName, len(name))
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: database name holds a NUL byte", provisioning.ErrInvalidName)
	}
	return nil
}

// DatabaseExists implements provisioning.Engine.
func (e *MemoryEngine) DatabaseExists(ctx context.Context, name string) (bool, error) {
	_, ok, err := e.Identity(ctx, name)
	return ok, err
}

// Identity implements provisioning.ReservationStore.
func (e *MemoryEngine) Identity(_ context.Context, name string) (string, bool, error) {
	if err := checkName(name); err != nil {
		return "", false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.dbs[name]
	if !ok {
		return "", false, nil
	}
	return strconv.Itoa(id), true, nil
}

// Reserve implements provisioning.Engine.
func (e *MemoryEngine) Reserve(_ context.Context, name string, owner provisioning.Owner) (provisioning.Reservation, bool, error) {
	if err := checkName(name); err != nil {
		return provisioning.Reservation{}, false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := strings.ToLower(name)
	_, held := e.res[key]
	if !held {
		e.res[key] = provisioning.Reservation{Database: name, Owner: owner, State: provisioning.StateReserved}
	}
	res, err := e.ownedBy(name, owner)
	return res, !held && err == nil, err
}

// Reservation implements provisioning.Engine.
func (e *MemoryEngine) Reservation(_ context.Context, name string) (provisioning.Reservation, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, ok := e.res[strings.ToLower(name)]
	return res, ok, nil
}

// ownedBy is the PostgreSQL engine's rule; the caller holds e.mu.
func (e *MemoryEngine) ownedBy(name string, owner provisioning.Owner) (provisioning.Reservation, error) {
	res, ok := e.res[strings.ToLower(name)]
	return res, provisioning.CheckOwner(res, ok, name, owner)
}

// SetState implements provisioning.ReservationStore.
func (e *MemoryEngine) SetState(_ context.Context, name string, owner provisioning.Owner, state provisioning.ReservationState, identity string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.setState(name, owner, state, identity)
}

// setState is SetState; the caller holds e.mu.
func (e *MemoryEngine) setState(name string, owner provisioning.Owner, state provisioning.ReservationState, identity string) error {
	key := strings.ToLower(name)
	res, ok := e.res[key]
	if !ok || res.Owner != owner || res.Database != name {
		return fmt.Errorf("%w: the reservation of %q for %s is gone", provisioning.ErrConflict, name, owner)
	}
	res.State = state
	if identity != "" {
		res.Identity = identity
	}
	e.res[key] = res
	return nil
}

// MarkMaking implements provisioning.Scratcher.
func (e *MemoryEngine) MarkMaking(_ context.Context, name string, owner provisioning.Owner) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.ownedBy(name, owner)
	if err != nil || res.State != provisioning.StateReserved {
		return err
	}
	return e.setState(name, owner, provisioning.StateMaking, "")
}

// DropScratch implements provisioning.Scratcher.
func (e *MemoryEngine) DropScratch(_ context.Context, scratch string) error {
	if !strings.HasPrefix(scratch, provisioning.ScratchPrefix) {
		return fmt.Errorf("%w: %q is not a scratch copy's name", provisioning.ErrProtected, scratch)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.dbs, scratch)
	return nil
}

// Publish implements provisioning.Publisher, in one step as PostgreSQL's
// transaction does it.
func (e *MemoryEngine) Publish(_ context.Context, scratch, name string, owner provisioning.Owner) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.dbs[scratch]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", provisioning.ErrScratchGone, scratch)
	case e.dbs[name] != 0:
		return fmt.Errorf("%w: database %q appeared while instancemgr was copying the template for it", provisioning.ErrConflict, name)
	}
	if err := e.setState(name, owner, provisioning.StateMade, strconv.Itoa(id)); err != nil {
		return err
	}
	delete(e.dbs, scratch)
	e.dbs[name] = id
	return nil
}

// Release implements provisioning.Engine.
func (e *MemoryEngine) Release(_ context.Context, name string, owner provisioning.Owner) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := strings.ToLower(name)
	res, ok := e.res[key]
	_, copyLeft := e.dbs[provisioning.ScratchName(res)]
	_, exists := e.dbs[name]
	if ok && res.Owner == owner && res.Database == name && (res.State == provisioning.StateReserved || !exists) && !copyLeft {
		delete(e.res, key)
	}
	return nil
}

// CreateDatabase implements provisioning.Engine.
func (e *MemoryEngine) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	if err := errors.Join(checkName(name), checkName(template)); err != nil {
		return false, err
	}
	return provisioning.MakePublished(ctx, e, name, owner, func(_ context.Context, scratch string) (bool, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if _, ok := e.dbs[template]; !ok {
			return false, fmt.Errorf("create database %q: template %q does not exist", name, template)
		}
		if _, ok := e.dbs[scratch]; ok {
			return false, nil
		}
		e.makeLocked(scratch)
		e.calls = append(e.calls, "create "+name)
		return true, nil
	})
}

// RenameDatabase implements provisioning.Engine.
func (e *MemoryEngine) RenameDatabase(ctx context.Context, old, new string, owner provisioning.Owner) (bool, error) {
	for _, n := range []string{old, new} {
		if err := e.Guard.CheckDestructive(n); err != nil {
			return false, fmt.Errorf("rename database %q to %q: %w", old, new, err)
		}
	}
	return provisioning.Move(ctx, e, old, new, owner, func(context.Context, string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		id, ok := e.dbs[old]
		switch {
		case !ok:
			return fmt.Errorf("rename database %q to %q: %q does not exist", old, new, old)
		case e.dbs[new] != 0:
			return fmt.Errorf("rename database %q to %q: %q already exists", old, new, new)
		}
		delete(e.dbs, old)
		e.dbs[new] = id
		e.calls = append(e.calls, "rename "+old+" "+new)
		return nil
	})
}

// DropDatabase implements provisioning.Engine.
func (e *MemoryEngine) DropDatabase(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("drop database %q: %w", name, err)
	}
	return provisioning.Drop(ctx, e, name, owner, func(context.Context, string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.dbs, name)
		e.calls = append(e.calls, "drop "+name)
		return nil
	})
}

// Import implements provisioning.Engine.
func (e *MemoryEngine) Import(_ context.Context, name string, owner provisioning.Owner) error {
	if err := checkName(name); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	key := strings.ToLower(name)
	res, held := e.res[key]
	if id, exists := e.dbs[name]; !held && exists {
		// Only a database there now: a ledger entry read before a delete
		// or rename ended names one that is gone.
		res, held = provisioning.Reservation{Database: name, Owner: owner, State: provisioning.StateMade, Identity: strconv.Itoa(id)}, true
		e.res[key] = res
	}
	if !held {
		return nil // nothing there to import
	}
	return provisioning.CheckOwner(res, held, name, owner)
}

// MemoryRegistry is an in-memory provisioning.Registry: the ledger and, unless
// AdminAPIRegisters, the dbo.odsinstances rows, held to the PostgreSQL
// registry's rules. Each operation holds one lock from its first read to
// the end of its completion, and a failed completion undoes the operation,
// as the transaction does; having no SQL transaction, it hands its
// completions a nil tx.
type MemoryRegistry struct {
	// AdminAPIRegisters leaves the rows to the Admin API and keeps only
	// the ledger (provisioning.registration: adminapi).
	AdminAPIRegisters bool

	mu     sync.Mutex
	ledger map[provisioning.Owner]provisioning.Record
	rows   map[int]Row
	nextID int
	calls  []string
}

// Row is a dbo.odsinstances row as the fake keeps it.
type Row struct {
	Name, InstanceType, ConnectionString string
}

var _ provisioning.Registry = (*MemoryRegistry)(nil)

// NewMemoryRegistry returns an empty registry.
func NewMemoryRegistry() *MemoryRegistry {
	return &MemoryRegistry{ledger: map[provisioning.Owner]provisioning.Record{}, rows: map[int]Row{}}
}

// Rows returns the dbo.odsinstances rows by id.
func (r *MemoryRegistry) Rows() map[int]Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.rows)
}

// RemoveRow deletes a row as someone else would, behind the ledger's back.
func (r *MemoryRegistry) RemoveRow(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rows, id)
}

// Calls lists the writes that committed, in order: "register T/ID DB",
// "rename T/ID DB", "rename-failed T/ID", "delete-failed T/ID",
// "unregister T/ID".
func (r *MemoryRegistry) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// inTx runs fn under the lock and undoes its writes when it fails.
func (r *MemoryRegistry) inTx(fn func() (call string, err error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ledger, rows, nextID := maps.Clone(r.ledger), maps.Clone(r.rows), r.nextID
	call, err := fn()
	if err != nil {
		r.ledger, r.rows, r.nextID = ledger, rows, nextID
		return err
	}
	r.calls = append(r.calls, call)
	return nil
}

func key(o provisioning.Owner) string { return fmt.Sprintf("%s/%d", o.Tenant, o.InstanceID) }

// lookup is Lookup under the lock.
func (r *MemoryRegistry) lookup(tenant string, id int) (provisioning.Record, error) {
	rec, ok := r.ledger[provisioning.Owner{Tenant: tenant, InstanceID: id}]
	if !ok {
		return provisioning.Record{Tenant: tenant, InstanceID: id}, fmt.Errorf("%w: tenant %q instance %d", provisioning.ErrNotRecorded, tenant, id)
	}
	return rec, nil
}

// Lookup implements provisioning.Registry.
func (r *MemoryRegistry) Lookup(_ context.Context, tenant string, id int) (provisioning.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookup(tenant, id)
}

// Records implements provisioning.Registry.
func (r *MemoryRegistry) Records(context.Context) ([]provisioning.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := slices.Collect(maps.Values(r.ledger))
	slices.SortFunc(recs, func(a, b provisioning.Record) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return a.InstanceID - b.InstanceID
	})
	return recs, nil
}

// Register implements provisioning.Registry.
func (r *MemoryRegistry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.Tx, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	var res provisioning.RegisterResult
	owner := provisioning.Owner{Tenant: reg.Tenant, InstanceID: reg.InstanceID}
	what := fmt.Sprintf("register %q", reg.Name)
	err := r.inTx(func() (string, error) {
		rec, err := r.lookup(reg.Tenant, reg.InstanceID)
		switch {
		case err == nil:
			if rec.Database != reg.Database || rec.Name != reg.Name {
				return "", fmt.Errorf("%s: %w: the ledger already has tenant %q instance %d on database %q (name %q), not %q (name %q)",
					what, provisioning.ErrConflict, reg.Tenant, reg.InstanceID, rec.Database, rec.Name, reg.Database, reg.Name)
			}
			if !r.AdminAPIRegisters {
				row, ok := r.rows[rec.OdsInstanceID]
				switch {
				case !ok:
					return "", fmt.Errorf("%s: %w: the ledger names dbo.odsinstances row %d, which someone else removed", what, provisioning.ErrConflict, rec.OdsInstanceID)
				case row.Name != reg.Name:
					return "", fmt.Errorf("%s: %w: dbo.odsinstances row %d is named %q now, not %q", what, provisioning.ErrConflict, rec.OdsInstanceID, row.Name, reg.Name)
				}
			}
			res = provisioning.RegisterResult{OdsInstanceID: rec.OdsInstanceID, Existed: true}
		case errors.Is(err, provisioning.ErrNotRecorded):
			res = provisioning.RegisterResult{}
			if !r.AdminAPIRegisters {
				for _, row := range r.rows {
					if row.Name == reg.Name && row.InstanceType == reg.InstanceType {
						return "", fmt.Errorf("%s: %w: dbo.odsinstances already has an instance of this name and type that instancemgr did not register", what, provisioning.ErrConflict)
					}
				}
				r.nextID++
				res.OdsInstanceID = r.nextID
				r.rows[res.OdsInstanceID] = Row{Name: reg.Name, InstanceType: reg.InstanceType, ConnectionString: reg.ConnectionString}
			}
			r.ledger[owner] = provisioning.Record{Tenant: reg.Tenant, InstanceID: reg.InstanceID, OdsInstanceID: res.OdsInstanceID, Database: reg.Database, Name: reg.Name, Generation: reg.Generation}
		default:
			return "", err
		}
		return "register " + key(owner) + " " + reg.Database, complete(ctx, nil, res)
	})
	return res, err
}

// Rename implements provisioning.Registry.
func (r *MemoryRegistry) Rename(ctx context.Context, ren provisioning.Renaming, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	owner := provisioning.Owner{Tenant: ren.Tenant, InstanceID: ren.InstanceID}
	return r.inTx(func() (string, error) {
		before, err := r.lookup(ren.Tenant, ren.InstanceID)
		if err != nil {
			return "", err
		}
		if before.Generation != ren.Generation {
			return "", fmt.Errorf("rename: %w: the ledger is at generation %d, the job was made for %d", provisioning.ErrStale, before.Generation, ren.Generation)
		}
		if row, ok := r.rows[before.OdsInstanceID]; ok && !r.AdminAPIRegisters {
			row.Name, row.ConnectionString = ren.NewName, ren.ConnectionString
			r.rows[before.OdsInstanceID] = row
		}
		after := before
		after.Database, after.Name, after.Generation = ren.NewDatabase, ren.NewName, before.Generation+1
		r.ledger[owner] = after
		return "rename " + key(owner) + " " + ren.NewDatabase, complete(ctx, nil, before)
	})
}

// RenameFailed implements provisioning.Registry.
func (r *MemoryRegistry) RenameFailed(ctx context.Context, tenant string, id, generation int, moved *provisioning.Renaming, complete func(context.Context, provisioning.Tx) error) error {
	if moved == nil {
		return r.advance(ctx, "rename-failed", tenant, id, generation, complete)
	}
	return r.inTx(func() (string, error) {
		rec, err := r.lookup(tenant, id)
		if err != nil {
			return "", err
		}
		if rec.Generation != generation {
			return "", fmt.Errorf("rename-failed: %w: the ledger is at generation %d, the job was made for %d", provisioning.ErrStale, rec.Generation, generation)
		}
		if row, ok := r.rows[rec.OdsInstanceID]; ok && !r.AdminAPIRegisters {
			row.ConnectionString = moved.ConnectionString
			r.rows[rec.OdsInstanceID] = row
		}
		rec.Database, rec.Name, rec.Generation = moved.NewDatabase, moved.NewName, rec.Generation+1
		r.ledger[rec.Owner()] = rec
		return "rename-failed " + key(rec.Owner()) + " " + moved.NewDatabase, complete(ctx, nil)
	})
}

// DeleteFailed implements provisioning.Registry.
func (r *MemoryRegistry) DeleteFailed(ctx context.Context, tenant string, id, generation int, complete func(context.Context, provisioning.Tx) error) error {
	return r.advance(ctx, "delete-failed", tenant, id, generation, complete)
}

func (r *MemoryRegistry) advance(ctx context.Context, what, tenant string, id, generation int, complete func(context.Context, provisioning.Tx) error) error {
	return r.inTx(func() (string, error) {
		rec, err := r.lookup(tenant, id)
		if err != nil {
			return "", err
		}
		if rec.Generation != generation {
			return "", fmt.Errorf("%s: %w: the ledger is at generation %d, the job was made for %d", what, provisioning.ErrStale, rec.Generation, generation)
		}
		rec.Generation++
		r.ledger[rec.Owner()] = rec
		return what + " " + key(rec.Owner()), complete(ctx, nil)
	})
}

// Unregister implements provisioning.Registry.
func (r *MemoryRegistry) Unregister(ctx context.Context, tenant string, id int, complete func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	return r.inTx(func() (string, error) {
		before, err := r.lookup(tenant, id)
		if err != nil {
			return "", err
		}
		if !r.AdminAPIRegisters {
			delete(r.rows, before.OdsInstanceID)
		}
		delete(r.ledger, before.Owner())
		return "unregister " + key(before.Owner()), complete(ctx, nil, before)
	})
}
