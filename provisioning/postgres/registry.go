package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Registry writes registrations into an EdFi_Admin database shaped like the
// ODS/API 7.x one (dbo.odsinstances and friends).
type Registry struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// NewRegistry connects to the EdFi_Admin database.
func NewRegistry(ctx context.Context, pgxConnString string, log *slog.Logger) (*Registry, error) {
	pool, err := newPool(ctx, pgxConnString, 8)
	if err != nil {
		return nil, fmt.Errorf("connect to the EdFi_Admin database: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{pool: pool, log: log}, nil
}

// Close releases the registry's connections.
func (r *Registry) Close() { r.pool.Close() }

// Pool is the registry's connection pool.
func (r *Registry) Pool() *pgxpool.Pool { return r.pool }

// Register implements provisioning.Registry.
//
// The transaction first takes an advisory lock on reg.LockKey, so deliveries
// of the same job run one after the other here; the second finds the row the
// first committed and inserts nothing.
func (r *Registry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	var res provisioning.RegisterResult
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("register %q: begin: %w", reg.Name, transient(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "instancemgr:"+reg.LockKey); err != nil {
		return res, fmt.Errorf("register %q: lock: %w", reg.Name, transient(err))
	}
	instanceType := nullIfEmpty(reg.InstanceType)
	err = tx.QueryRow(ctx, `SELECT odsinstanceid FROM dbo.odsinstances WHERE name = $1 AND instancetype IS NOT DISTINCT FROM $2`,
		reg.Name, instanceType).Scan(&res.OdsInstanceID)
	switch {
	case err == nil:
		res.Existed = true
	case errors.Is(err, pgx.ErrNoRows):
		if err := tx.QueryRow(ctx, `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ($1, $2, $3) RETURNING odsinstanceid`,
			reg.Name, instanceType, reg.ConnectionString).Scan(&res.OdsInstanceID); err != nil {
			return res, fmt.Errorf("register %q: insert dbo.odsinstances: %w", reg.Name, transient(err))
		}
	default:
		return res, fmt.Errorf("register %q: look up dbo.odsinstances: %w", reg.Name, transient(err))
	}
	for _, c := range reg.Contexts {
		if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancecontexts (odsinstance_odsinstanceid, contextkey, contextvalue) VALUES ($1, $2, $3)
			ON CONFLICT (odsinstance_odsinstanceid, contextkey) DO NOTHING`, res.OdsInstanceID, c.Key, c.Value); err != nil {
			return res, fmt.Errorf("register %q: insert context %q: %w", reg.Name, c.Key, transient(err))
		}
	}
	for _, d := range reg.Derivatives {
		// A derivative starts out pointing at the instance's own database;
		// the ODS/API reads a derivative with no connection string as broken.
		if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancederivatives (odsinstance_odsinstanceid, derivativetype, connectionstring) VALUES ($1, $2, $3)
			ON CONFLICT (odsinstance_odsinstanceid, derivativetype) DO NOTHING`, res.OdsInstanceID, d, reg.ConnectionString); err != nil {
			return res, fmt.Errorf("register %q: insert derivative %q: %w", reg.Name, d, transient(err))
		}
	}
	if err := complete(ctx, res); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("register %q: commit: %w", reg.Name, transient(err))
	}
	return res, nil
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var _ provisioning.Registry = (*Registry)(nil)
