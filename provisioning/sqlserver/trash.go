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
// delivery that died between the two finishes the move (finishTrash). A
// restore has the same gap the other way (Restore).

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

// restoreTrashSQL puts a trashed database back under name, open again.
// It is renamed online, in single-user mode as a rename is, and only when
// no database holds name: checked in the batch (errNameInUse, @p3 is name)
// before the trash is brought online, so a refused restore leaves it as
// it was.
func restoreTrashSQL(trash, name string) ([]string, error) {
	q, err := quoteNames(trash, name)
	if err != nil {
		return nil, err
	}
	return []string{
		"IF DB_ID(@p3) IS NOT NULL THROW 51003, N'instancemgr: a database holds the name to restore to', 1",
		"ALTER DATABASE " + q[0] + " SET ONLINE",
		"ALTER DATABASE " + q[0] + " SET SINGLE_USER WITH ROLLBACK IMMEDIATE",
		"ALTER DATABASE " + q[0] + " MODIFY NAME = " + q[1],
		"ALTER DATABASE " + q[1] + " SET MULTI_USER",
	}, nil
}

// reopenSQL opens a database a restore renamed back but may have left in
// single-user mode (it died in the batch).
func reopenSQL(name string) ([]string, error) {
	q, err := quoteName(name)
	if err != nil {
		return nil, err
	}
	return []string{"ALTER DATABASE " + q + " SET MULTI_USER"}, nil
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
	// keepGenerationSQL raises the generation of owner's trashed record
	// of @p1 to @p5: a restore goes on from the last delete that settled.
	keepGenerationSQL = `UPDATE instancemgr.reservations SET generation = @p5, updated_at = SYSUTCDATETIME()
WHERE state = 'trashed' AND original_name = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p4 AND COALESCE(generation, 0) < @p5`
	// nameReservedSQL counts the reservations of @p1, ignoring case as
	// the key does, and holds the key range until the restore commits
	// (HOLDLOCK): no request reserves the name while it is restored to.
	nameReservedSQL = `SELECT COUNT(*) FROM instancemgr.reservations WITH (UPDLOCK, HOLDLOCK) WHERE database_name = @p1`
	// restoreReservationSQL moves the trashed record of @p1 (identity
	// @p3) to the name @p2, made, as it was before the delete.
	restoreReservationSQL = `UPDATE instancemgr.reservations
SET database_name = @p2, state = 'made', original_name = NULL, deleted_at = NULL, purge_at = NULL, generation = COALESCE(generation, 0) + 1, updated_at = SYSUTCDATETIME()
WHERE database_name = @p1 AND state = 'trashed' AND database_identity = @p3`
	// restoredAtSQL is the generation a restore gave the made reservation
	// of @p1 (identity @p2): 0 for one no restore made.
	restoredAtSQL = `SELECT COALESCE(generation, 0) FROM instancemgr.reservations WHERE database_name = @p1 AND state = 'made' AND database_identity = @p2`
	// nameOfSQL is the name a database of identity @p1 has now.
	nameOfSQL = `SELECT name FROM sys.databases WHERE ` + identityExpr + ` = @p1`
)

// TrashDatabase implements provisioning.Trasher.
func (e *Engine) TrashDatabase(ctx context.Context, name string, owner provisioning.Owner, retention time.Duration, generation int) (bool, error) {
	if err := e.Guard.CheckDestructive(name); err != nil {
		return false, fmt.Errorf("move database %q to trash: %w", name, err)
	}
	if moved, err := e.finishTrash(ctx, name, owner, retention, generation); err != nil || moved {
		return moved, err
	}
	moved, err := provisioning.Drop(ctx, e, name, owner, func(ctx context.Context, identity string) error {
		// A restore after this delete's generation gave the reservation a
		// later one: this delete is stale. Checked before the batch (a
		// restore between the check and the batch is the window left).
		var restoredAt int
		if err := e.db.QueryRowContext(ctx, restoredAtSQL, name, identity).Scan(&restoredAt); err != nil {
			return fmt.Errorf("move database %q to trash: read its reservation: %w", name, classify(err))
		}
		if restoredAt > generation {
			return fmt.Errorf("%w: %q was restored at generation %d, after this delete's (%d); nothing is moved", provisioning.ErrStale, name, restoredAt, generation)
		}
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
	if err != nil || moved {
		return moved, err
	}
	// Moved by an earlier delivery, or an earlier delete asked again after
	// it failed at the Admin API: the record keeps the later generation.
	if _, err := e.db.ExecContext(ctx, keepGenerationSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String(), generation); err != nil {
		return false, fmt.Errorf("record the generation of %q in trash: %w", name, classify(err))
	}
	return false, nil
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
	case err != nil:
		return false, err
	case !exists:
		// Gone, or renamed away by a restore that died before it moved
		// the record: that one is not dropped, nor its record forgotten.
		now, found, err := e.nameOf(ctx, t.Identity)
		if err != nil || !found {
			return false, err
		}
		return false, fmt.Errorf("%w: the database instancemgr moved to trash as %q (from %q) is now %q, a restore that did not finish (run it again) or a rename by hand; it is not purged and its record stays", provisioning.ErrConflict, t.Name, t.Original, now)
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

// nameOf is the name the database of identity has now, if it exists.
func (e *Engine) nameOf(ctx context.Context, identity string) (string, bool, error) {
	var name string
	err := e.db.QueryRowContext(ctx, nameOfSQL, identity).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look for database %s: %w", identity, classify(err))
	}
	return name, true, nil
}

// Restore implements provisioning.Restorer. A transaction takes the
// trashed record (as Purge takes it, so a purge under way makes this a
// conflict) and holds name's key in the reservations, refused if a
// reservation has it; the database is renamed back in a batch guarded by
// its recorded identity, and the record moves to name, made, when the
// transaction commits.
//
// The rename is outside the transaction: a restore that died after the
// batch leaves the record trashed and the database under name. Run again
// with the same names it finishes (the database of the recorded identity
// is under name and none under the trash name: only the record moves). A
// purge meanwhile finds the database gone from its trash name but alive
// under another and leaves both alone (dropTrashed). What is left: a
// restore that died inside the batch, after SET ONLINE and before the
// rename, leaves the trash online under its trash name (single-user, or
// open if it died before that) until a restore or the purge takes it.
func (e *Engine) Restore(ctx context.Context, trashName, name string) (provisioning.Trashed, error) {
	var t provisioning.Trashed
	fail := func(err error) (provisioning.Trashed, error) {
		return t, fmt.Errorf("restore %q as %q: %w", trashName, name, err)
	}
	if err := e.Guard.CheckDestructive(name); err != nil {
		return fail(err)
	}
	if !strings.HasPrefix(trashName, provisioning.TrashPrefix) || strings.HasPrefix(name, provisioning.SystemPrefix) {
		return fail(fmt.Errorf("%w: %q is not a trash name, or %q is the system's", provisioning.ErrConflict, trashName, name))
	}
	stmts, err := restoreTrashSQL(trashName, name)
	if err != nil {
		return fail(err)
	}
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return fail(classify(err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	err = scanTrashed(tx.QueryRowContext(ctx, takeNamedSQL, trashName), &t)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fail(fmt.Errorf("%w: %q is not in trash, or another replica is purging it now", provisioning.ErrConflict, trashName))
	case err != nil:
		return fail(classify(err))
	case t.Identity == "":
		return fail(fmt.Errorf("%w: the record of %q has no database identity", provisioning.ErrConflict, trashName))
	}
	var reserved int
	if err := tx.QueryRowContext(ctx, nameReservedSQL, name).Scan(&reserved); err != nil {
		return fail(classify(err))
	}
	if reserved > 0 {
		return fail(fmt.Errorf("%w: the name is in use (a reservation holds it)", provisioning.ErrConflict))
	}
	done, err := e.restoredBefore(ctx, trashName, name, t.Identity)
	if err != nil {
		return fail(err)
	}
	if !done {
		if err := e.restoreBatch(ctx, guarded(stmts), trashName, name, t.Identity); err != nil {
			return fail(err)
		}
	}
	r, err := tx.ExecContext(ctx, restoreReservationSQL, trashName, name, t.Identity)
	if err == nil {
		if n, _ := r.RowsAffected(); n != 1 {
			err = fmt.Errorf("%w: the record of %q changed while it was taken", provisioning.ErrConflict, trashName)
		}
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		// The database is under name; a second run moves the record.
		return fail(fmt.Errorf("record the restore (the database is under its name; run the restore again to finish): %w", unwrapPermanent(err)))
	}
	return t, nil
}

// restoredBefore reports whether an earlier restore of trash to name
// renamed the database back and died before moving its record: the
// database of identity is under name and nothing is under trash. It opens
// the database again, as that restore may have died before doing so. A
// database of another identity under name is a conflict.
func (e *Engine) restoredBefore(ctx context.Context, trash, name, identity string) (bool, error) {
	current, exists, err := e.Identity(ctx, name)
	switch {
	case err != nil:
		return false, err
	case !exists:
		return false, nil
	case current != identity:
		return false, fmt.Errorf("%w: the name is in use (a database holds it)", provisioning.ErrConflict)
	}
	if _, there, err := e.Identity(ctx, trash); err != nil || there {
		return false, err
	}
	stmts, err := reopenSQL(name)
	if err != nil {
		return false, err
	}
	if err := e.execGuarded(ctx, guarded(stmts), name, identity); err != nil {
		return false, unwrapPermanent(err)
	}
	return true, nil
}

// restoreBatch runs restoreTrashSQL's batch on trash, guarded by its
// identity, once. A batch that failed after its checks takes the trash
// offline again if it is still under the trash name, so a failed restore
// does not leave it open (in single-user mode maybe, which neither a
// purge nor a restore minds).
func (e *Engine) restoreBatch(ctx context.Context, batch, trash, name, identity string) error {
	_, err := e.db.ExecContext(ctx, batch, trash, identity, name)
	switch {
	case err == nil:
		return nil
	case hasNumber(err, errNotMade):
		if now, found, lerr := e.nameOf(ctx, identity); lerr == nil && found {
			return fmt.Errorf("%w: the database under the trash name is not the one instancemgr moved there, which is %q now; nothing is restored", provisioning.ErrConflict, now)
		}
		return fmt.Errorf("%w: the database under the trash name is not the one instancemgr moved there, or it is gone; nothing is restored", provisioning.ErrConflict)
	case hasNumber(err, errNameInUse):
		return fmt.Errorf("%w: the name is in use (a database holds it); nothing is restored", provisioning.ErrConflict)
	}
	if closeIt, qerr := offlineSQL(trash); qerr == nil {
		_ = e.execGuarded(context.WithoutCancel(ctx), guarded(closeIt), trash, identity)
	}
	if hasNumber(err, errDatabaseExists) {
		return fmt.Errorf("%w: the name is in use (a database took it during the restore); it is left in trash", provisioning.ErrConflict)
	}
	return fmt.Errorf("rename it back: %w", classify(err))
}

var (
	_ provisioning.Trasher  = (*Engine)(nil)
	_ provisioning.Restorer = (*Engine)(nil)
)
