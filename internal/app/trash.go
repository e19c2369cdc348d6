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
		name := serverLabel(servers)
		if sc := servers.SQLServer; sc != nil {
			name = sc.Master.Server
		}
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
