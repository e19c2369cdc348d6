package consumer

import (
	"context"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// TxCompleter is an Admin API line whose completions are rows of the
// tenant's EdFi_Admin itself (the newest line's manage rows): each is
// handed the registry's transaction, as River's JobCompleteTx(ctx, tx,
// job), so that the request's status commits or rolls back with the
// registration. Any other line (Admin API 2.2.2's HTTP) hears a
// completion by a call of its own, made while the transaction is open,
// and has no use for it.
type TxCompleter interface {
	CompletedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int, connectionString string) error
	DeletedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error
	// DeleteFailedTx gets a nil tx when there is no ledger entry to move
	// with it.
	DeleteFailedTx(ctx context.Context, tx provisioning.Tx, tenant string, id int) error
}

// inTx is the Admin API as a completion run in the registry's transaction
// tx calls it: a TxCompleter's completions write in tx, every other call
// is the API's own; all are timed as PhaseAdminAPI.
func (o *Handlers) inTx(tx provisioning.Tx) AdminAPI {
	api := o.API
	if c, ok := o.API.(TxCompleter); ok {
		api = txAPI{AdminAPI: o.API, c: c, tx: tx}
	}
	if o.d.phases == nil {
		return api
	}
	return timedAPI{api, o.d.phases}
}

// txAPI binds a TxCompleter's completions to one transaction.
type txAPI struct {
	AdminAPI
	c  TxCompleter
	tx provisioning.Tx
}

func (a txAPI) Completed(ctx context.Context, tenant string, id int, connectionString string) error {
	return a.c.CompletedTx(ctx, a.tx, tenant, id, connectionString)
}

func (a txAPI) Deleted(ctx context.Context, tenant string, id int) error {
	return a.c.DeletedTx(ctx, a.tx, tenant, id)
}

func (a txAPI) DeleteFailed(ctx context.Context, tenant string, id int) error {
	return a.c.DeleteFailedTx(ctx, a.tx, tenant, id)
}
