package sqlserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// Trash on SQL Server. A database is closed to everyone, sysadmin
// included, only OFFLINE (RESTRICTED_USER and SINGLE_USER let db_owner
// in), and an OFFLINE database is renamed only with doubt, so it is
// renamed while online and then taken offline, in the batch whose guard
// checks its identity. A drop of an OFFLINE database leaves its files on
// disk: the purge brings it ONLINE first. Renames are not transactional
// here: the reservation moves to the trash name after the batch, and a
// delivery that died between the two finishes the move (finishTrash).

// trashSQL moves name to trash and closes it.
func trashSQL(name, trash string) ([]string, error) {
	q, err := quoteNames(name, trash)
	if err != nil {
		return nil, err
	}
	return []string{
		"ALTER DATABASE " + q[0] + " SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"ALTER DATABASE " + q[0] + " MODIFY NAME = " + q[1],
		"ALTER DATABASE " + q[1] + " SET MULTI_USER",
		"ALTER DATABASE " + q[1] + " SET OFFLINE WITH ROLLBACK IMMEDIATE",
	}, nil
}

// offlineSQL closes a database already under its trash name.
func offlineSQL(trash string) ([]string, error) {
	q, err := quoteName(trash)
	if err != nil {
		return nil, err
	}
	return []string{"ALTER DATABASE " + q + " SET OFFLINE WITH ROLLBACK IMMEDIATE"}, nil
}

// purgeSQL drops a trashed database with its files: online again first.
func purgeSQL(trash string) ([]string, error) {
	q, err := quoteName(trash)
	if err != nil {
		return nil, err
	}
	return []string{
		"ALTER DATABASE " + q + " SET ONLINE",
		"ALTER DATABASE " + q + " SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"DROP DATABASE " + q,
	}, nil
}

// The trash's reservation statements, pinned by the unit tests.
const (
	// trashReservationSQL moves the made reservation of @p1 (identity
	// @p4) to the trash name @p5, due in @p6 seconds.
	trashReservationSQL = `UPDATE instancemgr.reservations
SET database_name = @p5, state = 'trashed', original_name = @p1, deleted_at = SYSUTCDATETIME(),
    purge_at = DATEADD(second, @p6, SYSUTCDATETIME()), generation = @p8, updated_at = SYSUTCDATETIME()
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p7
  AND state = 'made' AND database_identity = @p4`
	trashedColumns = `database_name, COALESCE(original_name, N''), tenant, instance_id, ` + ownerLine + `, COALESCE(database_identity, N''), deleted_at, purge_at, COALESCE(generation, 0)`
	// trashListSQL sizes each trashed database from sys.master_files
	// (8-KB pages), which keeps an OFFLINE database's rows.
	trashListSQL = `SELECT ` + trashedColumns + `,
    COALESCE((SELECT SUM(CAST(mf.size AS bigint)) * 8192 FROM sys.master_files mf JOIN sys.databases d ON d.database_id = mf.database_id
              WHERE d.name = r.database_name AND CONCAT(d.database_id, N'@', CONVERT(nvarchar(33), d.create_date, 126)) = r.database_identity), 0)
FROM instancemgr.reservations r WHERE r.state = 'trashed' ORDER BY r.purge_at, r.database_name`
	// takeDueSQL takes one due record no other session holds (UPDLOCK,
	// READPAST: SQL Server's FOR UPDATE SKIP LOCKED), leaving out the
	// names in @p1 ("/a/b/": records left for a conflict in this pass).
	takeDueSQL = `SELECT TOP (1) ` + trashedColumns + ` FROM instancemgr.reservations WITH (UPDLOCK, READPAST, ROWLOCK)
WHERE state = 'trashed' AND purge_at <= SYSUTCDATETIME() AND CHARINDEX(N'/' + database_name + N'/', @p1) = 0 ORDER BY purge_at`
	takeNamedSQL = `SELECT TOP (1) ` + trashedColumns + ` FROM instancemgr.reservations WITH (UPDLOCK, READPAST, ROWLOCK)
WHERE state = 'trashed' AND database_name = @p1`
	forgetTrashSQL = `DELETE FROM instancemgr.reservations WHERE database_name = @p1 AND state = 'trashed'`
)

// TrashDatabase implements provisioning.Trasher.
func (e *Engine) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("move database %q to trash: %w", name, err)
	}
	if moved, err := e.finishTrash(ctx, name, owner, retention, generation); err != nil || moved {
		return moved, err
	}
	return provisioning.Drop(ctx, e, name, owner, func(ctx context.Context, identity string) error {
		trash := provisioning.TrashName(provisioning.Reservation{Database: name, Owner: owner, Identity: identity})
		stmts, err := trashSQL(name, trash)
		if err != nil {
			return err
		}
		if err := e.execGuarded(ctx, guarded(stmts), name, identity); err != nil {
			return fmt.Errorf("move database %q to trash: %w", name, unwrapPermanent(err))
		}
		return e.recordTrash(ctx, name, trash, owner, identity, retention, generation)
	})
}

// finishTrash completes a move to trash that a delivery left after its
// batch: name gone, its reservation still made, and the database it
// records under the trash name.
func (e *Engine) finishTrash(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	res, ok, err := e.Reservation(ctx, name)
	if err != nil || !ok || res.Owner != owner || res.Database != name || res.State != provisioning.StateMade || res.Identity == "" {
		return false, err
	}
	if _, exists, err := e.Identity(ctx, name); err != nil || exists {
		return false, err
	}
	trash := provisioning.TrashName(res)
	if id, there, err := e.Identity(ctx, trash); err != nil || !there || id != res.Identity {
		return false, err
	}
	stmts, err := offlineSQL(trash)
	if err != nil {
		return false, err
	}
	if err := e.execGuarded(ctx, guarded(stmts), trash, res.Identity); err != nil {
		return false, fmt.Errorf("move database %q to trash: %w", name, unwrapPermanent(err))
	}
	return true, e.recordTrash(ctx, name, trash, owner, res.Identity, retention, generation)
}

func (e *Engine) recordTrash(ctx context.Context, name, trash string, owner provisioning.Owner, identity string, retention time.Duration, generation int) error {
	r, err := e.db.ExecContext(ctx, trashReservationSQL, name, owner.Tenant, owner.InstanceID, identity, trash, int64(retention/time.Second), owner.Line.String(), generation)
	if err != nil {
		return fmt.Errorf("record %q in trash as %q: %w", name, trash, classify(err))
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: the reservation of %q for %s is gone or records another database; it is in trash as %q without a record", provisioning.ErrConflict, name, owner, trash)
	}
	return nil
}

// unwrapPermanent is err as a backoff made it permanent, classified.
func unwrapPermanent(err error) error {
	var p *backoff.PermanentError
	if errors.As(err, &p) {
		err = p.Err
	}
	if errors.Is(err, provisioning.ErrConflict) {
		return err
	}
	return classify(err)
}

func scanTrashed(row interface{ Scan(...any) error }, t *provisioning.Trashed, more ...any) error {
	return row.Scan(append([]any{&t.Name, &t.Original, &t.Owner.Tenant, &t.Owner.InstanceID, &t.Owner.Line, &t.Identity, &t.DeletedAt, &t.PurgeAt, &t.Generation}, more...)...)
}

// Trash implements provisioning.Trasher.
func (e *Engine) Trash(ctx context.Context) ([]provisioning.Trashed, error) {
	if e.noReservations {
		return nil, nil
	}
	rows, err := e.db.QueryContext(ctx, trashListSQL)
	if err != nil {
		return nil, fmt.Errorf("list the trash: %w", classify(err))
	}
	defer rows.Close()
	var out []provisioning.Trashed
	for rows.Next() {
		var t provisioning.Trashed
		if err := scanTrashed(rows, &t, &t.Bytes); err != nil {
			return nil, fmt.Errorf("list the trash: %w", classify(err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the trash: %w", classify(err))
	}
	return out, nil
}

// PurgeDue implements provisioning.Trasher, as the PostgreSQL engine's.
func (e *Engine) PurgeDue(ctx context.Context) ([]provisioning.Purged, error) {
	if e.noReservations {
		return nil, nil
	}
	var out []provisioning.Purged
	skip := "/"
	for {
		p, found, err := e.purgeOne(ctx, takeDueSQL, skip)
		if err != nil || !found {
			return out, err
		}
		out = append(out, p)
		if p.Err != nil {
			skip += p.Name + "/"
		}
	}
}

// Purge implements provisioning.Trasher.
func (e *Engine) Purge(ctx context.Context, trashName string) (provisioning.Purged, error) {
	p, found, err := e.purgeOne(ctx, takeNamedSQL, trashName)
	switch {
	case err != nil:
		return p, err
	case !found:
		return p, fmt.Errorf("%w: %q is not in trash, or another replica is purging it now", provisioning.ErrConflict, trashName)
	}
	return p, p.Err
}

// purgeOne takes one record with take (arg as @p1) in a transaction held
// while its database is dropped, by identity, and the record deleted.
func (e *Engine) purgeOne(ctx context.Context, take string, arg any) (provisioning.Purged, bool, error) {
	var p provisioning.Purged
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return p, false, fmt.Errorf("purge the trash: %w", classify(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	err = scanTrashed(tx.QueryRowContext(ctx, take, arg), &p.Trashed)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("purge the trash: %w", classify(err))
	}
	p.Dropped, err = e.dropTrashed(ctx, p.Trashed)
	if errors.Is(err, provisioning.ErrConflict) {
		p.Err = err
		return p, true, nil
	}
	if err != nil {
		return p, false, err
	}
	if _, err := tx.ExecContext(ctx, forgetTrashSQL, p.Name); err != nil {
		return p, false, fmt.Errorf("forget the purged %q: %w", p.Name, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return p, false, fmt.Errorf("forget the purged %q: %w", p.Name, classify(err))
	}
	return p, true, nil
}

// dropTrashed drops a trashed database in a batch whose guard checks its
// identity; one already gone is not dropped again.
func (e *Engine) dropTrashed(ctx context.Context, t provisioning.Trashed) (bool, error) {
	if !strings.HasPrefix(t.Name, provisioning.TrashPrefix) || t.Identity == "" {
		return false, fmt.Errorf("%w: %q is not a trash name with a recorded database", provisioning.ErrConflict, t.Name)
	}
	current, exists, err := e.Identity(ctx, t.Name)
	switch {
	case err != nil || !exists:
		return false, err
	case current != t.Identity:
		return false, fmt.Errorf("%w: the database under the trash name %q is not the one instancemgr moved there from %q (%s, instancemgr moved %s); it is left alone", provisioning.ErrConflict, t.Name, t.Original, current, t.Identity)
	}
	stmts, err := purgeSQL(t.Name)
	if err != nil {
		return false, err
	}
	if err := e.execGuarded(ctx, guarded(stmts), t.Name, t.Identity); err != nil {
		return false, fmt.Errorf("purge %q: %w", t.Name, unwrapPermanent(err))
	}
	return true, nil
}

var _ provisioning.Trasher = (*Engine)(nil)
