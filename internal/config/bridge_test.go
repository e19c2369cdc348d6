package config

import (
	"testing"

	"github.com/edfi-tools/instancemgr/bridge"
)

// The bridge's blanks take the bridge's own defaults; a poll faster than
// 100ms or a concurrency outside 1-256 is refused with its key.
func TestBridgeSection(t *testing.T) {
	c, err := Load(write(t, valid), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge.PollInterval.D() != bridge.DefaultInterval || c.Bridge.Concurrency != bridge.DefaultConcurrency {
		t.Errorf("bridge defaults %+v, want the bridge's", c.Bridge)
	}
	testLoad(t, valid, []loadCase{
		{"at the bounds", "bridge: {pollInterval: 100ms, concurrency: 256}", ""},
		{"one tenant at a time", "bridge: {concurrency: 1}", ""},
		{"poll too fast", "bridge: {pollInterval: 99ms}", "bridge.pollInterval: must be at least 100ms"},
		{"negative concurrency", "bridge: {concurrency: -1}", "bridge.concurrency: must be between 1 and 256"},
		{"too many tenants at once", "bridge: {concurrency: 257}", "bridge.concurrency: must be between 1 and 256"},
	})
}
