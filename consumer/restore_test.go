package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
)

// trashOfOne is the memory engine with one instance's database in trash:
// a restore makes it again under its name, made for its owner.
type trashOfOne struct {
	*provisioningtest.MemoryEngine
	held provisioning.Trashed
}

func (e *trashOfOne) Trash(context.Context) ([]provisioning.Trashed, error) {
	if e.held.Name == "" {
		return nil, nil
	}
	return []provisioning.Trashed{e.held}, nil
}

func (e *trashOfOne) Restore(ctx context.Context, _, name string) (provisioning.Trashed, error) {
	if _, _, err := e.Reserve(ctx, name, e.held.Owner); err != nil {
		return provisioning.Trashed{}, err
	}
	if _, err := e.CreateDatabase(ctx, name, template, e.held.Owner); err != nil {
		return provisioning.Trashed{}, err
	}
	t := e.held
	e.held = provisioning.Trashed{}
	return t, nil
}

func (e *trashOfOne) TrashDatabase(context.Context, string, provisioning.Owner, time.Duration, int) (bool, error) {
	return false, nil
}
func (e *trashOfOne) PurgeDue(context.Context) ([]provisioning.Purged, error) { return nil, nil }
func (e *trashOfOne) Purge(context.Context, string) (provisioning.Purged, error) {
	return provisioning.Purged{}, nil
}

// lostCommit is a registry whose first registration's commit is lost after
// the Admin API heard completed (EdFi_Admin restarting).
type lostCommit struct {
	*provisioningtest.MemoryRegistry
	lost bool
}

func (r *lostCommit) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.Tx, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	if !r.lost {
		r.lost = true
		if err := complete(ctx, nil, provisioning.RegisterResult{}); err != nil {
			return provisioning.RegisterResult{}, err
		}
		return provisioning.RegisterResult{}, provisioning.ErrTransient
	}
	return r.MemoryRegistry.Register(ctx, reg, complete)
}

// A restore whose registration's commit is lost after Admin API 2.2.2
// heard completed tries it again, and ends registered, one generation past
// the delete's: before, it stopped with the instance Completed and no
// ledger entry, which no restore run again could mend (not Deleted).
func TestRestoreRegistersAgainAfterALostCommit(t *testing.T) {
	b := setup(t)
	id := b.instance(t, "Back", adminapi.StatusDeleted)
	owner := provisioning.Owner{Tenant: "default", InstanceID: id, Line: provisioning.LineAdminConsole}
	engine := &trashOfOne{MemoryEngine: b.engine, held: provisioning.Trashed{Name: provisioning.TrashPrefix + "x", Original: "EdFi_Ods_Back", Owner: owner,
		Generation: 2, DeletedAt: time.Now(), PurgeAt: time.Now().Add(time.Hour)}}
	registry := &lostCommit{MemoryRegistry: b.registry}
	placement, _ := b.handlers.Placements.Placement(context.Background(), "default")
	p := *placement
	p.Engine, p.Registry = engine, registry
	b.handlers.Placements = oneTenant{&p}
	r, err := b.handlers.Restore(context.Background(), provisioning.LineAdminConsole, "default", id, "")
	if err != nil || r.Database != "EdFi_Ods_Back" {
		t.Fatalf("restore: %+v, %v", r, err)
	}
	if rec, err := b.registry.Lookup(context.Background(), "default", id); err != nil || rec.Database != "EdFi_Ods_Back" || rec.Generation != 3 {
		t.Fatalf("ledger %+v, %v; want EdFi_Ods_Back at generation 3", rec, err)
	}
	if inst, _ := b.sim.Instance(id); inst.Status != adminapi.StatusCompleted {
		t.Fatalf("instance %s, want Completed", inst.Status)
	}
}

var _ provisioning.Restorer = (*trashOfOne)(nil)
