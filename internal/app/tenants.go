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
	"github.com/edfi-tools/instancemgr/provisioning/sqlregistry"
	"github.com/edfi-tools/instancemgr/provisioning/sqlserver"
)

// Placements opens each tenant's placement (its servers' pools) on first use and keeps
// them. Tenants that share a configuration entry share its connections.
type Placements struct {
	// OnCopied hears how long each job's copy of a template took on a
	// PostgreSQL server, and with which strategy.
	OnCopied func(server string, strategy postgres.CopyStrategy, took time.Duration)
	cfg      *config.Config
	log      *slog.Logger
	mu       sync.Mutex
	byEntry  map[string]*consumer.Placement
	closers  []func()
}

// NewPlacements returns the placements of cfg.Tenants' entries.
func NewPlacements(cfg *config.Config, log *slog.Logger) *Placements {
	return &Placements{cfg: cfg, log: log, byEntry: map[string]*consumer.Placement{}}
}

// Placement implements consumer.Placements.
func (t *Placements) Placement(ctx context.Context, tenant string) (*consumer.Placement, error) {
	servers, err := t.cfg.Servers(tenant)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if placement, ok := t.byEntry[servers.Entry]; ok {
		return placement, nil
	}
	placement, err := t.open(ctx, servers)
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
		placement.Seal = func(plain string) (string, error) { return key.EncryptAs(odscrypt.AdminAPI, plain) }
	case key != nil:
		placement.Seal = key.Encrypt
	}
	placement.Templates = t.cfg.Provisioning.Templates
	if err := t.importLedger(ctx, servers.Entry, placement.Engine, placement.Registry); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	t.byEntry[servers.Entry] = placement
	return placement, nil
}

// closer is what each engine's engine and registry have.
type closer interface{ Close() }

// open connects to a tenant's server and EdFi_Admin with its engine.
func (t *Placements) open(ctx context.Context, servers config.Servers) (*consumer.Placement, error) {
	placement := &consumer.Placement{Template: t.cfg.Provisioning.Template}
	var engine closer
	if sc := servers.SQLServer; sc != nil {
		e, err := sqlserver.NewEngine(ctx, sc.Master.ADONet(), t.log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.Master.Redacted(), err)
		}
		guard := t.cfg.Guard()
		guard.Naming.MaxBytes = sqlserver.MaxNameChars // names are ASCII: one byte a character
		e.Guard, e.Backup, e.Terminate = guard, sc.Backup, t.cfg.Provisioning.Sessions != "wait"
		placement.MaxNameBytes = sqlserver.MaxNameChars
		e.SessionWait = t.cfg.Provisioning.SessionWait.D()
		if sc.Create == "copy" {
			e.Mode = sqlserver.CreateCopy
		}
		engine, placement.Engine = e, e
		placement.ODS = func(db string) string { return sc.ODS.ForDatabase(db).ADONet() }
	} else {
		e, err := postgres.NewEngine(ctx, servers.Master.PgxConnString(), t.log, postgres.WithJobs(t.cfg.Consumer.Concurrency))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", servers.Master.Redacted(), err)
		}
		e.Guard = t.cfg.Guard()
		e.Sessions = postgres.SessionPolicy(t.cfg.Provisioning.Sessions)
		e.CopyStrategy = postgres.CopyStrategy(t.cfg.Provisioning.CopyStrategy)
		server := servers.Server()
		if t.OnCopied != nil {
			e.OnCopied = func(s postgres.CopyStrategy, took time.Duration) { t.OnCopied(server, s, took) }
		}
		e.SessionWait = t.cfg.Provisioning.SessionWait.D()
		engine, placement.Engine = e, e
		placement.ODS = func(db string) string { return servers.ODS.ForDatabase(db).ADONet() }
	}
	r, err := openRegistry(ctx, t.cfg, servers, t.log)
	if err != nil {
		engine.Close()
		return nil, err
	}
	placement.Registry = r
	t.closers = append(t.closers, engine.Close, r.Close)
	return placement, nil
}

// registry is a tenant entry's EdFi_Admin: its ledger and registrations,
// and the manage flavor's rows through Conn.
type registry interface {
	provisioning.Registry
	Conn() sqlregistry.Conn
	Close()
}

// openRegistry connects to the EdFi_Admin of a tenant entry's servers with
// its engine, for the consumer's placements and the bridge's ledgers alike.
func openRegistry(ctx context.Context, cfg *config.Config, servers config.Servers, log *slog.Logger) (registry, error) {
	adminAPI := cfg.Provisioning.Registration == config.RegistrationAdminAPI
	if sc := servers.SQLServer; sc != nil {
		r, err := sqlserver.NewRegistry(ctx, sc.Admin.ADONet(), log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.Admin.Redacted(), err)
		}
		r.AdminAPIRegisters, r.Line = adminAPI, cfg.Line()
		return r, nil
	}
	r, err := postgres.NewRegistry(ctx, servers.Admin.PgxConnString(), log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", servers.Admin.Redacted(), err)
	}
	r.AdminAPIRegisters, r.Line = adminAPI, cfg.Line()
	return r, nil
}

// importLedger reserves, as made, every database in the ledger of an
// EdFi_Admin whose tenants this entry serves: instances that a version
// without reservations provisioned stay the system's after an upgrade. A
// ledger entry whose name another request holds is left to the operator.
func (t *Placements) importLedger(ctx context.Context, entry string, engine provisioning.Engine, reg provisioning.Registry) error {
	recs, err := reg.Records(ctx)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if servers, err := t.cfg.Servers(rec.Tenant); err != nil || servers.Entry != entry {
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
func (t *Placements) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.closers {
		c()
	}
	t.closers, t.byEntry = nil, map[string]*consumer.Placement{}
}
