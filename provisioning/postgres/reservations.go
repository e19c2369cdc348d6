package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// reservationSchema holds the server's reservations, in its maintenance
// database: one table per server, whichever tenants and EdFi_Admin
// databases share it, so a name is unique on the server it lives on.
// Uniqueness ignores letter case, as SQL Server's default collation does:
// two requests never get names that differ only in case.
const reservationSchema = `
CREATE SCHEMA IF NOT EXISTS instancemgr;
CREATE TABLE IF NOT EXISTS instancemgr.reservations (
    database_name text        PRIMARY KEY,
    tenant        text        NOT NULL,
    instance_id   integer     NOT NULL,
    state         text        NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'making', 'made')),
    reserved_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS reservations_name_ci ON instancemgr.reservations (lower(database_name));
ALTER TABLE instancemgr.reservations ADD COLUMN IF NOT EXISTS database_identity text;
-- The Admin API line of the owner (provisioning.Line). NULL on a row made
-- before lines: it reads as adminconsole until Import, from a ledger, says
-- whose it is.
ALTER TABLE instancemgr.reservations ADD COLUMN IF NOT EXISTS line text;
-- A database held in trash (provisioning.StateTrashed): the row moves to
-- the trash name and keeps the name it had and when it goes.
ALTER TABLE instancemgr.reservations ADD COLUMN IF NOT EXISTS original_name text;
ALTER TABLE instancemgr.reservations ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE instancemgr.reservations ADD COLUMN IF NOT EXISTS purge_at timestamptz;
ALTER TABLE instancemgr.reservations ADD COLUMN IF NOT EXISTS generation integer;
ALTER TABLE instancemgr.reservations DROP CONSTRAINT IF EXISTS reservations_state_check;
ALTER TABLE instancemgr.reservations ADD CONSTRAINT reservations_state_check CHECK (state IN ('reserved', 'making', 'made', 'trashed'));`

// ownerLine is a reservation's line as it reads: a row from before lines
// is adminconsole's.
const ownerLine = `coalesce(line, 'adminconsole')`

// identitySQL is a database's identity on PostgreSQL: its oid, which a
// rename keeps and no other database has while it exists.
const identitySQL = `SELECT oid::text FROM pg_catalog.pg_database WHERE datname = $1::text`

// ensureSchema runs idempotent DDL under a transaction-level advisory lock:
// CREATE ... IF NOT EXISTS run by two sessions at once can still fail on
// the catalog's unique index, and replicas start together.
func ensureSchema(ctx context.Context, pool *pgxpool.Pool, ddl string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return transient(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('instancemgr:schema', 0))`); err != nil {
		return transient(err)
	}
	if _, err := tx.Exec(ctx, ddl); err != nil {
		return transient(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return transient(err)
	}
	return nil
}

// Reserve implements provisioning.Engine.
func (e *Engine) Reserve(ctx context.Context, name string, owner provisioning.Owner) (provisioning.Reservation, bool, error) {
	if err := checkIdent(name); err != nil {
		return provisioning.Reservation{}, false, err
	}
	tag, err := e.lazy.Exec(ctx, `INSERT INTO instancemgr.reservations (database_name, tenant, instance_id, line) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		name, owner.Tenant, owner.InstanceID, owner.Line.String())
	if err != nil {
		return provisioning.Reservation{}, false, fmt.Errorf("reserve database name %q: %w", name, transient(err))
	}
	res, err := provisioning.OwnedBy(ctx, e, name, owner)
	if err != nil {
		return res, false, fmt.Errorf("reserve database name %q: %w", name, err)
	}
	return res, tag.RowsAffected() == 1, nil
}

// Reservation implements provisioning.Engine.
func (e *Engine) Reservation(ctx context.Context, name string) (provisioning.Reservation, bool, error) {
	var res provisioning.Reservation
	err := e.pool.QueryRow(ctx, `SELECT database_name, tenant, instance_id, `+ownerLine+`, state, coalesce(database_identity, '') FROM instancemgr.reservations WHERE lower(database_name) = lower($1)`, name).
		Scan(&res.Database, &res.Owner.Tenant, &res.Owner.InstanceID, lineOf(&res.Owner), &res.State, &res.Identity)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, false, nil
	}
	if err != nil {
		return res, false, fmt.Errorf("read the reservation of %q: %w", name, transient(err))
	}
	return res, true, nil
}

// Identity implements provisioning.ReservationStore.
func (e *Engine) Identity(ctx context.Context, name string) (string, bool, error) {
	if err := checkIdent(name); err != nil {
		return "", false, err
	}
	var id string
	err := e.pool.QueryRow(ctx, identitySQL, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up database %q: %w", name, transient(err))
	}
	return id, true, nil
}

// SetState implements provisioning.ReservationStore.
func (e *Engine) SetState(ctx context.Context, name string, owner provisioning.Owner, state provisioning.ReservationState, identity string) error {
	tag, err := e.pool.Exec(ctx, `UPDATE instancemgr.reservations SET state = $4, database_identity = coalesce(nullif($5, ''), database_identity), updated_at = now()
		WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND `+ownerLine+` = $6`,
		name, owner.Tenant, owner.InstanceID, string(state), identity, owner.Line.String())
	if err != nil {
		return fmt.Errorf("mark the reservation of %q %s: %w", name, state, transient(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: the reservation of %q for %s is gone", provisioning.ErrConflict, name, owner)
	}
	return nil
}

// MarkMaking implements provisioning.Publisher.
func (e *Engine) MarkMaking(ctx context.Context, name string, owner provisioning.Owner) error {
	tag, err := e.lazy.Exec(ctx, `UPDATE instancemgr.reservations SET state = 'making', updated_at = now()
		WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND `+ownerLine+` = $4 AND state = 'reserved'`,
		name, owner.Tenant, owner.InstanceID, owner.Line.String())
	if err != nil {
		return fmt.Errorf("mark the reservation of %q making: %w", name, transient(err))
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Not reserved any more: making or made already, or gone.
	_, err = provisioning.OwnedBy(ctx, e, name, owner)
	return err
}

// Release implements provisioning.Engine. A reservation whose scratch copy
// is still there is kept with it: the copy is the system's only while a
// reservation names it.
func (e *Engine) Release(ctx context.Context, name string, owner provisioning.Owner) error {
	scratch := provisioning.ScratchName(provisioning.Reservation{Database: name, Owner: owner})
	_, err := e.pool.Exec(ctx, `DELETE FROM instancemgr.reservations
		WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND `+ownerLine+` = $5
		  AND (state = 'reserved' OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1))
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $4)`,
		name, owner.Tenant, owner.InstanceID, scratch, owner.Line.String())
	if err != nil {
		return fmt.Errorf("release database name %q: %w", name, transient(err))
	}
	return nil
}

// Import implements provisioning.Engine. Only a database there now is
// reserved: the ledger was read before this runs, and an entry a delete
// or rename has ended since names a database that is gone (moved to trash,
// renamed away). A made reservation for it would outlive every job that
// could release it (reconcile: stale_reservation).
func (e *Engine) Import(ctx context.Context, name string, owner provisioning.Owner) error {
	if err := checkIdent(name); err != nil {
		return err
	}
	// The ledger names the database an earlier version made: its identity
	// is the one under the name now, as that version took it.
	var identity string
	err := e.pool.QueryRow(ctx, `INSERT INTO instancemgr.reservations (database_name, tenant, instance_id, state, database_identity, line)
		SELECT $1, $2, $3, 'made', oid::text, $4 FROM pg_catalog.pg_database WHERE datname = $1::text
		ON CONFLICT DO NOTHING RETURNING database_identity`,
		name, owner.Tenant, owner.InstanceID, owner.Line.String()).Scan(&identity)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// No database under the name, or a reservation holds it already.
	case err != nil:
		return fmt.Errorf("import the reservation of %q: %w", name, transient(err))
	default:
		// The insert read the catalog as its statement began: a move to
		// trash that committed meanwhile took the name's reservation with
		// it, and this one, made after, names a database that is gone.
		if _, err := e.pool.Exec(ctx, importGoneSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String(), identity); err != nil {
			return fmt.Errorf("import the reservation of %q: %w", name, transient(err))
		}
	}
	// A reservation from before lines, of this name, tenant and id: the
	// ledger says which line made it.
	if _, err := e.pool.Exec(ctx, settleLineSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String()); err != nil {
		return fmt.Errorf("import the reservation of %q: settle its line: %w", name, transient(err))
	}
	res, held, err := e.Reservation(ctx, name)
	if err != nil || !held {
		return err // nothing there to import
	}
	return provisioning.CheckOwner(res, held, name, owner)
}

// importGoneSQL takes back a reservation Import just made when the
// database it recorded is no longer under its name.
const importGoneSQL = `DELETE FROM instancemgr.reservations
		WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND ` + ownerLine + ` = $4 AND state = 'made' AND database_identity = $5
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1 AND oid::text = $5)`

// Identities implements provisioning.Inventory.
func (e *Engine) Identities(ctx context.Context) (map[string]string, error) {
	rows, err := e.pool.Query(ctx, `SELECT datname, oid::text FROM pg_catalog.pg_database`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", transient(err))
	}
	out := map[string]string{}
	var name, id string
	_, err = pgx.ForEachRow(rows, []any{&name, &id}, func() error { out[name] = id; return nil })
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", transient(err))
	}
	return out, nil
}

// Reservations implements provisioning.Inventory.
func (e *Engine) Reservations(ctx context.Context) ([]provisioning.Listed, error) {
	if e.noReservations {
		return nil, nil
	}
	rows, err := e.pool.Query(ctx, `SELECT database_name, tenant, instance_id, `+ownerLine+`, state, coalesce(database_identity, ''), updated_at FROM instancemgr.reservations ORDER BY database_name`)
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", transient(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (provisioning.Listed, error) {
		var l provisioning.Listed
		err := row.Scan(&l.Database, &l.Owner.Tenant, &l.Owner.InstanceID, lineOf(&l.Owner), &l.State, &l.Identity, &l.Updated)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", transient(err))
	}
	return out, nil
}

// releaseUnusedSQL deletes a reservation only while it is merely reserved
// and its database does not exist, checked in the statement that deletes.
const releaseUnusedSQL = `DELETE FROM instancemgr.reservations
		WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND ` + ownerLine + ` = $4 AND state = 'reserved'
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE lower(datname) = lower($1))`

// ReleaseUnused implements provisioning.Inventory.
func (e *Engine) ReleaseUnused(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	if e.noReservations {
		return false, nil
	}
	tag, err := e.pool.Exec(ctx, releaseUnusedSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String())
	if err != nil {
		return false, fmt.Errorf("release database name %q: %w", name, transient(err))
	}
	return tag.RowsAffected() == 1, nil
}

// settleLineSQL gives a reservation from before lines the line of the
// ledger entry that names it: same name, tenant and instance id.
const settleLineSQL = `UPDATE instancemgr.reservations SET line = $4
		WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND line IS NULL`

// lineOf scans a reservation's line (its name) into o.
func lineOf(o *provisioning.Owner) *provisioning.Line { return &o.Line }

var _ provisioning.Inventory = (*Engine)(nil)
