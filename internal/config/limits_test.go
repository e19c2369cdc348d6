package config

import (
	"testing"

	"github.com/edfi-tools/instancemgr/internal/limits"
)

// Unset limits take the limits package's defaults, -1 switches one off,
// and anything below is refused with its key.
func TestLimitsSection(t *testing.T) {
	c, err := Load(write(t, valid+"limits: {createsPerMinutePerClient: -1}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := limits.Limits{InstancesPerTenant: limits.DefaultInstancesPerTenant, CreatesPerMinute: limits.DefaultCreatesPerMinute, CreatesPerMinutePerClient: -1}
	if c.Limits != want {
		t.Errorf("limits %+v, want %+v", c.Limits, want)
	}
	testLoad(t, valid, []loadCase{
		{"none", "limits: {instancesPerTenant: -1, createsPerMinute: -1, createsPerMinutePerClient: -1}", ""},
		{"instances", "limits: {instancesPerTenant: -2}", "limits.instancesPerTenant: -2 is neither a limit nor -1 (none)"},
		{"creates", "limits: {createsPerMinute: -5}", "limits.createsPerMinute: -5 is neither"},
		{"creates per client", "limits: {createsPerMinutePerClient: -2}", "limits.createsPerMinutePerClient: -2 is neither"},
	})
}
