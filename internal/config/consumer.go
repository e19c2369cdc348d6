package config

import "github.com/edfi-tools/instancemgr/consumer"

// Consumer configures each consumer replica.
type Consumer struct {
	// Concurrency is how many jobs a replica runs at once.
	Concurrency int `yaml:"concurrency"`
	// CopiesPerServer is how many of a replica's jobs may go to one server
	// at once; default: its even share (Config.CopiesPerServer).
	CopiesPerServer int `yaml:"copiesPerServer"`
	// ShutdownGrace is how long a stopping replica lets its jobs finish
	// before it releases them.
	ShutdownGrace Duration `yaml:"shutdownGrace"`
	// Heartbeat is how often a running job renews its lock; default ackWait/3.
	Heartbeat Duration `yaml:"heartbeat"`
	// RetryDelay is the nak delay after a first failed attempt; it doubles
	// with each attempt up to MaxRetryDelay.
	RetryDelay    Duration `yaml:"retryDelay"`
	MaxRetryDelay Duration `yaml:"maxRetryDelay"`
}

// withDefaults fills the blanks with the consumer's own defaults; the
// heartbeat follows the lock, nats.ackWait.
func (c Consumer) withDefaults(ackWait Duration) Consumer {
	if c.Concurrency == 0 {
		c.Concurrency = consumer.DefaultConcurrency
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = Duration(consumer.DefaultShutdownGrace)
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = Duration(consumer.DefaultRetryDelay)
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = Duration(consumer.DefaultMaxRetryDelay)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = Duration(consumer.DefaultHeartbeat(ackWait.D()))
	}
	return c
}

// check reports what is wrong in consumer; the heartbeat must come within
// the lock, nats.ackWait.
func (c Consumer) check(ackWait Duration) []error {
	var p problems
	if c.Concurrency < 1 || c.Concurrency > 256 {
		p.add("consumer.concurrency", "must be between 1 and 256")
	}
	if c.CopiesPerServer < 0 || c.CopiesPerServer > c.Concurrency {
		p.add("consumer.copiesPerServer", "must be between 1 and consumer.concurrency (%d), or unset", c.Concurrency)
	}
	if c.ShutdownGrace <= 0 {
		p.add("consumer.shutdownGrace", "must be positive")
	}
	if c.Heartbeat <= 0 || c.Heartbeat >= ackWait {
		p.add("consumer.heartbeat", "must be positive and shorter than nats.ackWait (%s)", ackWait.D())
	}
	if c.RetryDelay <= 0 || c.MaxRetryDelay < c.RetryDelay {
		p.add("consumer.retryDelay", "must be positive and at most consumer.maxRetryDelay")
	}
	return p
}
