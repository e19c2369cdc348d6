package consumer

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/provisioning"
)

// TrashServer is one database server's trash, named as metrics name it.
type TrashServer struct {
	Name  string
	Trash provisioning.Trasher
}

// Purger drops the deleted databases whose retention has passed
// (provisioning.deleteRetention). Every replica runs one: each due
// database is dropped by whichever gets there first, once (the engine's
// PurgeDue), so replicas need no leader, and one replica down delays
// nothing. Each pass also measures what trash holds.
type Purger struct {
	// Servers are the servers to purge, every configured tenant's.
	Servers func(ctx context.Context) ([]TrashServer, error)
	// Every is how long a pass waits for the next.
	Every time.Duration
	// AlertBytes is provisioning.trashAlertBytes, exported beside the
	// sizes for the alert to compare with (0: no alert).
	AlertBytes int64
	Log        *slog.Logger
	Metrics    *TrashMetrics
}

// TrashMetrics are what a replica's purger exports.
type TrashMetrics struct {
	Bytes      *prometheus.GaugeVec
	AlertBytes *prometheus.GaugeVec
	Purged     *prometheus.CounterVec
}

// NewTrashMetrics registers the trash metrics with reg.
func NewTrashMetrics(reg prometheus.Registerer) *TrashMetrics {
	m := &TrashMetrics{
		Bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "instancemgr_trash_bytes",
			Help: "Bytes held by deleted databases kept in trash on each server (provisioning.deleteRetention), as of this replica's last purge pass.",
		}, []string{"server"}),
		AlertBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "instancemgr_trash_alert_bytes",
			Help: "provisioning.trashAlertBytes for each server: the size of trash past which InstancemgrTrashLarge fires (0: never).",
		}, []string{"server"}),
		Purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "instancemgr_trash_purged_total",
			Help: "Trashed databases this replica looked at when their retention had passed: dropped, or left because the database under the trash name is not the one instancemgr moved there (conflict).",
		}, []string{"server", "result"}),
	}
	reg.MustRegister(m.Bytes, m.AlertBytes, m.Purged)
	return m
}

// Run purges every Every until ctx ends.
func (p *Purger) Run(ctx context.Context) error {
	t := time.NewTicker(p.Every)
	defer t.Stop()
	for {
		p.Pass(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Pass purges each server's due trash once and measures what is left. A
// server that fails is logged and tried again next pass.
func (p *Purger) Pass(ctx context.Context) {
	servers, err := p.Servers(ctx)
	if err != nil {
		p.Log.Warn("trash: could not open the servers; purging waits for the next pass", "err", err)
	}
	for _, s := range servers {
		purged, err := s.Trash.PurgeDue(ctx)
		for _, d := range purged {
			log := p.Log.With("server", s.Name, "database", d.Name, "was", d.Original, "tenant", d.Owner.Tenant, "instance_id", d.Owner.InstanceID)
			switch {
			case d.Err != nil:
				p.Metrics.Purged.WithLabelValues(s.Name, "conflict").Inc()
				log.Error("trash: not purged; the database under the trash name is not the one instancemgr moved there, so it is left alone", "err", d.Err)
			case d.Dropped:
				p.Metrics.Purged.WithLabelValues(s.Name, "dropped").Inc()
				log.Info("trash: purged after its retention", "deleted_at", d.DeletedAt)
			default:
				log.Info("trash: already gone; its record is removed")
			}
		}
		if err != nil {
			p.Log.Warn("trash: purge failed; tried again next pass", "server", s.Name, "err", err)
		}
		p.measure(ctx, s)
	}
}

func (p *Purger) measure(ctx context.Context, s TrashServer) {
	p.Metrics.AlertBytes.WithLabelValues(s.Name).Set(float64(p.AlertBytes))
	for _, r := range []string{"dropped", "conflict"} {
		p.Metrics.Purged.WithLabelValues(s.Name, r) // from 0, for increase()
	}
	held, err := s.Trash.Trash(ctx)
	if err != nil {
		p.Log.Warn("trash: could not measure", "server", s.Name, "err", err)
		return
	}
	var bytes int64
	for _, t := range held {
		bytes += t.Bytes
	}
	p.Metrics.Bytes.WithLabelValues(s.Name).Set(float64(bytes))
}
