package consumer

import (
	"context"
	"testing"
	"time"
)

// Each phase counts only its own time: the Admin API call made inside the
// registration transaction is adminapi time, not registration time too.
func TestPhasesAreExclusive(t *testing.T) {
	ctx, clock := withPhaseClock(context.Background())
	now := time.Unix(0, 0)
	clock.now = func() time.Time { return now }
	tick := func(d time.Duration) { now = now.Add(d) }

	stopDB := startPhase(ctx, PhaseDatabase)
	tick(3 * time.Second)
	stopDB()
	stopReg := startPhase(ctx, PhaseRegistration)
	tick(100 * time.Millisecond)
	stopAPI := startPhase(ctx, PhaseAdminAPI)
	tick(400 * time.Millisecond)
	stopAPI()
	tick(50 * time.Millisecond)
	stopReg()
	stopAPI2 := startPhase(ctx, PhaseAdminAPI)
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
	// Without a clock (a call outside a delivery) nothing happens.
	startPhase(context.Background(), PhaseDatabase)()
}
