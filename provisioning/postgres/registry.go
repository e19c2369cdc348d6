package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Registry writes registrations into an EdFi_Admin database shaped like the
// ODS/API 7.x one (dbo.odsinstances and friends), and keeps the system's own
// ledger beside them in the schema instancemgr, in the same transactions.
type Registry struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// AdminAPIRegisters is set when the Admin API writes the dbo rows in
	// its completed, renamed and deleted handlers (Admin API 2.3 as
	// released): the registry then keeps only its ledger, in the same
	// transaction around those calls.
	AdminAPIRegisters bool
}

// ledgerSchema is the system's own record of what it provisioned. It lives
// in EdFi_Admin so that it commits atomically with the registration.
const ledgerSchema = `
CREATE SCHEMA IF NOT EXISTS instancemgr;
CREATE TABLE IF NOT EXISTS instancemgr.instances (
    tenant          text        NOT NULL,
    instance_id     integer     NOT NULL,
    ods_instance_id integer     NOT NULL,
    database_name   text        NOT NULL,
    name            text        NOT NULL,
    generation      integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, instance_id)
);
-- NULL when the Admin API registers the instance: its row id is the Admin API's.
ALTER TABLE instancemgr.instances ALTER COLUMN ods_instance_id DROP NOT NULL;`

// NewRegistry connects to the EdFi_Admin database and makes sure the ledger
// table exists.
func NewRegistry(ctx context.Context, pgxConnString string, log *slog.Logger) (*Registry, error) {
	pool, err := open(ctx, pgxConnString, 8, "the EdFi_Admin database", ledgerSchema, "the instancemgr ledger")
	if err != nil {
		return nil, err
	}
	return &Registry{pool: pool, log: orDiscard(log)}, nil
}

// Close releases the registry's connections.
func (r *Registry) Close() { r.pool.Close() }

// inTx runs fn in a transaction that holds the instance's advisory lock, so
// every change to one instance (create, rename, delete, by any delivery)
// runs one after the other.
func (r *Registry) inTx(ctx context.Context, tenant string, instanceID int, what string, fn func(pgx.Tx) error) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", what, transient(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, lockKey(tenant, instanceID)); err != nil {
		return fmt.Errorf("%s: lock: %w", what, transient(err))
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: commit: %w", what, transient(err))
	}
	return nil
}

func lockKey(tenant string, instanceID int) string {
	return "instancemgr:" + tenant + ":" + strconv.Itoa(instanceID)
}

func lookup(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, tenant string, instanceID int, forUpdate bool) (provisioning.Record, error) {
	rec := provisioning.Record{Tenant: tenant, InstanceID: instanceID}
	sql := `SELECT coalesce(ods_instance_id, 0), database_name, name, generation FROM instancemgr.instances WHERE tenant = $1 AND instance_id = $2`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	err := q.QueryRow(ctx, sql, tenant, instanceID).Scan(&rec.OdsInstanceID, &rec.Database, &rec.Name, &rec.Generation)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, fmt.Errorf("%w: tenant %q instance %d", provisioning.ErrNotRecorded, tenant, instanceID)
	}
	if err != nil {
		return rec, fmt.Errorf("read the ledger for tenant %q instance %d: %w", tenant, instanceID, transient(err))
	}
	return rec, nil
}

// Lookup implements provisioning.Registry.
func (r *Registry) Lookup(ctx context.Context, tenant string, instanceID int) (provisioning.Record, error) {
	return lookup(ctx, r.pool, tenant, instanceID, false)
}

// Records implements provisioning.Registry.
func (r *Registry) Records(ctx context.Context) ([]provisioning.Record, error) {
	rows, err := r.pool.Query(ctx, `SELECT tenant, instance_id, coalesce(ods_instance_id, 0), database_name, name, generation FROM instancemgr.instances ORDER BY tenant, instance_id`)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", transient(err))
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (provisioning.Record, error) {
		var rec provisioning.Record
		err := row.Scan(&rec.Tenant, &rec.InstanceID, &rec.OdsInstanceID, &rec.Database, &rec.Name, &rec.Generation)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", transient(err))
	}
	return recs, nil
}

// Register implements provisioning.Registry. The ledger says whether this
// instance was registered before; a dbo.odsinstances row of the same name
// and type that the ledger does not know is someone else's, and a conflict.
func (r *Registry) Register(ctx context.Context, reg provisioning.Registration, complete func(context.Context, provisioning.RegisterResult) error) (provisioning.RegisterResult, error) {
	var res provisioning.RegisterResult
	what := fmt.Sprintf("register %q", reg.Name)
	err := r.inTx(ctx, reg.Tenant, reg.InstanceID, what, func(tx pgx.Tx) error {
		rec, err := lookup(ctx, tx, reg.Tenant, reg.InstanceID, true)
		switch {
		case err == nil:
			if rec.Database != reg.Database || rec.Name != reg.Name {
				return fmt.Errorf("%s: %w: the ledger already has tenant %q instance %d on database %q (name %q), not %q (name %q)",
					what, provisioning.ErrConflict, reg.Tenant, reg.InstanceID, rec.Database, rec.Name, reg.Database, reg.Name)
			}
			res = provisioning.RegisterResult{OdsInstanceID: rec.OdsInstanceID, Existed: true}
			if r.AdminAPIRegisters {
				return complete(ctx, res)
			}
			var rowName string
			err := tx.QueryRow(ctx, `SELECT name FROM dbo.odsinstances WHERE odsinstanceid = $1`, rec.OdsInstanceID).Scan(&rowName)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("%s: %w: the ledger names dbo.odsinstances row %d, which someone else removed", what, provisioning.ErrConflict, rec.OdsInstanceID)
			case err != nil:
				return fmt.Errorf("%s: read dbo.odsinstances: %w", what, transient(err))
			case rowName != reg.Name:
				return fmt.Errorf("%s: %w: dbo.odsinstances row %d is named %q now, not %q", what, provisioning.ErrConflict, rec.OdsInstanceID, rowName, reg.Name)
			}
		case errors.Is(err, provisioning.ErrNotRecorded) && r.AdminAPIRegisters:
			if _, err := tx.Exec(ctx, `INSERT INTO instancemgr.instances (tenant, instance_id, database_name, name) VALUES ($1, $2, $3, $4)`,
				reg.Tenant, reg.InstanceID, reg.Database, reg.Name); err != nil {
				return fmt.Errorf("%s: write the ledger: %w", what, transient(err))
			}
			return complete(ctx, res)
		case errors.Is(err, provisioning.ErrNotRecorded):
			err := tx.QueryRow(ctx, `INSERT INTO dbo.odsinstances (name, instancetype, connectionstring) VALUES ($1, $2, $3) RETURNING odsinstanceid`,
				reg.Name, nullIfEmpty(reg.InstanceType), reg.ConnectionString).Scan(&res.OdsInstanceID)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation {
				return fmt.Errorf("%s: %w: dbo.odsinstances already has an instance of this name and type that instancemgr did not register", what, provisioning.ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("%s: insert dbo.odsinstances: %w", what, transient(err))
			}
			if _, err := tx.Exec(ctx, `INSERT INTO instancemgr.instances (tenant, instance_id, ods_instance_id, database_name, name) VALUES ($1, $2, $3, $4, $5)`,
				reg.Tenant, reg.InstanceID, res.OdsInstanceID, reg.Database, reg.Name); err != nil {
				return fmt.Errorf("%s: write the ledger: %w", what, transient(err))
			}
		default:
			return err
		}
		for _, c := range reg.Contexts {
			if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancecontexts (odsinstance_odsinstanceid, contextkey, contextvalue) VALUES ($1, $2, $3)
				ON CONFLICT (odsinstance_odsinstanceid, contextkey) DO NOTHING`, res.OdsInstanceID, c.Key, c.Value); err != nil {
				return fmt.Errorf("%s: insert context %q: %w", what, c.Key, transient(err))
			}
		}
		for _, d := range reg.Derivatives {
			// A derivative starts out pointing at the instance's own database;
			// the ODS/API reads a derivative with no connection string as broken.
			if _, err := tx.Exec(ctx, `INSERT INTO dbo.odsinstancederivatives (odsinstance_odsinstanceid, derivativetype, connectionstring) VALUES ($1, $2, $3)
				ON CONFLICT (odsinstance_odsinstanceid, derivativetype) DO NOTHING`, res.OdsInstanceID, d, reg.ConnectionString); err != nil {
				return fmt.Errorf("%s: insert derivative %q: %w", what, d, transient(err))
			}
		}
		return complete(ctx, res)
	})
	return res, err
}

// Rename implements provisioning.Registry. The ledger moves to the new
// database and the next generation; with the worker registering, the
// instance row and its derivatives follow.
func (r *Registry) Rename(ctx context.Context, ren provisioning.Renaming, complete func(context.Context, provisioning.Record) error) error {
	what := fmt.Sprintf("rename registration of instance %d to %q", ren.InstanceID, ren.NewName)
	return r.inTx(ctx, ren.Tenant, ren.InstanceID, what, func(tx pgx.Tx) error {
		before, err := lookup(ctx, tx, ren.Tenant, ren.InstanceID, true)
		if err != nil {
			return err
		}
		if before.Generation != ren.Generation {
			return fmt.Errorf("%s: %w: the ledger is at generation %d, the job was made for %d", what, provisioning.ErrStale, before.Generation, ren.Generation)
		}
		if !r.AdminAPIRegisters {
			if _, err := tx.Exec(ctx, `UPDATE dbo.odsinstances SET name = $1, connectionstring = $2 WHERE odsinstanceid = $3`,
				ren.NewName, ren.ConnectionString, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: update dbo.odsinstances: %w", what, transient(err))
			}
			if _, err := tx.Exec(ctx, `UPDATE dbo.odsinstancederivatives SET connectionstring = $1 WHERE odsinstance_odsinstanceid = $2`,
				ren.ConnectionString, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: update dbo.odsinstancederivatives: %w", what, transient(err))
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE instancemgr.instances SET database_name = $1, name = $2, generation = generation + 1, updated_at = now() WHERE tenant = $3 AND instance_id = $4`,
			ren.NewDatabase, ren.NewName, ren.Tenant, ren.InstanceID); err != nil {
			return fmt.Errorf("%s: update the ledger: %w", what, transient(err))
		}
		return complete(ctx, before)
	})
}

// RenameFailed implements provisioning.Registry.
func (r *Registry) RenameFailed(ctx context.Context, tenant string, instanceID, generation int, complete func(context.Context) error) error {
	return r.advance(ctx, tenant, instanceID, generation, fmt.Sprintf("record the failed rename of instance %d", instanceID), complete)
}

// DeleteFailed implements provisioning.Registry.
func (r *Registry) DeleteFailed(ctx context.Context, tenant string, instanceID, generation int, complete func(context.Context) error) error {
	return r.advance(ctx, tenant, instanceID, generation, fmt.Sprintf("record the failed delete of instance %d", instanceID), complete)
}

// advance moves the ledger from generation to the next one.
func (r *Registry) advance(ctx context.Context, tenant string, instanceID, generation int, what string, complete func(context.Context) error) error {
	return r.inTx(ctx, tenant, instanceID, what, func(tx pgx.Tx) error {
		before, err := lookup(ctx, tx, tenant, instanceID, true)
		if err != nil {
			return err
		}
		if before.Generation != generation {
			return fmt.Errorf("%s: %w: the ledger is at generation %d, the job was made for %d", what, provisioning.ErrStale, before.Generation, generation)
		}
		if _, err := tx.Exec(ctx, `UPDATE instancemgr.instances SET generation = generation + 1, updated_at = now() WHERE tenant = $1 AND instance_id = $2`,
			tenant, instanceID); err != nil {
			return fmt.Errorf("%s: %w", what, transient(err))
		}
		return complete(ctx)
	})
}

// Unregister implements provisioning.Registry. Children go before the
// instance: the ODS/API's foreign keys do not cascade.
func (r *Registry) Unregister(ctx context.Context, tenant string, instanceID int, complete func(context.Context, provisioning.Record) error) error {
	what := fmt.Sprintf("unregister instance %d", instanceID)
	return r.inTx(ctx, tenant, instanceID, what, func(tx pgx.Tx) error {
		before, err := lookup(ctx, tx, tenant, instanceID, true)
		if err != nil {
			return err
		}
		var rows []string // the Admin API's deleted handler removes its own
		if !r.AdminAPIRegisters {
			rows = []string{
				`DELETE FROM dbo.odsinstancecontexts WHERE odsinstance_odsinstanceid = $1`,
				`DELETE FROM dbo.odsinstancederivatives WHERE odsinstance_odsinstanceid = $1`,
				`DELETE FROM dbo.apiclientodsinstances WHERE odsinstance_odsinstanceid = $1`,
				`DELETE FROM dbo.odsinstances WHERE odsinstanceid = $1`,
			}
		}
		for _, stmt := range rows {
			if _, err := tx.Exec(ctx, stmt, before.OdsInstanceID); err != nil {
				return fmt.Errorf("%s: %w", what, transient(err))
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM instancemgr.instances WHERE tenant = $1 AND instance_id = $2`, tenant, instanceID); err != nil {
			return fmt.Errorf("%s: ledger: %w", what, transient(err))
		}
		return complete(ctx, before)
	})
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var _ provisioning.Registry = (*Registry)(nil)
