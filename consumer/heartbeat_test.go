package consumer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// renewingMsg is a delivered message whose renewals the test holds.
type renewingMsg struct {
	jetstream.Msg // nil: only the methods below are used
	entered       chan struct{}
	release       chan struct{}
	running       atomic.Bool
	renewals      atomic.Int32
}

func (m *renewingMsg) Subject() string { return "instances.create.default.1" }

func (m *renewingMsg) InProgress() error {
	m.running.Store(true)
	defer m.running.Store(false)
	if m.renewals.Add(1) == 1 {
		close(m.entered)
		<-m.release
	}
	return nil
}

// Stopping the heartbeat waits for a renewal under way: once stop returns,
// no renewal is running, so none can follow the ack.
func TestHeartbeatStopWaitsForARenewalUnderWay(t *testing.T) {
	c := New(nil, nil, Options{Heartbeat: time.Millisecond})
	m := &renewingMsg{entered: make(chan struct{}), release: make(chan struct{})}
	stop := c.heartbeat(context.Background(), m, Delivery{Attempt: 1})
	<-m.entered
	runningAtStop := make(chan bool, 1)
	go func() {
		stop()
		runningAtStop <- m.running.Load()
	}()
	// stop must not return while the renewal is held. Holding it a while
	// gives a stop that does not wait the time to show it; a stop that
	// waits passes however long this is.
	select {
	case <-runningAtStop:
		t.Fatal("stop returned while a renewal was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(m.release)
	if <-runningAtStop {
		t.Fatal("stop returned while a renewal was still running")
	}
	if n := m.renewals.Load(); n != 1 {
		t.Fatalf("%d renewals after stop, want the one under way", n)
	}
}

// Renewals go on at the heartbeat interval, one after another, until
// stop.
func TestHeartbeatRenewsWhileTheJobRuns(t *testing.T) {
	c := New(nil, nil, Options{Heartbeat: time.Millisecond})
	m := &renewingMsg{entered: make(chan struct{}), release: make(chan struct{})}
	close(m.release)
	stop := c.heartbeat(context.Background(), m, Delivery{Attempt: 1})
	testenv.Eventually(t, 10*time.Second, "three renewals", func() bool { return m.renewals.Load() >= 3 })
	stop()
	if m.running.Load() {
		t.Fatal("a renewal is running after stop returned")
	}
}
