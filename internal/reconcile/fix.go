package reconcile

import (
	"context"
	"fmt"
)

// Fix resolves the differences marked Fixable and marks those it resolved
// Fixed; the others are left as they are.
//
// Only one kind is fixable: a reservation still in state reserved, for a
// request that is not pending, whose database does not exist. Nothing was
// ever made under it, so releasing it cannot lose data; it only lets the
// name be reserved again. The release re-checks, in the one statement that
// deletes, that the reservation is still merely reserved and still this
// request's and that no database of the name (in any letter case) exists,
// and the request's status is read again just before, so a request that
// became pending since keeps its name.
//
// Nothing else is safe to do unattended, so nothing else is done:
//   - orphan databases: dropping one loses its data, and it may be wanted;
//   - foreign databases, and names reserved but made by someone else: not
//     the system's (the ownership rule); renaming or adopting one is an
//     operator's decision;
//   - ledger databases not reserved: reserving one as made is adopting it;
//   - missing databases: only a backup brings one back, and unregistering
//     it would take away a registration someone may still rely on;
//   - missing dbo rows: writing one needs the instance's connection string
//     and API client, and with the Admin API registering it would be a
//     second registration;
//   - reservations marked making or made whose database is gone: the
//     database may have been renamed by hand, and the reservation is then
//     the only record that the system made it;
//   - dead and stuck requests: a replay repeats the failure until its
//     cause is fixed, which only a person can judge.
//
// stillPending reads the request's Admin API status again. release is the
// tenant's server's provisioning.Inventory.ReleaseUnused.
func Fix(ctx context.Context, diffs []Difference, stillPending func(ctx context.Context, tenant string, id int) (bool, error), release func(ctx context.Context, d Difference) (bool, error)) error {
	for i := range diffs {
		d := &diffs[i]
		if !d.Fixable || d.Fixed {
			continue
		}
		busy, err := stillPending(ctx, d.Tenant, d.InstanceID)
		if err != nil {
			return fmt.Errorf("fix %s of tenant %q instance %d: %w", d.Kind, d.Tenant, d.InstanceID, err)
		}
		if busy {
			d.Detail += " (not fixed: the request became pending)"
			continue
		}
		released, err := release(ctx, *d)
		if err != nil {
			return fmt.Errorf("fix %s of tenant %q instance %d: %w", d.Kind, d.Tenant, d.InstanceID, err)
		}
		if released {
			d.Fixed, d.Command = true, ""
		} else {
			d.Detail += " (not fixed: it changed since it was read)"
		}
	}
	return nil
}
