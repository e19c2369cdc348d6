package bench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The bridge benchmark at a small size: every pending request is published
// once by the first poll, never by the second or by a restarted bridge, and
// the Admin API is called as the design says. Figures are printed, never
// asserted. `task bench` runs issue 13's size (1,000 tenants x 50
// instances, 5 % pending) through TestBench.
func TestBridgeScale(t *testing.T) {
	checkBridgeScale(t, BridgeScaleOptions{Tenants: 50, InstancesPerTenant: 10, PendingFraction: 0.1})
}

// FullBridgeScale runs issue 13's size, on loopback and with 2 ms added to
// every Admin API answer, checks each as TestBridgeScale does, and returns
// the results.
func FullBridgeScale(t *testing.T) []BridgeScaleResult {
	o := BridgeScaleOptions{Tenants: 1000, InstancesPerTenant: 50, PendingFraction: 0.05}
	withLatency := o
	withLatency.Latency = 2 * time.Millisecond
	return []BridgeScaleResult{checkBridgeScale(t, o), checkBridgeScale(t, withLatency)}
}

func checkBridgeScale(t *testing.T, o BridgeScaleOptions) BridgeScaleResult {
	t.Helper()
	r, err := BridgeScale(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Table().Print(&out)
	t.Log(out.String())
	if data, err := json.Marshal(r); err == nil {
		t.Logf("REPORT %s", data)
	}
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	want := r.Pending["create"] + r.Pending["rename"] + r.Pending["delete"]
	if r.Pending["create"] == 0 || r.Pending["rename"] == 0 || r.Pending["delete"] == 0 {
		t.Fatalf("pending %v: every operation must be measured", r.Pending)
	}
	for i, c := range r.Cycles {
		if c.Calls[EndpointTenants] != 1 {
			t.Errorf("%s: %d tenant lists, want 1", c.Name, c.Calls[EndpointTenants])
		}
		if c.Calls[EndpointList] != o.Tenants {
			t.Errorf("%s: %d instance lists, want one per tenant (%d)", c.Name, c.Calls[EndpointList], o.Tenants)
		}
		// A detail read for each new create and rename, in the first poll only.
		details := 0
		if i == 0 {
			details = want - r.Pending["delete"]
		}
		if c.Calls[EndpointDetails] != details {
			t.Errorf("%s: %d detail reads, want %d", c.Name, c.Calls[EndpointDetails], details)
		}
	}
	// The same bridge knows what it queued and asks the stream nothing
	// about it; a restarted one knows nothing and asks the stream.
	if second := r.Cycles[1]; second.Stats.Remembered != want || second.NATSRequests >= uint64(want) {
		t.Errorf("second poll %+v with %d NATS requests, want all %d remembered and no look-up each", second.Stats, second.NATSRequests, want)
	}
	if restarted := r.Cycles[2]; restarted.Stats.Remembered != 0 || restarted.NATSRequests < uint64(want) {
		t.Errorf("poll after a restart %+v with %d NATS requests, want a look-up for each of %d", restarted.Stats, restarted.NATSRequests, want)
	}
	return r
}
