package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/reconcile"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// ReconcileOptions are instancemgr reconcile's flags.
type ReconcileOptions struct {
	// Tenant limits the run to one tenant; "" for every tenant the Admin
	// API lists and every configured tenant entry.
	Tenant       string
	PendingAfter time.Duration
	// Fix releases what reconcile.Fix may release; without it nothing is
	// written anywhere.
	Fix bool
	Now func() time.Time
}

// ReconcileReport is what a run found.
type ReconcileReport struct {
	Tenants     []string
	Differences []reconcile.Difference
}

// entryInventory is what was read of one tenant entry's server and
// EdFi_Admin.
type entryInventory struct {
	engine       string
	inv          provisioning.Inventory
	databases    []string
	identities   map[string]string
	reservations []provisioning.Listed
	records      []provisioning.Record
	rows         map[int]provisioning.Row
	guard        *provisioning.Guard
}

// Requests are the instance requests as reconcile reads them: the Admin
// API's /adminconsole/ endpoints (adminapi.Client), or the manage rows
// (managerows.Source) under the manage flavor.
type Requests interface {
	Tenants(ctx context.Context) ([]adminapi.Tenant, error)
	Instances(ctx context.Context, tenant, status string) ([]adminapi.WorkerInstance, error)
	Instance(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error)
}

// Reconcile compares, per tenant, the Admin API, the ledger, the dbo rows
// and the databases with their reservations, and returns every difference.
// It connects to each server and EdFi_Admin without creating anything,
// and, without o.Fix, writes nothing and changes no Admin API status.
// JetStream that cannot be read is a difference (reconcile.Unchecked),
// not a failure; a tenant whose databases cannot be read is a failure.
func Reconcile(ctx context.Context, cfg *config.Config, o ReconcileOptions, log *slog.Logger) (ReconcileReport, error) {
	if cfg.Manage() {
		ledgers := NewLedgers(cfg, log)
		defer ledgers.Close()
		return ReconcileRequests(ctx, cfg, manageSource(cfg, ledgers.ManageDB, log).Every(), o, log)
	}
	api, err := AdminClient(cfg, log)
	if err != nil {
		return ReconcileReport{}, err
	}
	return ReconcileRequests(ctx, cfg, api, o, log)
}

// ReconcileRequests is Reconcile with the requests read from api.
func ReconcileRequests(ctx context.Context, cfg *config.Config, api Requests, o ReconcileOptions, log *slog.Logger) (ReconcileReport, error) {
	var rep ReconcileReport
	var err error
	if rep.Tenants, err = reconcileTenants(ctx, cfg, api, o.Tenant); err != nil {
		return rep, err
	}

	var stream reconcile.Jobs = unreadableJobs{}
	var dead []jobs.StoredDead
	nc, js, jsErr := DialNATS(cfg.NATS, "instancemgr reconcile")
	if jsErr == nil {
		defer nc.Close()
		var sj *reconcile.StreamJobs
		if sj, jsErr = reconcile.NewStreamJobs(ctx, js, cfg.StreamConfig()); jsErr == nil {
			stream = sj
			dead, jsErr = jobs.ListDead(ctx, js)
		}
	}
	if jsErr != nil {
		log.Warn("JetStream could not be read; dead letters and jobs are not checked", "err", jsErr)
	}

	entries := map[string]*entryInventory{}
	defer func() {
		for _, e := range entries {
			if c, ok := e.inv.(interface{ Close() }); ok {
				c.Close()
			}
		}
	}()
	opts := reconcile.Options{PendingAfter: o.PendingAfter, Now: o.Now}
	releasers := map[string]provisioning.Inventory{}
	for _, tenant := range rep.Tenants {
		instances, err := api.Instances(ctx, tenant, "")
		if err != nil {
			return rep, fmt.Errorf("tenant %q: %w", tenant, err)
		}
		servers, err := cfg.Servers(tenant)
		if errors.Is(err, provisioning.ErrUnknownTenant) {
			if len(instances) > 0 {
				rep.Differences = append(rep.Differences, reconcile.Difference{Tenant: tenant, Kind: reconcile.Unchecked,
					Detail:  fmt.Sprintf("the Admin API has %d requests for this tenant, but the configuration maps it to no database server (no tenants.%s and no tenants.default): its jobs end as dead letters", len(instances), tenant),
					Command: "add a tenants." + tenant + " entry (instancemgr config check), restart the consumers, then replay the dead letters"})
			}
			continue
		}
		if err != nil {
			return rep, err
		}
		e, ok := entries[servers.Entry]
		if !ok {
			if e, err = readEntry(ctx, cfg, servers, log); err != nil {
				return rep, fmt.Errorf("tenant %q: %w", tenant, err)
			}
			entries[servers.Entry] = e
		}
		releasers[tenant] = e.inv
		t := e.tenant(cfg, tenant, instances)
		rep.Differences = append(rep.Differences, reconcile.Check(ctx, t, stream, dead, jsErr, opts)...)
	}
	if !o.Fix {
		return rep, nil
	}
	err = reconcile.Fix(ctx, rep.Differences,
		func(ctx context.Context, tenant string, id int) (bool, error) {
			inst, err := api.Instance(ctx, tenant, id)
			if errors.Is(err, adminapi.ErrNotFound) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			switch inst.Status {
			case adminapi.StatusPending, adminapi.StatusInProgress, adminapi.StatusPendingRename, adminapi.StatusPendingDelete:
				return true, nil
			}
			return false, nil
		},
		func(ctx context.Context, d reconcile.Difference) (bool, error) {
			released, err := releasers[d.Tenant].ReleaseUnused(ctx, d.Database, d.Owner())
			if released {
				log.Info("released an unused reservation", "tenant", d.Tenant, "instance_id", d.InstanceID, "database", d.Database)
			}
			return released, err
		})
	return rep, err
}

// reconcileTenants is the tenants to check: only, or every tenant the
// Admin API lists and every configured entry but the default one.
func reconcileTenants(ctx context.Context, cfg *config.Config, api Requests, only string) ([]string, error) {
	if only != "" {
		return []string{only}, nil
	}
	listed, err := api.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range listed {
		names = append(names, t.Document.Name)
	}
	for name := range cfg.Tenants {
		if name != config.DefaultTenant {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// readEntry opens a tenant entry's server and EdFi_Admin without creating
// anything and reads what reconcile compares.
func readEntry(ctx context.Context, cfg *config.Config, servers config.Servers, log *slog.Logger) (*entryInventory, error) {
	e := &entryInventory{engine: servers.Engine, guard: cfg.Guard()}
	var reg provisioning.RegistryInventory
	if sc := servers.SQLServer; sc != nil {
		eng, err := sqlserver.OpenEngine(ctx, sc.Master.ADONet(), log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.Master.Redacted(), err)
		}
		e.inv = eng
		r, err := sqlserver.OpenRegistry(ctx, sc.Admin.ADONet())
		if err != nil {
			eng.Close()
			return nil, fmt.Errorf("%s: %w", sc.Admin.Redacted(), err)
		}
		defer r.Close()
		reg = r
		e.guard.Naming.MaxBytes = sqlserver.MaxNameChars
	} else {
		eng, err := postgres.OpenEngine(ctx, servers.Master.PgxConnString(), log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", servers.Master.Redacted(), err)
		}
		e.inv = eng
		r, err := postgres.OpenRegistry(ctx, servers.Admin.PgxConnString())
		if err != nil {
			eng.Close()
			return nil, fmt.Errorf("%s: %w", servers.Admin.Redacted(), err)
		}
		defer r.Close()
		reg = r
	}
	var err error
	if e.identities, err = e.inv.Identities(ctx); err != nil {
		return nil, err
	}
	e.databases = slices.Sorted(maps.Keys(e.identities))
	if e.reservations, err = e.inv.Reservations(ctx); err != nil {
		return nil, err
	}
	if e.records, err = reg.Records(ctx); err != nil {
		return nil, err
	}
	rows, err := reg.Rows(ctx)
	if err != nil {
		return nil, err
	}
	e.rows = map[int]provisioning.Row{}
	for _, r := range rows {
		e.rows[r.OdsInstanceID] = r
	}
	return e, nil
}

// tenant is one tenant's share of what was read of its entry.
func (e *entryInventory) tenant(cfg *config.Config, name string, instances []adminapi.WorkerInstance) reconcile.Snapshot {
	t := reconcile.Snapshot{Name: name, Engine: e.engine, Instances: instances, Rows: e.rows, Databases: e.databases, Identities: e.identities,
		AdminAPIRegisters: cfg.Provisioning.Registration == config.RegistrationAdminAPI, AllowDelete: cfg.Provisioning.AllowDelete, Line: cfg.Line()}
	inLedger := map[string]bool{}
	for _, r := range e.records {
		inLedger[strings.ToLower(r.Database)] = true
		if r.Tenant == name {
			t.Ledger = append(t.Ledger, r)
		}
	}
	reserved := map[string]bool{}
	for _, r := range e.reservations {
		reserved[strings.ToLower(r.Database)] = true
		// A reservation of a name the pattern could not make is another
		// deployment's on a shared server, unless the ledger names it.
		if r.Owner.Tenant == name && (e.guard.Naming.Matches(r.Database) || inLedger[strings.ToLower(r.Database)]) {
			t.Reservations = append(t.Reservations, r)
		}
	}
	own := e.guard.Naming
	if own.HasTenant() {
		own.Pattern = strings.ReplaceAll(cfg.Naming().Pattern, "{tenant}", strings.ReplaceAll(name, " ", "_"))
	}
	for _, db := range e.databases {
		if e.guard.CheckDestructive(db) != nil || !own.Matches(db) || reserved[strings.ToLower(db)] || inLedger[strings.ToLower(db)] {
			continue
		}
		t.Foreign = append(t.Foreign, db)
	}
	return t
}

// unreadableJobs stands in when JetStream could not be read; Check then
// reports that instead of guessing.
type unreadableJobs struct{}

func (unreadableJobs) Last(context.Context, string) (reconcile.JobState, bool, error) {
	return reconcile.JobState{}, false, errors.New("JetStream was not read")
}
