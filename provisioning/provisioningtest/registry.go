package provisioningtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// MemoryRegistry is an in-memory provisioning.Registry: the ledger and, unless
// AdminAPIRegisters, the dbo.odsinstances rows, held to the PostgreSQL
// registry's rules. Each operation holds one lock from its first read to
// the end of its completion, and a failed completion undoes the operation,
// as the transaction does.
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
func (r *MemoryRegistry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
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
			r.ledger[owner] = provisioning.Record{Tenant: reg.Tenant, InstanceID: reg.InstanceID, OdsInstanceID: res.OdsInstanceID, Database: reg.Database, Name: reg.Name}
		default:
			return "", err
		}
		return "register " + key(owner) + " " + reg.Database, complete(ctx, res)
	})
	return res, err
}

// Rename implements provisioning.Registry.
func (r *MemoryRegistry) Rename(ctx context.Context, ren provisioning.Renaming, complete func(context.Context, provisioning.Record) error) error {
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
		return "rename " + key(owner) + " " + ren.NewDatabase, complete(ctx, before)
	})
}

// RenameFailed implements provisioning.Registry.
func (r *MemoryRegistry) RenameFailed(ctx context.Context, tenant string, id, generation int, complete func(context.Context) error) error {
	return r.advance(ctx, "rename-failed", tenant, id, generation, complete)
}

// DeleteFailed implements provisioning.Registry.
func (r *MemoryRegistry) DeleteFailed(ctx context.Context, tenant string, id, generation int, complete func(context.Context) error) error {
	return r.advance(ctx, "delete-failed", tenant, id, generation, complete)
}

func (r *MemoryRegistry) advance(ctx context.Context, what, tenant string, id, generation int, complete func(context.Context) error) error {
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
		return what + " " + key(rec.Owner()), complete(ctx)
	})
}

// Unregister implements provisioning.Registry.
func (r *MemoryRegistry) Unregister(ctx context.Context, tenant string, id int, complete func(context.Context, provisioning.Record) error) error {
	return r.inTx(func() (string, error) {
		before, err := r.lookup(tenant, id)
		if err != nil {
			return "", err
		}
		if !r.AdminAPIRegisters {
			delete(r.rows, before.OdsInstanceID)
		}
		delete(r.ledger, before.Owner())
		return "unregister " + key(before.Owner()), complete(ctx, before)
	})
}
