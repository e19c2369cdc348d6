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
		{"a share", "consumer: {concurrency: 8, copiesPerServer: 8}", ""},
		{"a share above the workers", "consumer: {copiesPerServer: 5}", "consumer.copiesPerServer: must be between 1 and consumer.concurrency (4)"},
	})
}

// Each server's share of a replica's workers is, by default, the workers
// divided among the servers the tenant entries name (entries that share a
// server count once), rounded up; a set value is kept.
func TestCopiesPerServer(t *testing.T) {
	entry := func(host string) TenantEntry {
		return TenantEntry{Master: "host=" + host + ";database=p", Admin: "host=" + host + ";database=a", ODS: "host=" + host + ";database={0}"}
	}
	for _, tc := range []struct {
		name        string
		hosts       []string
		concurrency int
		set         int
		want        int
	}{
		{"one server", []string{"a"}, 4, 0, 4},
		{"two entries, one server", []string{"a", "a"}, 4, 0, 4},
		{"two servers", []string{"a", "b"}, 4, 0, 2},
		{"three servers, rounded up", []string{"a", "b", "c"}, 4, 0, 2},
		{"more servers than workers", []string{"a", "b", "c", "d", "e"}, 4, 0, 1},
		{"set", []string{"a", "b"}, 4, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Consumer: Consumer{Concurrency: tc.concurrency, CopiesPerServer: tc.set}, Tenants: map[string]TenantEntry{}}
			for i, h := range tc.hosts {
				c.Tenants[string(rune('p'+i))] = entry(h)
			}
			if got := c.CopiesPerServer(); got != tc.want {
				t.Fatalf("CopiesPerServer() = %d, want %d", got, tc.want)
			}
		})
	}
}
