package consumer

import "testing"

// A job over its server's share is parked and runs once the server has
// room, before any new pull; with the parked jobs at their bound a free
// worker waits for a job to end.
func TestFairShare(t *testing.T) {
	f := newFairShare(1, 2, func(tenant string) string { return tenant })
	if !f.take("slow") {
		t.Fatal("the first job of a server did not run")
	}
	if f.take("slow") {
		t.Fatal("a second job of a server ran over its share of 1")
	}
	f.park(lockedJob{server: "slow", d: Delivery{Attempt: 1}})
	if !f.take("fast") {
		t.Fatal("another server's job waited behind a full server")
	}
	if p, wake := f.next(); p != nil || wake != nil {
		t.Fatalf("next = %v, %v with both servers at their share; want a pull", p, wake)
	}
	f.done("slow")
	p, _ := f.next()
	if p == nil || p.server != "slow" {
		t.Fatalf("next = %v once the slow server had room; want its parked job", p)
	}
	for len(f.parked) < f.maxParked {
		f.park(lockedJob{server: "slow"})
	}
	p, wake := f.next()
	if p != nil || wake == nil {
		t.Fatalf("next = %v, %v with %d jobs parked; want a wait", p, wake, f.maxParked)
	}
	f.done("fast")
	select {
	case <-wake:
	default:
		t.Fatal("a job ended and the waiting worker was not woken")
	}
	if got := len(f.drain()); got != f.maxParked {
		t.Fatalf("drained %d, want %d", got, f.maxParked)
	}
}

// With no share, or no way to tell servers apart, nothing is ever parked:
// a worker asks only when it is free, so fewer than concurrency jobs run.
func TestFairShareOff(t *testing.T) {
	for _, f := range []*fairShare{newFairShare(0, 3, func(string) string { return "one" }), newFairShare(1, 3, nil)} {
		for range 2 {
			if !f.take(f.server("t")) {
				t.Fatalf("share %d: a job was held back", f.share)
			}
		}
	}
}
