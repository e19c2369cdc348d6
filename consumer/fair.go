package consumer

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// fairShare shares a replica's slots among the servers its jobs go to. All
// tenants share one durable consumer, which delivers in stream order: a
// backlog for a slow server would take every slot, and jobs for other
// servers behind it would wait. So a job whose server already has its share
// of this replica's jobs running is parked: its lock is kept by the same
// heartbeats as a running job's, it holds no slot, and its worker pulls the
// next job. It runs as soon as its server is under its share again. A
// server alone with a backlog gets no more than its share either: the slots
// it leaves are kept for jobs of other servers that may come at any time.
//
// Parking, not a nak with a delay: a nak is a delivery, and a backlog
// waiting its turn would spend the nats.maxDeliver attempts meant for
// failures, then be dead-lettered. A parked job keeps its one delivery.
// Parked jobs are bounded (maxParked), since each holds one of the
// consumer's ack-pending places; with the bound reached, a free worker
// waits for a job to end rather than pull.
type fairShare struct {
	share     int // jobs of one server running at once; >= concurrency: no limit
	maxParked int
	serverOf  func(tenant string) string

	mu      sync.Mutex
	running map[string]int
	parked  []lockedJob // oldest first
	// ended is closed, and replaced, when a job ends: a worker waiting for
	// room wakes.
	ended chan struct{}
}

// lockedJob is a delivered job whose lock is being renewed: parked, or
// running on its server.
type lockedJob struct {
	msg           jetstream.Msg
	d             Delivery
	server        string
	stopHeartbeat func()
}

func newFairShare(share, concurrency int, serverOf func(string) string) *fairShare {
	if share <= 0 || serverOf == nil {
		share = concurrency
	}
	return &fairShare{share: share, maxParked: parkedPerSlot * concurrency, serverOf: serverOf, running: map[string]int{}, ended: make(chan struct{})}
}

// parkedPerSlot bounds the parked jobs at this many a slot: with the
// default concurrency a replica holds at most 4 running and 16 parked of
// the consumer's 256 ack-pending places (nats.maxAckPending).
const parkedPerSlot = 4

// server is the server a job's tenant lives on; "" for a tenant with no
// server, whose job fails at once in its handler.
func (f *fairShare) server(tenant string) string {
	if f.serverOf == nil {
		return ""
	}
	return f.serverOf(tenant)
}

// take counts a job of server as running if the server is under its share.
func (f *fairShare) take(server string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running[server] >= f.share {
		return false
	}
	f.running[server]++
	return true
}

// park keeps p until its server has room.
func (f *fairShare) park(p lockedJob) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.parked = append(f.parked, p)
}

// done ends a running job of server.
func (f *fairShare) done(server string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running[server]--; f.running[server] == 0 {
		delete(f.running, server)
	}
	close(f.ended)
	f.ended = make(chan struct{})
}

// next is what a free worker does: run a parked job whose server is under
// its share (p, counted as running), else pull (wake nil), else, with the
// parked jobs at their bound, wait for wake.
func (f *fairShare) next() (p *lockedJob, wake <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, q := range f.parked {
		if f.running[q.server] < f.share {
			f.running[q.server]++
			f.parked = append(f.parked[:i], f.parked[i+1:]...)
			return &q, nil
		}
	}
	if len(f.parked) >= f.maxParked {
		return nil, f.ended
	}
	return nil, nil
}

// drain takes every parked job, for release at shutdown.
func (f *fairShare) drain() []lockedJob {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := f.parked
	f.parked = nil
	return all
}

// waitFor waits for wake or the end of ctx.
func waitFor(ctx context.Context, wake <-chan struct{}) {
	select {
	case <-wake:
	case <-ctx.Done():
	}
}
