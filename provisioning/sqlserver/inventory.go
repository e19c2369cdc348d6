package sqlserver

import (
	"context"
	"fmt"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// The statements reconcile's reading runs, pinned by the unit tests.
const (
	tableExistsSQL   = `SELECT CAST(CASE WHEN OBJECT_ID(@p1, N'U') IS NULL THEN 0 ELSE 1 END AS bit)`
	identitiesSQL    = `SELECT name, ` + identityExpr + ` FROM sys.databases`
	reservationsSQL  = `SELECT database_name, tenant, instance_id, ` + ownerLine + `, state, COALESCE(database_identity, N''), updated_at FROM instancemgr.reservations ORDER BY database_name`
	releaseUnusedSQL = `DELETE FROM instancemgr.reservations
WHERE database_name COLLATE Latin1_General_BIN2 = @p1 AND tenant = @p2 AND instance_id = @p3 AND ` + ownerLine + ` = @p4 AND state = 'reserved'
  AND DB_ID(@p1) IS NULL`
)

var _ provisioning.Inventory = (*Engine)(nil)

// Identities implements provisioning.Inventory.
func (e *Engine) Identities(ctx context.Context) (map[string]string, error) {
	rows, err := e.db.QueryContext(ctx, identitiesSQL)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", classify(err))
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, id string
		if err := rows.Scan(&name, &id); err != nil {
			return nil, fmt.Errorf("list databases: %w", classify(err))
		}
		out[name] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list databases: %w", classify(err))
	}
	return out, nil
}

// Reservations implements provisioning.Inventory.
func (e *Engine) Reservations(ctx context.Context) ([]provisioning.Listed, error) {
	if e.noReservations {
		return nil, nil
	}
	rows, err := e.db.QueryContext(ctx, reservationsSQL)
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", classify(err))
	}
	defer rows.Close()
	var out []provisioning.Listed
	for rows.Next() {
		var l provisioning.Listed
		var state string
		if err := rows.Scan(&l.Database, &l.Owner.Tenant, &l.Owner.InstanceID, &l.Owner.Line, &state, &l.Identity, &l.Updated); err != nil {
			return nil, fmt.Errorf("list reservations: %w", classify(err))
		}
		l.State = provisioning.ReservationState(state)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list reservations: %w", classify(err))
	}
	return out, nil
}

// ReleaseUnused implements provisioning.Inventory. DB_ID ignores letter
// case as the server's collation does, so a database whose name differs
// only in case also keeps the reservation.
func (e *Engine) ReleaseUnused(ctx context.Context, name string, owner provisioning.Owner) (bool, error) {
	if e.noReservations {
		return false, nil
	}
	r, err := e.db.ExecContext(ctx, releaseUnusedSQL, name, owner.Tenant, owner.InstanceID, owner.Line.String())
	if err != nil {
		return false, fmt.Errorf("release database name %q: %w", name, classify(err))
	}
	n, err := r.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("release database name %q: %w", name, classify(err))
	}
	return n == 1, nil
}
