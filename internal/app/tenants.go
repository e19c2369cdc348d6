package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/odscrypt"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// TenantPool opens each tenant's database connections on first use and keeps
// them. Tenants that share a configuration entry share its connections.
type TenantPool struct {
	// OnCopied hears how long each job's copy of a template took on a
	// PostgreSQL server, and with which strategy.
	OnCopied func(server string, strategy postgres.CopyStrategy, took time.Duration)
	cfg      *config.Config
	log      *slog.Logger
	mu       sync.Mutex
	byEntry  map[string]*consumer.Tenant
	closers  []func()
}

// NewTenantPool returns a resolver over cfg.Tenants.
func NewTenantPool(cfg *config.Config, log *slog.Logger) *TenantPool {
	return &TenantPool{cfg: cfg, log: log, byEntry: map[string]*consumer.Tenant{}}
}

// Tenant implements consumer.Tenants.
func (t *TenantPool) Tenant(ctx context.Context, tenant string) (*consumer.Tenant, error) {
	tg, err := t.cfg.TenantConns(tenant)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ct, ok := t.byEntry[tg.Entry]; ok {
		return ct, nil
	}
	ct, err := t.open(ctx, tg)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	key, err := t.cfg.Key()
	if err != nil {
		return nil, err
	}
	switch {
	case key != nil && t.cfg.Manage():
		// The newest Admin API's own format: IV|ciphertext|HMAC.
		ct.Seal = func(plain string) (string, error) { return key.EncryptAs(odscrypt.AdminAPI, plain) }
	case key != nil:
		ct.Seal = key.Encrypt
	}
	ct.Templates = t.cfg.Provisioning.Templates
	if err := t.importLedger(ctx, tg.Entry, ct.Engine, ct.Registry); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	t.byEntry[tg.Entry] = ct
	return ct, nil
}

// closer is what each engine's engine and registry have.
type closer interface{ Close() }

// open connects to a tenant's server and EdFi_Admin with its engine.
func (t *TenantPool) open(ctx context.Context, tg config.TenantConns) (*consumer.Tenant, error) {
	ct := &consumer.Tenant{Template: t.cfg.Provisioning.Template}
	adminAPI := t.cfg.Provisioning.Registration == config.RegistrationAdminAPI
	var engine, registry closer
	if sc := tg.SQLServer; sc != nil {
		e, err := sqlserver.NewEngine(ctx, sc.Master.ADONet(), t.log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.Master.Redacted(), err)
		}
		guard := t.cfg.Guard()
		guard.Naming.MaxBytes = sqlserver.MaxNameChars // names are ASCII: one byte a character
		e.Guard, e.Backup, e.Terminate = guard, sc.Backup, t.cfg.Provisioning.Sessions != "wait"
		ct.MaxNameBytes = sqlserver.MaxNameChars
		e.SessionWait = t.cfg.Provisioning.SessionWait.D()
		if sc.Create == "copy" {
			e.Mode = sqlserver.CreateCopy
		}
		engine, ct.Engine = e, e
		r, err := sqlserver.NewRegistry(ctx, sc.Admin.ADONet(), t.log)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("%s: %w", sc.Admin.Redacted(), err)
		}
		r.AdminAPIRegisters, r.Line = adminAPI, t.cfg.Line()
		registry, ct.Registry = r, r
		ct.ODS = func(db string) string { return sc.ODS.ForDatabase(db).ADONet() }
	} else {
		e, err := postgres.NewEngine(ctx, tg.Master.PgxConnString(), t.log, postgres.WithJobs(t.cfg.Consumer.Concurrency))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tg.Master.Redacted(), err)
		}
		e.Guard = t.cfg.Guard()
		e.Sessions = postgres.SessionPolicy(t.cfg.Provisioning.Sessions)
		e.CopyStrategy = postgres.CopyStrategy(t.cfg.Provisioning.CopyStrategy)
		server := serverLabel(tg)
		if t.OnCopied != nil {
			e.OnCopied = func(s postgres.CopyStrategy, took time.Duration) { t.OnCopied(server, s, took) }
		}
		e.SessionWait = t.cfg.Provisioning.SessionWait.D()
		engine, ct.Engine = e, e
		r, err := postgres.NewRegistry(ctx, tg.Admin.PgxConnString(), t.log)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("%s: %w", tg.Admin.Redacted(), err)
		}
		r.AdminAPIRegisters, r.Line = adminAPI, t.cfg.Line()
		registry, ct.Registry = r, r
		ct.ODS = func(db string) string { return tg.ODS.ForDatabase(db).ADONet() }
	}
	t.closers = append(t.closers, engine.Close, registry.Close)
	return ct, nil
}

// importLedger reserves, as made, every database in the ledger of an
// EdFi_Admin whose tenants this entry serves: instances that a version
// without reservations provisioned stay the system's after an upgrade. A
// ledger entry whose name another request holds is left to the operator.
func (t *TenantPool) importLedger(ctx context.Context, entry string, engine provisioning.Engine, reg provisioning.Registry) error {
	recs, err := reg.Records(ctx)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if tg, err := t.cfg.TenantConns(rec.Tenant); err != nil || tg.Entry != entry {
			continue // another entry's server holds this tenant's databases
		}
		err := engine.Import(ctx, rec.Database, rec.Owner())
		switch {
		case errors.Is(err, provisioning.ErrConflict):
			t.log.Error("ledger entry conflicts with a reservation; resolve it by hand", "tenant", rec.Tenant, "instance_id", rec.InstanceID, "database", rec.Database, "err", err)
		case err != nil:
			return err
		}
	}
	return nil
}

// Close closes every connection opened.
func (t *TenantPool) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.closers {
		c()
	}
	t.closers, t.byEntry = nil, map[string]*consumer.Tenant{}
}
