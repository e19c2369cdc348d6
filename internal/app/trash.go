package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// PurgeEvery is how often each replica purges due trash: a retention is
// days long, so a minute late is nothing, and a pass that finds nothing
// due is one indexed query a server.
const PurgeEvery = time.Minute

// NewPurger builds a consumer replica's purge loop over the trash of every
// configured tenant entry's server.
func NewPurger(cfg *config.Config, placements *Placements, log *slog.Logger, reg prometheus.Registerer) *consumer.Purger {
	return &consumer.Purger{Servers: placements.TrashServers, Every: PurgeEvery, AlertBytes: int64(cfg.Provisioning.TrashAlertBytes),
		Log: log, Metrics: consumer.NewTrashMetrics(reg)}
}

// TrashServers opens every tenant entry's placement and returns its
// server's trash, once a server however many entries share it.
func (t *Placements) TrashServers(ctx context.Context) ([]consumer.TrashServer, error) {
	var out []consumer.TrashServer
	var errs []error
	seen := map[string]bool{}
	for _, entry := range slices.Sorted(maps.Keys(t.cfg.Tenants)) {
		servers, err := t.cfg.Servers(entry)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := servers.Server()
		if seen[name] {
			continue
		}
		p, err := t.Placement(ctx, entry)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		trash, ok := p.Engine.(provisioning.Trasher)
		if !ok {
			errs = append(errs, fmt.Errorf("tenants.%s: the engine keeps no trash", entry))
			continue
		}
		seen[name] = true
		out = append(out, consumer.TrashServer{Name: name, Trash: trash})
	}
	return out, errors.Join(errs...)
}

// InTrash is a trashed database with the server it is on.
type InTrash struct {
	Server string
	provisioning.Trashed
}

// TrashList lists the trash of every configured server.
func TrashList(ctx context.Context, cfg *config.Config, log *slog.Logger) ([]InTrash, error) {
	placements := NewPlacements(cfg, log)
	defer placements.Close()
	servers, err := placements.TrashServers(ctx)
	var out []InTrash
	for _, s := range servers {
		held, lerr := s.Trash.Trash(ctx)
		err = errors.Join(err, lerr)
		for _, t := range held {
			out = append(out, InTrash{Server: s.Name, Trashed: t})
		}
	}
	return out, err
}

// TrashPurge drops now, by identity, what trash holds of one instance of
// the deployment's line (more than one database when it was made and
// deleted again).
func TrashPurge(ctx context.Context, cfg *config.Config, tenant string, id int, log *slog.Logger) ([]provisioning.Purged, error) {
	placements := NewPlacements(cfg, log)
	defer placements.Close()
	p, err := placements.Placement(ctx, tenant)
	if err != nil {
		return nil, err
	}
	trash, ok := p.Engine.(provisioning.Trasher)
	if !ok {
		return nil, fmt.Errorf("tenant %q: the engine keeps no trash", tenant)
	}
	held, err := trash.Trash(ctx)
	if err != nil {
		return nil, err
	}
	owner := provisioning.Owner{Tenant: tenant, InstanceID: id, Line: cfg.Line()}
	var out []provisioning.Purged
	for _, t := range held {
		if t.Owner != owner {
			continue
		}
		purged, err := trash.Purge(ctx, t.Name)
		if err != nil {
			return out, fmt.Errorf("purge %q (was %q): %w", t.Name, t.Original, err)
		}
		out = append(out, purged)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trash holds nothing of %s", owner)
	}
	return out, nil
}

// TrashRestore puts instance id of tenant back from trash, under its own
// name or, with as, under that instance name: its database renamed back
// by identity and registered again the way the deployment's Admin API
// line registers an existing database (Admin API 2.2.2's completed; the
// manage row Created again), so that the Admin Console and the Admin App
// show it as before the delete.
func TrashRestore(ctx context.Context, cfg *config.Config, tenant string, id int, as string, log *slog.Logger) (consumer.Restored, error) {
	placements := NewPlacements(cfg, log)
	defer placements.Close()
	// The manage line's requests are rows of EdFi_Admin: like its
	// consumer, a restore there has no Admin API client to build, and its
	// configuration need not name one.
	var client *adminapi.Client
	if !cfg.Manage() {
		var err error
		if client, err = AdminClient(cfg, log); err != nil {
			return consumer.Restored{}, err
		}
	}
	ops := &consumer.Handlers{API: ConsumerAPI(cfg, client, placements, log), Placements: placements, Naming: cfg.Naming(), Log: log}
	return ops.Restore(ctx, cfg.Line(), tenant, id, as)
}
