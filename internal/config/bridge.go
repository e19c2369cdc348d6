package config

import (
	"time"

	"github.com/edfi-tools/instancemgr/bridge"
)

// Bridge configures the poller.
type Bridge struct {
	// PollInterval is from the start of one poll to the start of the next;
	// a poll that published polls again at once.
	PollInterval Duration `yaml:"pollInterval"`
	// Concurrency is how many tenants a poll reads and publishes for at
	// once.
	Concurrency int `yaml:"concurrency"`
}

// withDefaults fills the blanks with the bridge's own defaults.
func (b Bridge) withDefaults() Bridge {
	if b.PollInterval == 0 {
		b.PollInterval = Duration(bridge.DefaultInterval)
	}
	if b.Concurrency == 0 {
		b.Concurrency = bridge.DefaultConcurrency
	}
	return b
}

// check reports what is wrong in bridge.
func (b Bridge) check() []error {
	var p problems
	if b.PollInterval < Duration(100*time.Millisecond) {
		p.add("bridge.pollInterval", "must be at least 100ms")
	}
	if b.Concurrency < 1 || b.Concurrency > 256 {
		p.add("bridge.concurrency", "must be between 1 and 256")
	}
	return p
}
