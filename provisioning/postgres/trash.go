package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// TrashDatabase implements provisioning.Trasher. One transaction closes
// the database to logins (ALLOW_CONNECTIONS false: superusers included),
// ends its sessions, renames it to its trash name, checks that the
// database it renamed is the one the system made (its oid) and moves the
// reservation to the trash name: a database swapped under the name is
// never moved, and a delivery that dies leaves either nothing done or all.
func (e *Engine) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("move database %q to trash: %w", name, err)
	}
	moved, err := provisioning.Drop(ctx, e, name, owner, func(ctx context.Context, identity string) error {
		trash := provisioning.TrashName(provisioning.Reservation{Database: name, Owner: owner, Identity: identity})
		rename, err := renameDatabaseSQL(name, trash)
		if err != nil {
			return err
		}
		closeIt, err := allowConnectionsSQL(name, false)
		if err != nil {
			return err
		}
		err = e.rename(ctx, name, trash, SessionsTerminate, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, closeIt); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, terminateSQL, name); err != nil {
				return err
			}
			if err := renameChecked(ctx, tx, rename, name, trash, identity, "nothing is moved"); err != nil {
				return err
			}
			// A reservation a restore made carries the generation the
			// restore registered: a delete of an earlier one is stale.
			tag, err := tx.Exec(ctx, `UPDATE instancemgr.reservations
				SET database_name = $5, state = 'trashed', original_name = $1, deleted_at = now(),
				    purge_at = now() + $6::bigint * interval '1 microsecond', generation = $8, updated_at = now()
				WHERE database_name = $1 AND tenant = $2 AND instance_id = $3 AND `+ownerLine+` = $7
				  AND state = 'made' AND database_identity = $4 AND coalesce(generation, 0) <= $8`,
				name, owner.Tenant, owner.InstanceID, identity, trash, retention.Microseconds(), owner.Line.String(), generation)
			if err != nil || tag.RowsAffected() > 0 {
				return err
			}
			var restoredAt int
			if err := tx.QueryRow(ctx, `SELECT coalesce(generation, 0) FROM instancemgr.reservations WHERE database_name = $1 AND state = 'made' AND database_identity = $2`,
				name, identity).Scan(&restoredAt); err == nil && restoredAt > generation {
				return backoff.Permanent(fmt.Errorf("%w: %q was restored at generation %d, after this delete's (%d); nothing is moved", provisioning.ErrStale, name, restoredAt, generation))
			}
			return backoff.Permanent(fmt.Errorf("%w: the reservation of %q for %s is gone or records another database; nothing is moved", provisioning.ErrConflict, name, owner))
		})
		if err != nil {
			return fmt.Errorf("move database %q to trash: %w", name, err)
		}
		return nil
	})
	if err != nil || moved {
		return moved, err
	}
	// Moved by an earlier delivery, or an earlier delete asked again after
	// it failed at the Admin API: the record keeps the later generation.
	if _, err := e.pool.Exec(ctx, keepGenerationSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String(), generation); err != nil {
		return false, fmt.Errorf("record the generation of %q in trash: %w", name, transient(err))
	}
	return false, nil
}

// keepGenerationSQL raises the generation of owner's trashed record of
// $1 to $5: a restore goes on from the last delete that settled.
const keepGenerationSQL = `UPDATE instancemgr.reservations SET generation = $5, updated_at = now()
WHERE state = 'trashed' AND original_name = $1 AND tenant = $2 AND instance_id = $3 AND ` + ownerLine + ` = $4 AND coalesce(generation, 0) < $5`

// trashedColumns are a trashed reservation's columns, as scanTrashed reads
// them.
const trashedColumns = `database_name, coalesce(original_name, ''), tenant, instance_id, ` + ownerLine + `, coalesce(database_identity, ''), deleted_at, purge_at, coalesce(generation, 0)`

func scanTrashed(row pgx.Row, t *provisioning.Trashed, more ...any) error {
	return row.Scan(append([]any{&t.Name, &t.Original, &t.Owner.Tenant, &t.Owner.InstanceID, lineOf(&t.Owner), &t.Identity, &t.DeletedAt, &t.PurgeAt, &t.Generation}, more...)...)
}

// Trash implements provisioning.Trasher. The size is the database's under
// its trash name with the recorded oid (pg_database_size works on a
// database closed to logins).
func (e *Engine) Trash(ctx context.Context) ([]provisioning.Trashed, error) {
	if e.noReservations {
		return nil, nil
	}
	rows, err := e.pool.Query(ctx, `SELECT `+trashedColumns+`,
		coalesce((SELECT pg_database_size(d.oid) FROM pg_catalog.pg_database d WHERE d.datname = database_name AND d.oid::text = database_identity), 0)
		FROM instancemgr.reservations WHERE state = 'trashed' ORDER BY purge_at, database_name`)
	if err != nil {
		return nil, fmt.Errorf("list the trash: %w", transient(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (provisioning.Trashed, error) {
		var t provisioning.Trashed
		err := scanTrashed(row, &t, &t.Bytes)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the trash: %w", transient(err))
	}
	return out, nil
}

// PurgeDue implements provisioning.Trasher. Each due record is taken FOR
// UPDATE SKIP LOCKED in its own transaction, held while its database is
// dropped and deleted in it: replicas purging together each take another
// record, and none drops a database another is dropping.
func (e *Engine) PurgeDue(ctx context.Context) ([]provisioning.Purged, error) {
	if e.noReservations {
		return nil, nil
	}
	var out []provisioning.Purged
	skip := []string{} // records left for their conflict, not taken again in this pass
	for {
		p, found, err := e.purgeOne(ctx, `purge_at <= now() AND database_name <> ALL($1)`, skip)
		if err != nil || !found {
			return out, err
		}
		out = append(out, p)
		if p.Err != nil {
			skip = append(skip, p.Name)
		}
	}
}

// Purge implements provisioning.Trasher.
func (e *Engine) Purge(ctx context.Context, trashName string) (provisioning.Purged, error) {
	p, found, err := e.purgeOne(ctx, `database_name = $1`, trashName)
	switch {
	case err != nil:
		return p, err
	case !found:
		return p, fmt.Errorf("%w: %q is not in trash, or another replica is purging it now", provisioning.ErrConflict, trashName)
	}
	return p, p.Err
}

// purgeOne takes one trashed record that where matches (with arg as $1)
// and is not another session's, and drops its database while the
// transaction that deletes the record holds it. A database under the trash name that is not the recorded
// one is left, and so is its record (Purged.Err says why).
func (e *Engine) purgeOne(ctx context.Context, where string, arg any) (provisioning.Purged, bool, error) {
	var p provisioning.Purged
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return p, false, fmt.Errorf("purge the trash: %w", transient(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	// The record is deleted as it is taken, and the deletion rolled back
	// if its database is not dropped: the transaction takes its one lock
	// on the table at once, never a weaker one first, which start-up's
	// schema statements (ensureSchema) could turn into a deadlock.
	err = scanTrashed(tx.QueryRow(ctx, `DELETE FROM instancemgr.reservations WHERE database_name = (
		SELECT database_name FROM instancemgr.reservations
		WHERE state = 'trashed' AND `+where+` ORDER BY purge_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+trashedColumns, arg), &p.Trashed)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("purge the trash: %w", transient(err))
	}
	p.Dropped, err = e.dropTrashed(ctx, p.Trashed)
	if errors.Is(err, provisioning.ErrConflict) {
		p.Err = err
		return p, true, nil
	}
	if err != nil {
		return p, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return p, false, fmt.Errorf("forget the purged %q: %w", p.Name, transient(err))
	}
	return p, true, nil
}

// dropTrashed drops a trashed database by identity: moved to its scratch
// name in a transaction that checks its oid, then dropped, as DropDatabase
// does. A purge that died between the two left it under the scratch name.
func (e *Engine) dropTrashed(ctx context.Context, t provisioning.Trashed) (bool, error) {
	if !strings.HasPrefix(t.Name, provisioning.TrashPrefix) || t.Identity == "" {
		return false, fmt.Errorf("%w: %q is not a trash name with a recorded database", provisioning.ErrConflict, t.Name)
	}
	scratch := provisioning.ScratchName(provisioning.Reservation{Database: t.Name, Owner: t.Owner})
	current, exists, err := e.Identity(ctx, t.Name)
	if err != nil {
		return false, err
	}
	if !exists {
		left, there, err := e.Identity(ctx, scratch)
		switch {
		case err != nil || !there:
			return false, err
		case left != t.Identity:
			return false, fmt.Errorf("%w: the database under %q is not the one instancemgr moved to trash as %q (oid %s, instancemgr moved %s); it is left alone", provisioning.ErrConflict, scratch, t.Name, left, t.Identity)
		}
		return true, e.DropScratch(ctx, scratch)
	}
	if current != t.Identity {
		return false, fmt.Errorf("%w: the database under the trash name %q is not the one instancemgr moved there from %q (oid %s, instancemgr moved %s); it is left alone", provisioning.ErrConflict, t.Name, t.Original, current, t.Identity)
	}
	stmt, err := renameDatabaseSQL(t.Name, scratch)
	if err != nil {
		return false, err
	}
	err = e.rename(ctx, t.Name, scratch, SessionsTerminate, func(tx pgx.Tx) error {
		return renameChecked(ctx, tx, stmt, t.Name, scratch, t.Identity, "nothing is dropped")
	})
	if err != nil {
		return false, fmt.Errorf("purge %q: %w", t.Name, err)
	}
	return true, e.DropScratch(ctx, scratch)
}

// Restore implements provisioning.Restorer: one transaction takes the
// record, renames the database back,
// checks its oid, opens it to logins and moves the reservation to name,
// made. A name held by a database or a reservation is a conflict.
func (e *Engine) Restore(ctx context.Context, trashName, name string) (provisioning.Trashed, error) {
	var t provisioning.Trashed
	if err := e.Guard.CheckDestructive(name); err != nil {
		return t, fmt.Errorf("restore %q as %q: %w", trashName, name, err)
	}
	rename, err := renameDatabaseSQL(trashName, name)
	if err != nil {
		return t, err
	}
	open, err := allowConnectionsSQL(name, true)
	if err != nil {
		return t, err
	}
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		// Taken by an UPDATE, not FOR UPDATE: one lock on the table, as
		// purgeOne takes it. A purge of it under way is waited out (then
		// it is gone).
		err := scanTrashed(tx.QueryRow(ctx, `UPDATE instancemgr.reservations SET updated_at = now() WHERE database_name = $1 AND state = 'trashed' RETURNING `+trashedColumns, trashName), &t)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q is not in trash", provisioning.ErrConflict, trashName)
		}
		if err != nil {
			return err
		}
		if err := renameChecked(ctx, tx, rename, trashName, name, t.Identity, "nothing is restored"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, open); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE instancemgr.reservations
			SET database_name = $2, state = 'made', original_name = NULL, deleted_at = NULL, purge_at = NULL, generation = coalesce(generation, 0) + 1, updated_at = now()
			WHERE database_name = $1 AND state = 'trashed'`, trashName, name)
		return err
	})
	switch {
	case err == nil:
		return t, nil
	case isDuplicateDatabase(err):
		return t, fmt.Errorf("%w: restore %q as %q: the name is in use (a database or a reservation)", provisioning.ErrConflict, trashName, name)
	case errors.Is(err, provisioning.ErrConflict):
		return t, fmt.Errorf("restore %q as %q: %w", trashName, name, err)
	}
	return t, fmt.Errorf("restore %q as %q: %w", trashName, name, transient(err))
}

// terminateSQL ends every other session on a database.
const terminateSQL = `SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`

func allowConnectionsSQL(name string, allow bool) (string, error) {
	if err := checkIdent(name); err != nil {
		return "", err
	}
	return fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", pgx.Identifier{name}.Sanitize(), allow), nil
}

var _ provisioning.Restorer = (*Engine)(nil)
