package config

import (
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/consumer"
)

// A replica's blanks take the consumer's own defaults, the heartbeat a
// share of nats.ackWait; a heartbeat as long as the lock, or a retry delay
// above its maximum, is refused with its key.
func TestConsumerSection(t *testing.T) {
	c, err := Load(write(t, valid+"nats: {ackWait: 90s}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Consumer{
		Concurrency:   consumer.DefaultConcurrency,
		ShutdownGrace: Duration(consumer.DefaultShutdownGrace),
		Heartbeat:     Duration(consumer.DefaultHeartbeat(90 * time.Second)),
		RetryDelay:    Duration(consumer.DefaultRetryDelay),
		MaxRetryDelay: Duration(consumer.DefaultMaxRetryDelay),
	}
	if c.Consumer != want {
		t.Errorf("consumer defaults %+v, want %+v", c.Consumer, want)
	}
	testLoad(t, valid, []loadCase{
		{"set", "consumer: {concurrency: 256, shutdownGrace: 1s, heartbeat: 29s, retryDelay: 1m, maxRetryDelay: 1m}", ""},
		{"too many jobs at once", "consumer: {concurrency: 257}", "consumer.concurrency: must be between 1 and 256"},
		{"no grace", "consumer: {shutdownGrace: -1s}", "consumer.shutdownGrace: must be positive"},
		{"heartbeat as long as the lock", "consumer: {heartbeat: 30s}", "consumer.heartbeat: must be positive and shorter than nats.ackWait (30s)"},
		{"heartbeat of a longer lock", "nats: {ackWait: 2m}\nconsumer: {heartbeat: 30s}", ""},
		{"retry delay above its maximum", "consumer: {retryDelay: 5m}", "consumer.retryDelay: must be positive and at most consumer.maxRetryDelay"},
		{"negative retry delay", "consumer: {retryDelay: -1s}", "consumer.retryDelay"},
	})
}
