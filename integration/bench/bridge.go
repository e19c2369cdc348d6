package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// BridgeScaleOptions size the bridge measurement.
type BridgeScaleOptions struct {
	Tenants            int
	InstancesPerTenant int
	// PendingFraction of all instances are pending requests, spread evenly
	// over the tenants; of those, 16 in 20 are creates (Pending), 3 in 20
	// renames (Pending_Rename), 1 in 20 deletes (Pending_Delete). The rest
	// are Completed.
	PendingFraction float64
	// Concurrency is the bridge's bound on tenants polled at once; 0 takes
	// the bridge's default.
	Concurrency int
	// Latency is added to every Admin API answer, as a real Admin API's
	// network and database add it; loopback to the in-memory simulator
	// adds next to none.
	Latency time.Duration
}

// BridgeScaleResult is what BridgeScale measured.
type BridgeScaleResult struct {
	Tenants            int     `json:"tenants"`
	InstancesPerTenant int     `json:"instancesPerTenant"`
	PendingFraction    float64 `json:"pendingFraction"`
	LatencyNanos       int64   `json:"latencyNanos"`
	Concurrency        int     `json:"concurrency"`
	// Pending requests seeded, by operation (create, rename, delete).
	Pending map[string]int `json:"pending"`
	// Cycles: the first poll, the second poll of the same bridge, and the
	// first poll of a new bridge on the same stream (a restart).
	Cycles []BridgeCycle `json:"cycles"`
	// StreamMessages is how many jobs the stream holds after every cycle.
	StreamMessages uint64 `json:"streamMessages"`
}

// BridgeCycle is one poll.
type BridgeCycle struct {
	Name  string         `json:"name"`
	Wall  time.Duration  `json:"wallNanos"`
	Stats CycleStats     `json:"stats"`
	Err   string         `json:"error,omitempty"`
	Calls map[string]int `json:"adminApiCalls"` // by endpoint, "GET /adminconsole/instances"
	// Connections is how many HTTP connections the client opened to the
	// Admin API.
	Connections int `json:"connections"`
	// NATSRequests is how many messages the bridge sent to NATS: publishes
	// and JetStream API requests (stream look-ups, stream info).
	NATSRequests uint64 `json:"natsRequests"`
}

// CycleStats are the bridge's own counts of one poll (bridge.Stats).
type CycleStats struct {
	Pending       int `json:"pending"`
	Published     int `json:"published"`
	AlreadyQueued int `json:"alreadyQueued"`
	Remembered    int `json:"remembered"`
	Failed        int `json:"failed"`
	DeleteSkipped int `json:"deleteSkipped"`
}

// Endpoints the bridge calls, as adminapi's Observe names them.
const (
	EndpointTenants = "GET /adminconsole/tenants"
	EndpointList    = "GET /adminconsole/instances"
	EndpointDetails = "GET /adminconsole/odsInstances/{id}"
)

// BridgeScale seeds a simulator with o.Tenants tenants of
// o.InstancesPerTenant instances, serves it over loopback HTTP, and runs
// the real bridge with the real Admin API client against it and a real
// embedded JetStream: one poll, a second poll, and a poll of a new bridge.
func BridgeScale(ctx context.Context, o BridgeScaleOptions) (BridgeScaleResult, error) {
	res := BridgeScaleResult{Tenants: o.Tenants, InstancesPerTenant: o.InstancesPerTenant, PendingFraction: o.PendingFraction, LatencyNanos: int64(o.Latency), Concurrency: o.Concurrency, Pending: map[string]int{}}
	if o.Tenants < 1 || o.InstancesPerTenant < 1 || o.PendingFraction < 0 || o.PendingFraction > 1 {
		return res, fmt.Errorf("bridge scale: options %+v out of range", o)
	}

	tenants := make([]string, o.Tenants)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("t%04d", i+1)
	}
	sim := simulator.New(simulator.Options{Tenants: tenants})
	defer sim.Close()
	if err := seed(sim, tenants, o, res.Pending); err != nil {
		return res, err
	}
	var handler http.Handler = sim
	if o.Latency > 0 {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(o.Latency) // the Admin API's own time to answer, not a wait in a test
			sim.ServeHTTP(w, r)
		})
	}
	var mu sync.Mutex
	calls := map[string]int{}
	conns := 0
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	const clientID, secret = "bench", "bench-secret-0123456789"
	if err := sim.RegisterClient(clientID, secret); err != nil {
		return res, err
	}
	api, err := adminapi.New(adminapi.Config{
		BaseURL: srv.URL, TokenURL: srv.URL + "/connect/token", ClientID: clientID, ClientSecret: secret, MaxAttempts: 1,
		Observe: func(endpoint, _ string, _ time.Duration) {
			mu.Lock()
			calls[endpoint]++
			mu.Unlock()
		},
	})
	if err != nil {
		return res, err
	}
	// A running bridge holds a token already.
	if _, err := api.Tenants(ctx); err != nil {
		return res, fmt.Errorf("first call: %w", err)
	}

	dir, err := os.MkdirTemp("", "instancemgr-bench-bridge-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir) //nolint:errcheck // a temporary directory
	ns, err := embednats.Start(embednats.Options{StoreDir: dir})
	if err != nil {
		return res, err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	stream, err := jobs.EnsureStream(ctx, js, jobs.Config{})
	if err != nil {
		return res, err
	}

	opts := bridge.Options{AllowDelete: true, Concurrency: o.Concurrency}
	ledger := benchLedger{}
	poll := func(name string, b *bridge.Bridge) {
		mu.Lock()
		clear(calls)
		conns = 0
		mu.Unlock()
		before := nc.Stats().OutMsgs
		start := time.Now()
		st, err := b.Poll(ctx)
		c := BridgeCycle{Name: name, Wall: time.Since(start), NATSRequests: nc.Stats().OutMsgs - before,
			Stats: CycleStats{Pending: st.Pending, Published: st.Published, AlreadyQueued: st.AlreadyQueued, Remembered: st.Remembered, Failed: st.Failed, DeleteSkipped: st.DeleteSkipped}}
		if err != nil {
			c.Err = err.Error()
		}
		mu.Lock()
		c.Calls = maps.Clone(calls)
		c.Connections = conns
		mu.Unlock()
		res.Cycles = append(res.Cycles, c)
	}
	b := bridge.New(api, ledger, js, opts)
	poll("first poll", b)
	poll("second poll", b)
	poll("after a restart", bridge.New(api, ledger, js, opts))

	info, err := stream.Info(ctx)
	if err != nil {
		return res, err
	}
	res.StreamMessages = info.State.Msgs
	for _, c := range res.Cycles {
		if c.Err != "" {
			return res, fmt.Errorf("%s: %s", c.Name, c.Err)
		}
	}
	return res, ctx.Err()
}

// seed gives each tenant its instances, the pending ones spread evenly.
func seed(sim *simulator.Simulator, tenants []string, o BridgeScaleOptions, pending map[string]int) error {
	total := int(float64(len(tenants)*o.InstancesPerTenant)*o.PendingFraction + 0.5)
	j := 0 // pending requests so far, over every tenant
	for k, tenant := range tenants {
		n := (k+1)*total/len(tenants) - k*total/len(tenants)
		byStatus := map[string][]adminapi.InstanceRequest{}
		for i := range o.InstancesPerTenant {
			status := adminapi.StatusCompleted
			if i < n {
				switch j % 20 {
				case 16, 17, 18:
					status = adminapi.StatusPendingRename
					pending["rename"]++
				case 19:
					status = adminapi.StatusPendingDelete
					pending["delete"]++
				default:
					status = adminapi.StatusPending
					pending["create"]++
				}
				j++
			}
			byStatus[status] = append(byStatus[status], adminapi.InstanceRequest{
				TenantID: k + 1, TenantName: tenant, Name: fmt.Sprintf("District %d - 2025", i+1), InstanceType: "enterprise",
				OdsInstanceContexts: []adminapi.OdsInstanceContext{{ContextKey: "schoolYearFromRoute", ContextValue: "2025"}},
			})
		}
		for _, status := range slices.Sorted(maps.Keys(byStatus)) {
			if _, err := sim.CreateInstances(tenant, byStatus[status], status); err != nil {
				return fmt.Errorf("seed tenant %s: %w", tenant, err)
			}
		}
	}
	return nil
}

// benchLedger knows every instance, as the ledger does of each one the
// system made; it costs what a map look-up costs, so the figures are the
// bridge's and the Admin API's.
type benchLedger struct{}

func (benchLedger) Lookup(_ context.Context, tenant string, id int) (provisioning.Record, error) {
	return provisioning.Record{Tenant: tenant, InstanceID: id, Database: "EdFi_Ods_" + tenant + "_" + strconv.Itoa(id), Generation: 1}, nil
}

// Table is the result as printed.
func (r BridgeScaleResult) Table() Table {
	t := Table{
		Title:  fmt.Sprintf("Bridge at scale: %d tenants x %d instances, %g %% pending, Admin API latency %s", r.Tenants, r.InstancesPerTenant, 100*r.PendingFraction, time.Duration(r.LatencyNanos)),
		Header: []string{"cycle", "wall", "tenant lists", "instance lists", "detail reads", "connections", "NATS requests", "published", "already queued", "remembered", "failed"},
	}
	for _, c := range r.Cycles {
		t.Rows = append(t.Rows, []string{c.Name, c.Wall.Round(time.Millisecond).String(),
			strconv.Itoa(c.Calls[EndpointTenants]), strconv.Itoa(c.Calls[EndpointList]), strconv.Itoa(c.Calls[EndpointDetails]), strconv.Itoa(c.Connections),
			strconv.FormatUint(c.NATSRequests, 10),
			strconv.Itoa(c.Stats.Published), strconv.Itoa(c.Stats.AlreadyQueued), strconv.Itoa(c.Stats.Remembered), strconv.Itoa(c.Stats.Failed)})
	}
	var pend []string
	for _, op := range slices.Sorted(maps.Keys(r.Pending)) {
		pend = append(pend, fmt.Sprintf("%d %s", r.Pending[op], op))
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("Pending: %s; the stream holds %d jobs after the three polls.", strings.Join(pend, ", "), r.StreamMessages),
		"Simulator over loopback HTTP, embedded JetStream, the real bridge and Admin API client; the ledger is in memory. "+
			"Remembered: already-queued jobs the bridge knew of without asking the stream.")
	if r.Concurrency > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("Bridge concurrency %d.", r.Concurrency))
	}
	if r.LatencyNanos > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("Every Admin API answer delayed by %s.", time.Duration(r.LatencyNanos)))
	}
	return t
}

// errIncomplete is returned by Check and CheckMessaging: a run that did
// not measure everything it reports.
var errIncomplete = errors.New("benchmark incomplete")

// Check says what is wrong with r as a run where every pending request
// was published once by the first poll and never again.
func (r BridgeScaleResult) Check() error {
	var problems []string
	want := r.Pending["create"] + r.Pending["rename"] + r.Pending["delete"]
	if len(r.Cycles) != 3 {
		return fmt.Errorf("%w (bridge): %d cycles, want 3", errIncomplete, len(r.Cycles))
	}
	first := r.Cycles[0].Stats
	if first.Pending != want || first.Published != want || first.Failed != 0 {
		problems = append(problems, fmt.Sprintf("first poll %+v, want %d pending and published", first, want))
	}
	for _, c := range r.Cycles[1:] {
		if c.Stats.Pending != want || c.Stats.Published != 0 || c.Stats.AlreadyQueued != want || c.Stats.Failed != 0 {
			problems = append(problems, fmt.Sprintf("%s %+v, want %d already queued and none published", c.Name, c.Stats, want))
		}
	}
	if r.StreamMessages != uint64(want) {
		problems = append(problems, fmt.Sprintf("stream holds %d jobs, want %d", r.StreamMessages, want))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w (bridge): %s", errIncomplete, strings.Join(problems, "; "))
	}
	return nil
}
