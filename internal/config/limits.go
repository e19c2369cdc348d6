package config

import "github.com/edfi-tools/instancemgr/internal/limits"

// checkLimits reports a limit that is neither a number of instances or
// creates nor -1 (none); 0, the default, is filled in before.
func checkLimits(l limits.Limits) []error {
	var p problems
	for _, k := range []struct {
		key string
		n   int
	}{{"limits.instancesPerTenant", l.InstancesPerTenant}, {"limits.createsPerMinute", l.CreatesPerMinute}, {"limits.createsPerMinutePerClient", l.CreatesPerMinutePerClient}} {
		if k.n < -1 {
			p.add(k.key, "%d is neither a limit nor -1 (none)", k.n)
		}
	}
	return p
}
