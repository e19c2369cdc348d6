package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
)

// The handler table tests, River-style: setup returns the handlers under
// test and a bundle of what they talk to (the simulator over HTTP, and the
// in-memory engine and registry that pass the PostgreSQL conformance
// suites); each row states the situation a delivery finds and what it must
// do about it.

const template = "Ods_Minimal_Template"

type bundle struct {
	sim      *simulatortest.Server
	engine   *provisioningtest.MemoryEngine
	registry *provisioningtest.MemoryRegistry
	handlers *consumer.Handlers
}

type oneTenant struct{ t *consumer.Placement }

func (o oneTenant) Placement(context.Context, string) (*consumer.Placement, error) { return o.t, nil }

func setup(t *testing.T) *bundle {
	t.Helper()
	naming := provisioning.Naming{Pattern: provisioning.DefaultNamePattern}
	b := &bundle{
		sim:      simulatortest.Start(t, simulator.Options{}),
		engine:   provisioningtest.NewMemoryEngine(&provisioning.Guard{Naming: naming, Protected: []string{template}}, template),
		registry: provisioningtest.NewMemoryRegistry(),
	}
	api, err := adminapi.New(adminapi.Config{BaseURL: b.sim.URL, TokenURL: b.sim.TokenURL, ClientID: b.sim.ClientID, ClientSecret: b.sim.ClientSecret, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ods, err := connstr.ParsePostgres("host=db;username=ods;password=p;database={0}")
	if err != nil {
		t.Fatal(err)
	}
	tenant := &consumer.Placement{Engine: b.engine, Registry: b.registry, ODS: func(db string) string { return ods.ForDatabase(db).ADONet() }, Template: template}
	b.handlers = &consumer.Handlers{API: api, Placements: oneTenant{tenant}, Naming: naming, AllowDelete: true}
	return b
}

// instance asks for an instance called name and puts it in status.
func (b *bundle) instance(t *testing.T, name, status string) int {
	t.Helper()
	inst, err := b.sim.CreateInstance("default", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: name, InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	if status != adminapi.StatusPending {
		if err := b.sim.SetStatus(inst.ID, status); err != nil {
			t.Fatal(err)
		}
	}
	return inst.ID
}

// made makes a database the way the system does, for instance id.
func (b *bundle) made(t *testing.T, db string, id int) {
	t.Helper()
	owner := provisioning.Owner{Tenant: "default", InstanceID: id}
	if _, _, err := b.engine.Reserve(context.Background(), db, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := b.engine.CreateDatabase(context.Background(), db, template, owner); err != nil {
		t.Fatal(err)
	}
}

// recorded writes a ledger entry (and row) for instance id on db, at
// generation gen.
func (b *bundle) recorded(t *testing.T, id int, name, db string, gen int) {
	t.Helper()
	ctx := context.Background()
	reg := provisioning.Registration{Tenant: "default", InstanceID: id, Database: db, Name: name, InstanceType: "enterprise", ConnectionString: "host=db;database=" + db}
	if _, err := b.registry.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for g := range gen {
		if err := b.registry.RenameFailed(ctx, "default", id, g, nil, func(context.Context, provisioning.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *bundle) calls(id int) map[string]int {
	rec, _ := b.sim.Instance(id)
	return rec.Calls
}

// result compares an error with the sentinel a row expects (nil: success).
func result(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func TestCreateHandler(t *testing.T) {
	const db = "EdFi_Ods_District"
	tests := []struct {
		name    string
		status  string
		prepare func(t *testing.T, b *bundle, id int)
		// job is the message delivered; the bridge's by default.
		job  func(id int) jobs.Job
		want error
		// what the delivery did
		engine    []string
		registry  []string
		completed int
	}{
		{name: "pending, nothing there", status: adminapi.StatusPending,
			engine: []string{"create " + db}, registry: []string{"register default/1 " + db}, completed: 1},
		{name: "pending, database made by an earlier delivery", status: adminapi.StatusPending,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id) },
			engine:  []string{"create " + db}, registry: []string{"register default/1 " + db}, completed: 1},
		{name: "pending, someone else's database of that name", status: adminapi.StatusPending,
			prepare: func(t *testing.T, b *bundle, id int) { b.engine.MakeForeign(db) },
			want:    provisioning.ErrConflict},
		{name: "pending, the name held by another request", status: adminapi.StatusPending,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id+1) },
			want:    provisioning.ErrConflict, engine: []string{"create " + db}},
		{name: "pending, registered and made: the commit got lost", status: adminapi.StatusPending,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "District", db, 0) },
			engine:  []string{"create " + db}, registry: []string{"register default/1 " + db, "register default/1 " + db}, completed: 1},
		{name: "pending, the ledger has another database", status: adminapi.StatusPending,
			prepare: func(t *testing.T, b *bundle, id int) { b.recorded(t, id, "Old", "EdFi_Ods_Old", 0) },
			want:    provisioning.ErrConflict, registry: []string{"register default/1 EdFi_Ods_Old"}},
		{name: "completed and recorded: nothing left to do", status: adminapi.StatusCompleted,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "District", db, 0) },
			engine:  []string{"create " + db}, registry: []string{"register default/1 " + db, "register default/1 " + db}},
		{name: "completed, renamed since: a replayed create", status: adminapi.StatusCompleted,
			prepare:  func(t *testing.T, b *bundle, id int) { b.recorded(t, id, "Renamed", "EdFi_Ods_Renamed", 1) },
			registry: []string{"register default/1 EdFi_Ods_Renamed", "rename-failed default/1"}},
		{name: "completed by someone else", status: adminapi.StatusCompleted,
			want: provisioning.ErrConflict},
		{name: "being deleted: the create is long done", status: adminapi.StatusPendingDelete},
		{name: "deleted", status: adminapi.StatusDeleted},
		// A message is a pointer: one naming what the request does not is
		// not its job, and nothing is made, registered or reported.
		{name: "pending, the message names another name", status: adminapi.StatusPending,
			job: func(id int) jobs.Job { return jobs.NewCreate("default", id, "Evil") }, want: consumer.ErrForeign},
		{name: "pending, the message names a template the request does not", status: adminapi.StatusPending,
			job: func(id int) jobs.Job { j := jobs.NewCreate("default", id, "District"); j.Template = "Sample"; return j }, want: consumer.ErrForeign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t)
			id := b.instance(t, "District", tt.status)
			if tt.prepare != nil {
				tt.prepare(t, b, id)
			}
			j := jobs.NewCreate("default", id, "District")
			if tt.job != nil {
				j = tt.job(id)
			}
			err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: j, Attempt: 1})
			if !result(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			check(t, "engine", b.engine.Calls(), tt.engine)
			check(t, "registry", b.registry.Calls(), tt.registry)
			if n := b.calls(id)["completed"]; n != tt.completed {
				t.Errorf("completed called %d times, want %d", n, tt.completed)
			}
			if tt.want != nil {
				if res, ok, _ := b.engine.Reservation(context.Background(), db); ok && res.Owner.InstanceID == id && res.State == provisioning.StateReserved {
					t.Errorf("a failed create left the name reserved: %+v", res)
				}
			}
		})
	}
}

// A new instance over its tenant's instance limit is refused before
// anything is made, and one over the tenant's create rate waits; neither
// holds back a create that already reserved its name (a redelivery).
func TestCreateHandlerLimits(t *testing.T) {
	const db = "EdFi_Ods_District"
	t.Run("over the instance limit", func(t *testing.T) {
		b := setup(t)
		b.handlers.InstancesPerTenant = 1
		b.recorded(t, 99, "Other", "EdFi_Ods_Other", 0)
		id := b.instance(t, "District", adminapi.StatusPending)
		err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", id, "District"), Attempt: 1})
		if !errors.Is(err, consumer.ErrLimit) || !consumer.IsTerminal(err) || consumer.ReasonCode(err) != "limit" {
			t.Fatalf("err = %v, want a terminal limit", err)
		}
		if exists, _ := b.engine.DatabaseExists(context.Background(), db); exists {
			t.Fatal("a database was made over the limit")
		}
		if _, held, _ := b.engine.Reservation(context.Background(), db); held {
			t.Fatal("the refused create left its name reserved")
		}
	})
	t.Run("over the create rate", func(t *testing.T) {
		b := setup(t)
		b.handlers.Rate = limits.NewRate(1)
		first := b.instance(t, "First", adminapi.StatusPending)
		if err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", first, "First"), Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		id := b.instance(t, "District", adminapi.StatusPending)
		err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", id, "District"), Attempt: 1})
		if !errors.Is(err, consumer.ErrRateLimited) || consumer.IsTerminal(err) {
			t.Fatalf("err = %v, want a retry once the rate allows", err)
		}
		// A create whose name is reserved already (made by an earlier
		// delivery) finishes whatever the rate.
		b.made(t, db, id)
		if err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", id, "District"), Attempt: 2}); err != nil {
			t.Fatalf("a create under way was held back: %v", err)
		}
	})
}

// A rename between names that make one database ("Foo Bar" to "Foo_Bar")
// renames nothing; when the Admin API heard renamed but the ledger's commit
// failed, the redelivery finds the instance Completed and finishes the
// ledger, rather than refusing its own job.
func TestRenameToTheSameDatabaseFinishesAfterALostCommit(t *testing.T) {
	const db = "EdFi_Ods_Foo_Bar"
	b := setup(t)
	id := b.instance(t, "Foo Bar", adminapi.StatusCompleted)
	b.made(t, db, id)
	b.recorded(t, id, "Foo Bar", db, 0)
	if err := b.sim.SetName(id, "Foo_Bar"); err != nil {
		t.Fatal(err)
	}
	if err := b.handlers.Rename().Handle(context.Background(), consumer.Delivery{Job: jobs.NewRename("default", id, "Foo_Bar", db, 0), Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := b.registry.Lookup(context.Background(), "default", id); rec.Generation != 1 || rec.Name != "Foo_Bar" || rec.Database != db {
		t.Fatalf("ledger %+v, want Foo_Bar on %s at generation 1", rec, db)
	}
}

// A stale rename (or a forged one at an old generation) that names a name
// reserved for a rename under way gives nothing back: only a name whose
// database the system made and that is gone is released.
func TestStaleRenameReleasesNoNameUnderWay(t *testing.T) {
	const old, next = "EdFi_Ods_Old", "EdFi_Ods_Next"
	b := setup(t)
	id := b.instance(t, "Old", adminapi.StatusCompleted)
	b.made(t, old, id)
	b.recorded(t, id, "Old", old, 1) // one rename settled since the job
	b.reserve(t, next, id)           // the next rename has reserved its name
	stale := jobs.NewRename("default", id, "Next", next, 0)
	if err := b.handlers.Rename().Handle(context.Background(), consumer.Delivery{Job: stale, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if _, held, _ := b.engine.Reservation(context.Background(), next); !held {
		t.Fatal("a stale rename released the name a rename under way reserved")
	}
}

func TestRenameHandler(t *testing.T) {
	const old, new = "EdFi_Ods_Old", "EdFi_Ods_New"
	tests := []struct {
		name     string
		status   string
		gen      int // the job's generation; the ledger is at 0
		prepare  func(t *testing.T, b *bundle, id int)
		job      func(id int) jobs.Job // the message delivered; the bridge's by default
		want     error
		engine   []string
		registry []string
		renamed  int
	}{
		{name: "old there, new free", status: adminapi.StatusPendingRename,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			engine:  []string{"create " + old, "rename " + old + " " + new}, registry: []string{"rename default/1 " + new}, renamed: 1},
		{name: "already renamed by an earlier delivery", status: adminapi.StatusPendingRename,
			prepare: func(t *testing.T, b *bundle, id int) {
				b.made(t, old, id)
				b.reserve(t, new, id)
				if _, err := b.engine.RenameDatabase(context.Background(), old, new, provisioning.Owner{Tenant: "default", InstanceID: id}); err != nil {
					t.Fatal(err)
				}
			},
			engine: []string{"create " + old, "rename " + old + " " + new}, registry: []string{"rename default/1 " + new}, renamed: 1},
		{name: "old gone, someone else's database under the new name", status: adminapi.StatusPendingRename,
			prepare: func(t *testing.T, b *bundle, id int) { b.engine.MakeForeign(new) },
			want:    provisioning.ErrConflict},
		{name: "both there", status: adminapi.StatusPendingRename,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id); b.engine.MakeForeign(new) },
			want:    provisioning.ErrConflict, engine: []string{"create " + old}},
		{name: "neither there", status: adminapi.StatusPendingRename,
			want: provisioning.ErrConflict},
		{name: "the new name held by another request", status: adminapi.StatusPendingRename,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id); b.made(t, new, id+1) },
			want:    provisioning.ErrConflict, engine: []string{"create " + old, "create " + new}},
		{name: "a stale job: the ledger has moved on", status: adminapi.StatusPendingRename, gen: -1,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			engine:  []string{"create " + old}},
		{name: "no longer pending", status: adminapi.StatusDeleted,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			engine:  []string{"create " + old}},
		{name: "pending, the message names another new name", status: adminapi.StatusPendingRename,
			job:     func(id int) jobs.Job { return jobs.NewRename("default", id, "Evil", old, 0) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			want:    consumer.ErrForeign, engine: []string{"create " + old}},
		{name: "pending, the message names another database to rename", status: adminapi.StatusPendingRename,
			job:     func(id int) jobs.Job { return jobs.NewRename("default", id, "New", "EdFi_Ods_Other", 0) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			want:    consumer.ErrForeign, engine: []string{"create " + old}},
		{name: "pending, the message is a rename the ledger never had", status: adminapi.StatusPendingRename,
			job:     func(id int) jobs.Job { return jobs.NewRename("default", id, "New", old, 1) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			want:    consumer.ErrForeign, engine: []string{"create " + old}},
		{name: "completed: a rename nobody asked for", status: adminapi.StatusCompleted,
			job:     func(id int) jobs.Job { return jobs.NewRename("default", id, "New", old, 0) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, old, id) },
			want:    consumer.ErrForeign, engine: []string{"create " + old}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t)
			id := b.instance(t, "Old", adminapi.StatusCompleted)
			b.recorded(t, id, "Old", old, 0)
			if tt.prepare != nil {
				tt.prepare(t, b, id)
			}
			if err := b.sim.SetStatus(id, tt.status); err != nil {
				t.Fatal(err)
			}
			if err := b.sim.SetName(id, "New"); err != nil {
				t.Fatal(err)
			}
			j := jobs.NewRename("default", id, "New", old, 0)
			if tt.job != nil {
				j = tt.job(id)
			}
			if tt.gen < 0 {
				// The ledger is a generation past the job.
				if err := b.registry.RenameFailed(context.Background(), "default", id, 0, nil, func(context.Context, provisioning.Tx) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}
			err := b.handlers.Rename().Handle(context.Background(), consumer.Delivery{Job: j, Attempt: 1})
			if !result(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			check(t, "engine", b.engine.Calls(), tt.engine)
			registry := append([]string{"register default/1 " + old}, tt.registry...)
			if tt.gen < 0 {
				registry = []string{"register default/1 " + old, "rename-failed default/1"}
			}
			check(t, "registry", b.registry.Calls(), registry)
			if n := b.calls(id)["renamed"]; n != tt.renamed {
				t.Errorf("renamed called %d times, want %d", n, tt.renamed)
			}
		})
	}
}

func (b *bundle) reserve(t *testing.T, db string, id int) {
	t.Helper()
	if _, _, err := b.engine.Reserve(context.Background(), db, provisioning.Owner{Tenant: "default", InstanceID: id}); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteHandler(t *testing.T) {
	const db = "EdFi_Ods_Gone"
	tests := []struct {
		name        string
		status      string
		allowDelete bool
		prepare     func(t *testing.T, b *bundle, id int)
		job         func(id int) jobs.Job // the message delivered; the bridge's by default
		want        error
		engine      []string
		unregister  bool
		deleted     int
	}{
		{name: "pending, made and recorded", status: adminapi.StatusPendingDelete, allowDelete: true,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 0) },
			engine:  []string{"create " + db, "drop " + db}, unregister: true, deleted: 1},
		{name: "pending, database dropped by an earlier delivery", status: adminapi.StatusPendingDelete, allowDelete: true,
			prepare:    func(t *testing.T, b *bundle, id int) { b.recorded(t, id, "Gone", db, 0) },
			unregister: true, deleted: 1},
		{name: "deleted, but the rows are left: the commit failed", status: adminapi.StatusDeleted, allowDelete: true,
			prepare:    func(t *testing.T, b *bundle, id int) { b.recorded(t, id, "Gone", db, 0) },
			unregister: true},
		{name: "deleted and gone", status: adminapi.StatusDeleted, allowDelete: true},
		{name: "pending, never recorded", status: adminapi.StatusPendingDelete, allowDelete: true,
			want: provisioning.ErrNotRecorded},
		{name: "pending, the ledger names someone else's database", status: adminapi.StatusPendingDelete, allowDelete: true,
			prepare: func(t *testing.T, b *bundle, id int) { b.engine.MakeForeign(db); b.recorded(t, id, "Gone", db, 0) },
			want:    provisioning.ErrConflict},
		{name: "pending, a stale job", status: adminapi.StatusPendingDelete, allowDelete: true,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 1) },
			engine:  []string{"create " + db}},
		{name: "deletion switched off", status: adminapi.StatusPendingDelete,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 0) },
			want:    consumer.ErrDeletionDisabled, engine: []string{"create " + db}},
		{name: "not pending", status: adminapi.StatusCompleted, allowDelete: true,
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 0) },
			engine:  []string{"create " + db}},
		{name: "pending, published before the ledger had it (no database named)", status: adminapi.StatusPendingDelete, allowDelete: true,
			job:     func(id int) jobs.Job { return jobs.NewDelete("default", id, "Gone", "", 0) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 0) },
			engine:  []string{"create " + db, "drop " + db}, unregister: true, deleted: 1},
		{name: "pending, the message names another database", status: adminapi.StatusPendingDelete, allowDelete: true,
			job:     func(id int) jobs.Job { return jobs.NewDelete("default", id, "Gone", "EdFi_Ods_Other", 0) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 0) },
			want:    consumer.ErrForeign, engine: []string{"create " + db}},
		{name: "pending, the message is a delete the ledger never had", status: adminapi.StatusPendingDelete, allowDelete: true,
			job:     func(id int) jobs.Job { return jobs.NewDelete("default", id, "Gone", db, 4) },
			prepare: func(t *testing.T, b *bundle, id int) { b.made(t, db, id); b.recorded(t, id, "Gone", db, 0) },
			want:    consumer.ErrForeign, engine: []string{"create " + db}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t)
			b.handlers.AllowDelete = tt.allowDelete
			id := b.instance(t, "Gone", tt.status)
			if tt.prepare != nil {
				tt.prepare(t, b, id)
			}
			j := jobs.NewDelete("default", id, "Gone", db, 0)
			if tt.job != nil {
				j = tt.job(id)
			}
			err := b.handlers.Delete().Handle(context.Background(), consumer.Delivery{Job: j, Attempt: 1})
			if !result(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			check(t, "engine", b.engine.Calls(), tt.engine)
			if got := slices.Contains(b.registry.Calls(), fmt.Sprintf("unregister default/%d", id)); got != tt.unregister {
				t.Errorf("unregistered: %v, want %v (calls %v)", got, tt.unregister, b.registry.Calls())
			}
			if n := b.calls(id)["deleted"]; n != tt.deleted {
				t.Errorf("deleted called %d times, want %d", n, tt.deleted)
			}
		})
	}
}

func check(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s calls %q, want %q", what, got, want)
	}
}

var allStatuses = []string{
	adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusError, adminapi.StatusCompleted,
	adminapi.StatusPendingRename, adminapi.StatusRenameFailed, adminapi.StatusPendingDelete,
	adminapi.StatusDeleted, adminapi.StatusDeleteFailed,
}

// Every status a create can find, with its database absent, made by an
// earlier delivery, or someone else's. The rule: a pending request makes or
// adopts its own database and registers it; Completed is finished only for
// a database the system made; any later status means the create is long
// done; someone else's database is always a conflict.
func TestCreateHandlerEveryStatusAndDatabase(t *testing.T) {
	const db = "EdFi_Ods_Matrix"
	for _, status := range allStatuses {
		for _, existing := range []string{"absent", "made", "foreign"} {
			t.Run(status+"/"+existing, func(t *testing.T) {
				b := setup(t)
				id := b.instance(t, "Matrix", status)
				switch existing {
				case "made":
					b.made(t, db, id)
				case "foreign":
					b.engine.MakeForeign(db)
				}
				err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", id, "Matrix"), Attempt: 1})
				pending := status == adminapi.StatusPending || status == adminapi.StatusInProgress || status == adminapi.StatusError
				var want error
				registered := false
				switch {
				case !pending && status != adminapi.StatusCompleted:
				case existing == "foreign", status == adminapi.StatusCompleted && existing == "absent":
					want = provisioning.ErrConflict
				default:
					registered = true
				}
				if !result(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
				if got := len(b.registry.Calls()) == 1; got != registered {
					t.Errorf("registered %v, want %v", got, registered)
				}
				exists, _ := b.engine.DatabaseExists(context.Background(), db)
				if wantExists := registered || existing != "absent"; exists != wantExists {
					t.Errorf("database exists %v, want %v", exists, wantExists)
				}
				if registered {
					if r, _ := b.sim.Instance(id); r.Status != adminapi.StatusCompleted {
						t.Errorf("status %s after registering", r.Status)
					}
				}
			})
		}
	}
}

// Every status a rename can find, with the old and new databases in each
// state. Only Pending_Rename renames; Completed finishes the ledger of a
// rename already done on the server (a redelivery after the Admin API heard
// renamed) and refuses anything else; Rename_Failed settles the failure
// (the ledger's generation, and its database when one was renamed before
// the failure); every other status leaves all alone.
func TestRenameHandlerEveryStatusAndDatabases(t *testing.T) {
	const old, new = "EdFi_Ods_Before", "EdFi_Ods_After"
	for _, status := range allStatuses {
		for _, state := range []string{"old only", "new only", "both", "neither"} {
			t.Run(status+"/"+state, func(t *testing.T) {
				b := setup(t)
				id := b.instance(t, "Before", adminapi.StatusCompleted)
				b.recorded(t, id, "Before", old, 0)
				owner := provisioning.Owner{Tenant: "default", InstanceID: id}
				switch state {
				case "old only", "both":
					b.made(t, old, id)
				case "new only":
					b.made(t, old, id)
					b.reserve(t, new, id)
					if _, err := b.engine.RenameDatabase(context.Background(), old, new, owner); err != nil {
						t.Fatal(err)
					}
				}
				if state == "both" {
					b.engine.MakeForeign(new)
				}
				if err := b.sim.SetStatus(id, status); err != nil {
					t.Fatal(err)
				}
				if err := b.sim.SetName(id, "After"); err != nil {
					t.Fatal(err)
				}
				before := b.engine.Databases()
				err := b.handlers.Rename().Handle(context.Background(), consumer.Delivery{Job: jobs.NewRename("default", id, "After", old, 0), Attempt: 1})
				// Completed only finishes a rename whose database was
				// renamed for it; anything else there is not this job's.
				acts := status == adminapi.StatusPendingRename || status == adminapi.StatusCompleted && state == "new only"
				var want error
				switch {
				case status == adminapi.StatusCompleted && !acts:
					want = consumer.ErrForeign
				case acts && (state == "both" || state == "neither"):
					want = provisioning.ErrConflict
				}
				if !result(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
				rec, _ := b.registry.Lookup(context.Background(), "default", id)
				// A failed rename found by a delivery is settled as its
				// failure is: the ledger follows a database renamed before
				// the failure.
				wantRenamed := acts && want == nil || status == adminapi.StatusRenameFailed && state == "new only"
				if renamed := rec.Database == new; renamed != wantRenamed {
					t.Errorf("ledger on %q, want renamed=%v", rec.Database, wantRenamed)
				}
				if status == adminapi.StatusRenameFailed && rec.Generation != 1 {
					t.Errorf("ledger at generation %d after a failed rename, want 1", rec.Generation)
				}
				if !acts || want != nil {
					if after := b.engine.Databases(); !slices.Equal(after, before) {
						t.Errorf("databases changed from %v to %v", before, after)
					}
				}
			})
		}
	}
}

// Every status a delete can find, with its database there or dropped
// already. Pending_Delete drops, unregisters and reports deleted; Deleted
// (a commit that failed after the report) removes what is left without
// reporting again; everything else leaves all alone.
func TestDeleteHandlerEveryStatusAndDatabase(t *testing.T) {
	const db = "EdFi_Ods_Doomed"
	for _, status := range allStatuses {
		for _, existing := range []string{"there", "dropped"} {
			t.Run(status+"/"+existing, func(t *testing.T) {
				b := setup(t)
				id := b.instance(t, "Doomed", status)
				b.recorded(t, id, "Doomed", db, 0)
				if existing == "there" {
					b.made(t, db, id)
				}
				err := b.handlers.Delete().Handle(context.Background(), consumer.Delivery{Job: jobs.NewDelete("default", id, "Doomed", db, 0), Attempt: 1})
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				acts := status == adminapi.StatusPendingDelete || status == adminapi.StatusDeleted
				exists, _ := b.engine.DatabaseExists(context.Background(), db)
				if exists != (existing == "there" && !acts) {
					t.Errorf("database exists %v", exists)
				}
				_, lerr := b.registry.Lookup(context.Background(), "default", id)
				if gone := errors.Is(lerr, provisioning.ErrNotRecorded); gone != acts {
					t.Errorf("ledger entry gone %v, want %v", gone, acts)
				}
				if n, want := b.calls(id)["deleted"], map[bool]int{true: 1}[status == adminapi.StatusPendingDelete]; n != want {
					t.Errorf("deleted called %d times, want %d", n, want)
				}
			})
		}
	}
}

// A create run in its middleware has its time split by what it waited on:
// the Admin API, the tenant's server and EdFi_Admin, once each per
// delivery.
func TestCreateTimeIsSplitByPhase(t *testing.T) {
	b := setup(t)
	m := consumer.NewMetrics(prometheus.NewRegistry())
	id := b.instance(t, "District", adminapi.StatusPending)
	h := consumer.InMiddleware(b.handlers.Create(), consumer.Options{Metrics: m})
	if err := h.Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", id, "District"), Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	for _, p := range consumer.Phases {
		var s dto.Metric
		if err := m.Phases.WithLabelValues("create", string(p)).(prometheus.Metric).Write(&s); err != nil {
			t.Fatal(err)
		}
		if n := s.GetHistogram().GetSampleCount(); n != 1 {
			t.Errorf("%s observed %d times, want once", p, n)
		}
	}
}

// trashingEngine keeps a deleted database, as an engine with trash does:
// TrashDatabase takes it out of the way (here by dropping it) and says so.
type trashingEngine struct {
	*provisioningtest.MemoryEngine
	trashed []string
}

func (e *trashingEngine) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, _ time.Duration, _ int) (bool, error) {
	e.trashed = append(e.trashed, name)
	return e.DropDatabase(ctx, name, owner)
}

func (e *trashingEngine) Trash(context.Context) ([]provisioning.Trashed, error) { return nil, nil }
func (e *trashingEngine) PurgeDue(context.Context) ([]provisioning.Purged, error) {
	return nil, nil
}
func (e *trashingEngine) Purge(context.Context, string) (provisioning.Purged, error) {
	return provisioning.Purged{}, nil
}

// A delete with a retention moves its database to trash from inside the
// middleware too, where the engine a handler sees is wrapped for timing
// and seams (a replica with metrics): the wrapping passed only the
// engine's own methods, and every delete was refused as if the engine
// could not keep a database.
func TestDeleteWithRetentionTrashesInTheMiddleware(t *testing.T) {
	const db = "EdFi_Ods_Kept"
	b := setup(t)
	engine := &trashingEngine{MemoryEngine: b.engine}
	place, _ := b.handlers.Placements.Placement(context.Background(), "default")
	place.Engine = engine
	b.handlers.DeleteRetention = 7 * 24 * time.Hour
	id := b.instance(t, "Kept", adminapi.StatusPendingDelete)
	b.made(t, db, id)
	b.recorded(t, id, "Kept", db, 0)
	seams := consumer.TestSeams{AfterCheck: func(context.Context, consumer.Delivery) error { return nil }}
	h := consumer.InMiddleware(b.handlers.Delete(), consumer.Options{Metrics: consumer.NewMetrics(prometheus.NewRegistry()), TestSeams: seams})
	if err := h.Handle(context.Background(), consumer.Delivery{Job: jobs.NewDelete("default", id, "Kept", db, 0), Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(engine.trashed) != 1 || engine.trashed[0] != db {
		t.Fatalf("trashed %v, want %s once", engine.trashed, db)
	}
}

// deletedMeanwhile is an engine on which a delete of the instance runs to
// its end (Deleted, the ledger entry gone) while a create that lost its
// lock is between making the database and registering it.
type deletedMeanwhile struct {
	*provisioningtest.MemoryEngine
	sim *simulatortest.Server
	id  int
}

func (e deletedMeanwhile) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	created, err := e.MemoryEngine.CreateDatabase(ctx, name, template, owner)
	if err == nil {
		err = e.sim.SetStatus(e.id, adminapi.StatusDeleted)
	}
	return created, err
}

// A create delivery that lost its lock and reaches its registration after
// the instance's delete ended registers nothing and completes nothing:
// Admin API 2.2.2 takes completed on a Deleted instance, which then showed
// Completed and registered on a database the delete had moved to trash
// (or dropped), found by the soak.
func TestCreateAfterItsDeleteRegistersNothing(t *testing.T) {
	b := setup(t)
	id := b.instance(t, "District", adminapi.StatusPending)
	placement, _ := b.handlers.Placements.Placement(context.Background(), "default")
	p := *placement
	p.Engine = deletedMeanwhile{MemoryEngine: b.engine, sim: b.sim, id: id}
	b.handlers.Placements = oneTenant{&p}
	if err := b.handlers.Create().Handle(context.Background(), consumer.Delivery{Job: jobs.NewCreate("default", id, "District"), Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if rec, err := b.registry.Lookup(context.Background(), "default", id); !errors.Is(err, provisioning.ErrNotRecorded) {
		t.Fatalf("the ledger has %+v (%v) for a deleted instance", rec, err)
	}
	if inst, _ := b.sim.Instance(id); inst.Status != adminapi.StatusDeleted || inst.Calls["completed"] != 0 {
		t.Fatalf("instance %s after %v calls, want Deleted with no completed", inst.Status, inst.Calls)
	}
	// The database this delivery reserved and made for it is nobody's.
	if names := b.engine.Databases(); slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "District") }) {
		t.Fatalf("databases left: %v", names)
	}
	if _, held, _ := b.engine.Reservation(context.Background(), "EdFi_Ods_District"); held {
		t.Fatal("its reservation is left")
	}
}

// adoptedMeanwhile is an engine on which, while a create that lost its
// lock is between making the database and registering it, the job's next
// delivery adopts that database and completes the instance, and then a
// delete (or rename) of the instance is asked.
type adoptedMeanwhile struct {
	*provisioningtest.MemoryEngine
	next   func() error
	sim    *simulatortest.Server
	id     int
	status string
}

func (e adoptedMeanwhile) CreateDatabase(ctx context.Context, name, template string, owner provisioning.Owner) (bool, error) {
	created, err := e.MemoryEngine.CreateDatabase(ctx, name, template, owner)
	if err == nil {
		err = e.next()
	}
	if err == nil {
		err = e.sim.SetStatus(e.id, e.status)
	}
	return created, err
}

// A create delivery that made the database itself, and reaches its
// registration after the job's next delivery adopted that database and
// registered it and the instance moved on, leaves the database alone: it
// is the instance's own, which its delete moves to trash and its rename
// renames.
func TestCreateThatMovedOnKeepsTheDatabaseAnotherDeliveryRegistered(t *testing.T) {
	const db = "EdFi_Ods_District"
	for _, status := range []string{adminapi.StatusPendingDelete, adminapi.StatusPendingRename} {
		t.Run(status, func(t *testing.T) {
			b := setup(t)
			ctx := context.Background()
			id := b.instance(t, "District", adminapi.StatusPending)
			job := jobs.NewCreate("default", id, "District")
			placement, _ := b.handlers.Placements.Placement(ctx, "default")
			p := *placement
			p.Engine = adoptedMeanwhile{MemoryEngine: b.engine, sim: b.sim, id: id, status: status, next: func() error {
				return b.handlers.Create().Handle(ctx, consumer.Delivery{Job: job, Attempt: 2})
			}}
			lost := *b.handlers
			lost.Placements = oneTenant{&p}
			if err := lost.Create().Handle(ctx, consumer.Delivery{Job: job, Attempt: 1}); err != nil {
				t.Fatal(err)
			}
			if rec, err := b.registry.Lookup(ctx, "default", id); err != nil || rec.Database != db {
				t.Fatalf("the ledger has %+v, %v", rec, err)
			}
			if !slices.Contains(b.engine.Databases(), db) {
				t.Fatalf("the instance's registered database was dropped: %v", b.engine.Databases())
			}
			if res, held, _ := b.engine.Reservation(ctx, db); !held || res.State != provisioning.StateMade {
				t.Fatalf("its reservation: %+v, held %v", res, held)
			}
		})
	}
}

// restoredMeanwhile is an engine on which, once a delete delivery that
// lost its lock has moved the database to trash, the job's next delivery
// runs to its end (Deleted, the ledger entry gone) and an operator
// restores the instance: its database back under its name and the ledger
// entry again, one generation past the delete's, Completed.
type restoredMeanwhile struct {
	*trashingEngine
	next    func() error
	restore func() error
}

func (e restoredMeanwhile) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	moved, err := e.trashingEngine.TrashDatabase(ctx, name, owner, retention, generation)
	if err == nil {
		err = e.next()
	}
	if err == nil {
		err = e.restore()
	}
	return moved, err
}

// A delete delivery that lost its lock after it moved the database to
// trash, and reaches its unregistering after the job's next delivery
// finished the delete and the instance was restored, leaves the restored
// instance registered and Completed: the ledger's generation is past its
// job's.
func TestStaleDeleteLeavesARestoredInstanceRegistered(t *testing.T) {
	const db = "EdFi_Ods_Back"
	b := setup(t)
	ctx := context.Background()
	b.handlers.DeleteRetention = time.Hour
	id := b.instance(t, "Back", adminapi.StatusPendingDelete)
	b.made(t, db, id)
	b.recorded(t, id, "Back", db, 0)
	job := jobs.NewDelete("default", id, "Back", db, 0)
	placement, _ := b.handlers.Placements.Placement(ctx, "default")
	next := *placement
	next.Engine = &trashingEngine{MemoryEngine: b.engine}
	nextHandlers := *b.handlers
	nextHandlers.Placements = oneTenant{&next}
	lost := next
	lost.Engine = restoredMeanwhile{trashingEngine: &trashingEngine{MemoryEngine: b.engine},
		next: func() error { return nextHandlers.Delete().Handle(ctx, consumer.Delivery{Job: job, Attempt: 2}) },
		restore: func() error {
			b.made(t, db, id)
			reg := provisioning.Registration{Tenant: "default", InstanceID: id, Database: db, Name: "Back", InstanceType: "enterprise", ConnectionString: "host=db;database=" + db, Generation: 1}
			if _, err := b.registry.Register(ctx, reg, func(context.Context, provisioning.Tx, provisioning.RegisterResult) error { return nil }); err != nil {
				return err
			}
			return b.sim.SetStatus(id, adminapi.StatusCompleted)
		}}
	lostHandlers := *b.handlers
	lostHandlers.Placements = oneTenant{&lost}
	if err := lostHandlers.Delete().Handle(ctx, consumer.Delivery{Job: job, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if rec, err := b.registry.Lookup(ctx, "default", id); err != nil || rec.Database != db || rec.Generation != 1 {
		t.Fatalf("the restored instance's ledger entry: %+v, %v", rec, err)
	}
	if inst, _ := b.sim.Instance(id); inst.Status != adminapi.StatusCompleted {
		t.Fatalf("the restored instance is %s", inst.Status)
	}
	if !slices.Contains(b.engine.Databases(), db) {
		t.Fatalf("the restored database is gone: %v", b.engine.Databases())
	}
}

// A delete the Admin API shows failed (Admin API 2.2.2's deleted marks it
// Delete_Failed itself when it fails, and a report's transaction can die
// after the Admin API heard it) moves the ledger past its generation,
// whether its failure or a delivery again finds it so: the delete asked
// again is then a new job. Before, the generation stayed, the delete asked
// again had the subject of this one, which the stream keeps, and stayed
// Pending_Delete for good (found by the soak).
func TestFailedDeleteMovesTheGeneration(t *testing.T) {
	for _, via := range []string{"delivery", "failure"} {
		t.Run(via, func(t *testing.T) {
			b := setup(t)
			const db = "EdFi_Ods_Failing"
			id := b.instance(t, "Failing", adminapi.StatusDeleteFailed)
			b.made(t, db, id)
			b.recorded(t, id, "Failing", db, 1)
			d := consumer.Delivery{Job: jobs.NewDelete("default", id, "Failing", db, 1), Attempt: 2}
			var err error
			if via == "delivery" {
				err = b.handlers.Delete().Handle(context.Background(), d)
			} else {
				err = b.handlers.Delete().(consumer.Failer).Fail(context.Background(), d, errors.New("deleted: 500"))
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := b.registry.Lookup(context.Background(), "default", id); err != nil || rec.Generation != 2 {
				t.Fatalf("ledger %+v, %v; want generation 2", rec, err)
			}
			if names := b.engine.Databases(); !slices.Contains(names, db) {
				t.Fatalf("the database went: %v", names)
			}
		})
	}
}

// So does a rename the Admin API shows failed, found by a delivery with
// the ledger still at its generation: the rename asked again is a new job.
func TestFailedRenameFoundByADeliveryMovesTheGeneration(t *testing.T) {
	b := setup(t)
	const db = "EdFi_Ods_Failing"
	id := b.instance(t, "Failing", adminapi.StatusRenameFailed)
	b.made(t, db, id)
	b.recorded(t, id, "Failing", db, 0)
	d := consumer.Delivery{Job: jobs.NewRename("default", id, "Failing", db, 0), Attempt: 2}
	if err := b.handlers.Rename().Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if rec, err := b.registry.Lookup(context.Background(), "default", id); err != nil || rec.Generation != 1 || rec.Database != db {
		t.Fatalf("ledger %+v, %v; want generation 1 on %s", rec, err, db)
	}
}
