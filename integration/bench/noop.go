package bench

import (
	"context"
	"errors"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// This file holds the messaging benchmark's stand-ins. They are for the
// benchmark only: they remember nothing, check nothing and must never
// serve a real job.

// errBenchOnly is what a stand-in answers for a step no create job takes.
var errBenchOnly = errors.New("benchmark-only stand-in: not used by create jobs")

// benchOnlyEngine is a provisioning.Engine whose database step is free: every
// name is reserved fresh and every create succeeds, at once. It replaces the
// tenant's server so that the benchmark measures the messaging around a job,
// not the template copy.
type benchOnlyEngine struct{}

var _ provisioning.Engine = benchOnlyEngine{}

func (benchOnlyEngine) DatabaseExists(context.Context, string) (bool, error)   { return false, nil }
func (benchOnlyEngine) Identity(context.Context, string) (string, bool, error) { return "", false, nil }

func (benchOnlyEngine) Reserve(_ context.Context, name string, owner provisioning.Owner) (provisioning.Reservation, bool, error) {
	return provisioning.Reservation{Database: name, Owner: owner, State: provisioning.StateReserved}, true, nil
}

func (benchOnlyEngine) Reservation(context.Context, string) (provisioning.Reservation, bool, error) {
	return provisioning.Reservation{}, false, nil
}

func (benchOnlyEngine) Release(context.Context, string, provisioning.Owner) error { return nil }

func (benchOnlyEngine) CreateDatabase(context.Context, string, string, provisioning.Owner) (bool, error) {
	return true, nil
}

func (benchOnlyEngine) RenameDatabase(context.Context, string, string, provisioning.Owner) (bool, error) {
	return false, errBenchOnly
}

func (benchOnlyEngine) DropDatabase(context.Context, string, provisioning.Owner) (bool, error) {
	return false, errBenchOnly
}

func (benchOnlyEngine) Import(context.Context, string, provisioning.Owner) error { return errBenchOnly }

// benchOnlyRegistry is a provisioning.Registry with no ledger: every
// instance is unrecorded, and Register only calls its completion (the
// Admin API's completed), as the real one does inside its transaction.
type benchOnlyRegistry struct{}

var _ provisioning.Registry = benchOnlyRegistry{}

func (benchOnlyRegistry) Lookup(_ context.Context, tenant string, id int) (provisioning.Record, error) {
	return provisioning.Record{Tenant: tenant, InstanceID: id}, provisioning.ErrNotRecorded
}

func (benchOnlyRegistry) Records(context.Context) ([]provisioning.Record, error) { return nil, nil }

func (benchOnlyRegistry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.Tx, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	res := provisioning.RegisterResult{OdsInstanceID: reg.InstanceID}
	return res, complete(ctx, nil, res)
}

func (benchOnlyRegistry) Rename(context.Context, provisioning.Renaming, func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	return errBenchOnly
}

func (benchOnlyRegistry) RenameFailed(context.Context, string, int, int, *provisioning.Renaming, func(context.Context, provisioning.Tx) error) error {
	return errBenchOnly
}

func (benchOnlyRegistry) DeleteFailed(context.Context, string, int, int, func(context.Context, provisioning.Tx) error) error {
	return errBenchOnly
}

func (benchOnlyRegistry) Unregister(context.Context, string, int, func(context.Context, provisioning.Tx, provisioning.Record) error) error {
	return errBenchOnly
}

// benchOnlyTenants maps every tenant to the no-op engine and registry.
type benchOnlyTenants struct{ t *consumer.Placement }

func newBenchOnlyTenants() benchOnlyTenants {
	return benchOnlyTenants{&consumer.Placement{
		Engine:   benchOnlyEngine{},
		Registry: benchOnlyRegistry{},
		// An Npgsql string the simulator's completed accepts; nothing
		// connects to it.
		ODS:      func(db string) string { return "host=127.0.0.1;port=5432;username=bench;database=" + db },
		Template: "Ods_Minimal_Template",
	}}
}

func (b benchOnlyTenants) Placement(context.Context, string) (*consumer.Placement, error) {
	return b.t, nil
}

// benchOnlyAdminAPI answers the worker calls without a network: every
// instance is Pending and every call succeeds. With it the framework's
// figure has no HTTP in it, which splits the cost of a job between the
// messaging and the Admin API.
// names are the requests' names by id, as the Admin API would give them:
// the consumer reads a job's name from its request, not its message.
type benchOnlyAdminAPI struct{ names map[int]string }

var _ consumer.AdminAPI = benchOnlyAdminAPI{}

func (a benchOnlyAdminAPI) Instance(_ context.Context, tenant string, id int) (adminapi.WorkerInstance, error) {
	return adminapi.WorkerInstance{ID: id, TenantID: 1, TenantName: tenant, InstanceName: a.names[id], Status: adminapi.StatusPending}, nil
}

func (a benchOnlyAdminAPI) OdsInstance(_ context.Context, _ string, id int) (adminapi.OdsInstance, error) {
	return adminapi.OdsInstance{ID: id, TenantID: 1, Name: a.names[id], Status: adminapi.StatusPending}, nil
}

func (benchOnlyAdminAPI) Completed(context.Context, string, int, string) error { return nil }
func (benchOnlyAdminAPI) Renamed(context.Context, string, int, string) error   { return errBenchOnly }
func (benchOnlyAdminAPI) RenameFailed(context.Context, string, int) error      { return errBenchOnly }
func (benchOnlyAdminAPI) Deleted(context.Context, string, int) error           { return errBenchOnly }
func (benchOnlyAdminAPI) DeleteFailed(context.Context, string, int) error      { return errBenchOnly }
