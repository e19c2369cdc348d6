package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
)

// Each phase counts only its own time: the Admin API call made inside the
// registration transaction is adminapi time, not registration time too.
func TestPhasesAreExclusive(t *testing.T) {
	now := time.Unix(0, 0)
	clock := &phaseClock{spent: map[Phase]time.Duration{}, now: func() time.Time { return now }}
	tick := func(d time.Duration) { now = now.Add(d) }

	stopDB := clock.start(PhaseDatabase)
	tick(3 * time.Second)
	stopDB()
	stopReg := clock.start(PhaseRegistration)
	tick(100 * time.Millisecond)
	stopAPI := clock.start(PhaseAdminAPI)
	tick(400 * time.Millisecond)
	stopAPI()
	tick(50 * time.Millisecond)
	stopReg()
	stopAPI2 := clock.start(PhaseAdminAPI)
	tick(20 * time.Millisecond)
	stopAPI2()

	want := map[Phase]time.Duration{PhaseDatabase: 3 * time.Second, PhaseRegistration: 150 * time.Millisecond, PhaseAdminAPI: 420 * time.Millisecond}
	for p, d := range want {
		if clock.spent[p] != d {
			t.Errorf("%s: %s, want %s", p, clock.spent[p], d)
		}
	}
	if len(clock.spent) != len(want) {
		t.Errorf("phases %v", clock.spent)
	}
}

// noAPI is an Admin API whose instance lookups answer at once.
type noAPI struct{ AdminAPI }

func (noAPI) Instance(context.Context, string, int) (adminapi.WorkerInstance, error) {
	return adminapi.WorkerInstance{}, nil
}

// samples is how many times a histogram series was observed.
func samples(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// The phases middleware gives each delivery a clock that the handler's
// Admin API, server and EdFi_Admin run on, and observes once per delivery
// each phase the delivery spent time in. A handler outside it (no metrics)
// is not timed.
func TestPhasesMiddlewareTimesWhatTheHandlerWaitsOn(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	placement := &Placement{Engine: provisioningtest.NewMemoryEngine(&provisioning.Guard{}, "T"), Registry: provisioningtest.NewMemoryRegistry()}
	ops := &Handlers{API: noAPI{}}
	var timed []bool
	handler := HandlerFunc(func(ctx context.Context, d Delivery) error {
		o := ops.at(d)
		timed = append(timed, d.phases != nil)
		if _, err := o.api().Instance(ctx, "default", 1); err != nil {
			return err
		}
		_, err := placement.at(d).Engine.DatabaseExists(ctx, "EdFi_Ods_X")
		return err
	})
	d := Delivery{Job: jobs.NewRename("default", 1, "X", "EdFi_Ods_Y", 0)}
	for range 2 {
		if err := wrapIn(phases(m), handler).Handle(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[Phase]uint64{PhaseAdminAPI: 2, PhaseDatabase: 2, PhaseRegistration: 0} {
		if n := samples(t, m.Phases.WithLabelValues("rename", string(p))); n != want {
			t.Errorf("%s observed %d times, want %d", p, n, want)
		}
	}
	if err := wrapIn(phases(nil), handler).Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false}; len(timed) != 3 || timed[0] != want[0] || timed[1] != want[1] || timed[2] != want[2] {
		t.Errorf("timed deliveries %v, want %v", timed, want)
	}
	if placement.at(Delivery{}) != placement || ops.at(Delivery{}).api() != ops.API {
		t.Error("a delivery outside the middleware got wrapped dependencies")
	}
}
