package bridge_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

func client(t *testing.T, s *simulatortest.Server) *adminapi.Client {
	t.Helper()
	c, err := adminapi.New(adminapi.Config{BaseURL: s.URL, TokenURL: s.TokenURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(t *testing.T, s *simulatortest.Server, tenant string, n int) {
	t.Helper()
	for i := range n {
		if _, err := s.CreateInstance(tenant, adminapi.InstanceRequest{TenantID: s.TenantID(tenant), TenantName: tenant, Name: fmt.Sprintf("%s %d", tenant, i), InstanceType: "enterprise",
			OdsInstanceContexts: []adminapi.OdsInstanceContext{{ContextKey: "k", ContextValue: strconv.Itoa(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "INSTANCES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A request that stays pending long past the de-duplication window still
// enters the stream once, and the job carries the request's details.
func TestJobEntersTheStreamOnceBeyondTheDuplicateWindow(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"t1", "t2"}})
	request(t, sim, "t1", 3)
	request(t, sim, "t2", 2)
	_, js := testenv.JetStream(t, testenv.NATS(t))
	window := 200 * time.Millisecond
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{DuplicateWindow: window}); err != nil {
		t.Fatal(err)
	}
	b := bridge.New(client(t, sim), nil, js, bridge.Options{})
	st, err := b.Poll(context.Background())
	if err != nil || st.Published != 5 || st.Pending != 5 {
		t.Fatalf("first poll %+v, %v; want 5 published", st, err)
	}
	// Let the de-duplication window pass: only the per-subject guard remains.
	time.Sleep(2 * window)
	st, err = b.Poll(context.Background())
	if err != nil || st.Published != 0 || st.AlreadyQueued != 5 || st.Remembered != 5 {
		t.Fatalf("second poll %+v, %v; want 5 already queued, known from memory", st, err)
	}
	// A restarted bridge remembers nothing: the stream tells it.
	st, err = bridge.New(client(t, sim), nil, js, bridge.Options{}).Poll(context.Background())
	if err != nil || st.Published != 0 || st.AlreadyQueued != 5 || st.Remembered != 0 {
		t.Fatalf("poll after a restart %+v, %v; want 5 already queued, found in the stream", st, err)
	}
	if n := streamMsgs(t, js); n != 5 {
		t.Fatalf("stream holds %d jobs, want 5", n)
	}

	s, _ := js.Stream(context.Background(), "INSTANCES")
	rec := sim.Instances()[0]
	raw, err := s.GetLastMsgForSubject(context.Background(), jobs.NewCreate(rec.TenantName, rec.ID, "").Subject())
	if err != nil {
		t.Fatal(err)
	}
	j, err := jobs.Decode(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != rec.Name || j.InstanceType != "enterprise" || len(j.Contexts) != 1 || j.Tenant != rec.TenantName {
		t.Fatalf("job %+v does not carry the request %+v", j, rec)
	}
	if raw.Header.Get(jetstream.MsgIDHeader) != j.ID {
		t.Fatalf("message ID %q, want the job ID %q", raw.Header.Get(jetstream.MsgIDHeader), j.ID)
	}
}

// Two bridges polling at once still publish each job once: the stream's
// per-subject guard settles the race, not a check in the bridge.
func TestRacingBridgesPublishOnce(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	request(t, sim, "default", 40)
	url := testenv.NATS(t)
	_, js := testenv.JetStream(t, url)
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := bridge.Stats{}
	for range 4 {
		_, js := testenv.JetStream(t, url)
		b := bridge.New(client(t, sim), nil, js, bridge.Options{})
		wg.Go(func() {
			st, err := b.Poll(context.Background())
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total.Published += st.Published
			total.AlreadyQueued += st.AlreadyQueued
			total.Failed += st.Failed
			mu.Unlock()
		})
	}
	wg.Wait()
	if total.Published != 40 || total.AlreadyQueued != 120 || total.Failed != 0 {
		t.Fatalf("stats over four bridges %+v, want 40 published and 120 already queued", total)
	}
	if n := streamMsgs(t, js); n != 40 {
		t.Fatalf("stream holds %d jobs, want 40", n)
	}
}

// A publish that JetStream did not acknowledge is not counted and is tried
// again on the next poll: nothing is lost while NATS is away.
func TestFailedPublishIsRetriedNextPoll(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	request(t, sim, "default", 3)
	dir := t.TempDir()
	ns, err := embednats.Start(embednats.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(ns.ClientURL())
	port, _ := strconv.Atoi(u.Port())
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	b := bridge.New(client(t, sim), nil, js, bridge.Options{})

	ns.Shutdown()
	ns.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	st, err := b.Poll(ctx)
	cancel()
	if err == nil && st.Published > 0 {
		t.Fatalf("published %d jobs with NATS down", st.Published)
	}

	ns, err = embednats.Start(embednats.Options{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	testenv.Eventually(t, 30*time.Second, "the bridge to publish after NATS is back", func() bool {
		st, err = b.Poll(context.Background())
		return err == nil && st.Published+st.AlreadyQueued == 3
	})
	if n := streamMsgs(t, js); n != 3 {
		t.Fatalf("stream holds %d jobs, want 3", n)
	}
}

// A job goes to the tenant the bridge polled, never to the instance's
// tenantName, which the Admin API stores as the console sent it.
func TestJobTenantIsThePolledTenant(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"t1", "t2"}})
	if _, err := sim.CreateInstance("t1", adminapi.InstanceRequest{TenantID: 1, TenantName: "t2", Name: "Misnamed", InstanceType: "enterprise"}); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	if st, err := bridge.New(client(t, sim), nil, js, bridge.Options{}).Poll(context.Background()); err != nil || st.Published != 1 {
		t.Fatalf("poll %+v, %v", st, err)
	}
	s, _ := js.Stream(context.Background(), "INSTANCES")
	raw, err := s.GetLastMsgForSubject(context.Background(), "instances.>")
	if err != nil {
		t.Fatal(err)
	}
	if j, err := jobs.Decode(raw.Data); err != nil || j.Tenant != "t1" {
		t.Fatalf("job for tenant %q (%v), want t1", j.Tenant, err)
	}
}

// A poll that reads nothing is counted by its reason: the secret refused
// (auth), the Admin API failing (server), no answer (network); a poll
// that reads sets the time of the last success. These are what an alert
// on a stale bridge reads.
func TestPollFailuresCountedByReason(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	withConfig := func(cfg adminapi.Config) *adminapi.Client {
		c, err := adminapi.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := adminapi.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret, MaxAttempts: 1}
	wrongSecret, nobody := good, good
	wrongSecret.ClientSecret = "not-the-secret"
	nobody.BaseURL, nobody.TokenURL = closed, closed+"/connect/token"

	for _, tc := range []struct {
		reason string
		api    adminapi.Config
		fault  *simulator.Fault
	}{
		{"auth", wrongSecret, nil},
		{"server", good, &simulator.Fault{Path: "/adminconsole/tenants", Status: 503}},
		{"network", nobody, nil},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			if tc.fault != nil {
				sim.InjectFault(*tc.fault)
				defer sim.ClearFaults()
			}
			m := bridge.NewMetrics(prometheus.NewRegistry())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- bridge.New(withConfig(tc.api), nil, js, bridge.Options{Interval: 20 * time.Millisecond, Metrics: m}).Run(ctx)
			}()
			testenv.Eventually(t, 10*time.Second, tc.reason+" failures counted", func() bool {
				return testutil.ToFloat64(m.PollFailures.WithLabelValues(tc.reason)) >= 1
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for _, other := range adminapi.FailureReasons {
				if n := testutil.ToFloat64(m.PollFailures.WithLabelValues(other)); other != tc.reason && n != 0 {
					t.Errorf("%v failures counted as %s, want only %s", n, other, tc.reason)
				}
			}
			if last := testutil.ToFloat64(m.LastSuccess); last != 0 {
				t.Errorf("last success %v although no poll read anything", last)
			}
		})
	}

	m := bridge.NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := float64(time.Now().Unix())
	go func() {
		_ = bridge.New(withConfig(good), nil, js, bridge.Options{Interval: 20 * time.Millisecond, Metrics: m}).Run(ctx)
	}()
	testenv.Eventually(t, 10*time.Second, "a successful poll recorded", func() bool {
		return testutil.ToFloat64(m.LastSuccess) >= before
	})
}

// counting is an AdminAPI that counts list calls and how many run at once;
// with gate set, each list waits for a value from it.
type counting struct {
	bridge.AdminAPI
	mu        sync.Mutex
	lists     map[string]int // by status asked for
	now, most int
	gate      chan struct{}
	waiting   int
}

func (c *counting) Instances(ctx context.Context, tenant, status string) ([]adminapi.WorkerInstance, error) {
	c.mu.Lock()
	c.lists[status]++
	c.now++
	c.most = max(c.most, c.now)
	c.waiting++
	c.mu.Unlock()
	if c.gate != nil {
		<-c.gate
	}
	defer func() {
		c.mu.Lock()
		c.now--
		c.mu.Unlock()
	}()
	return c.AdminAPI.Instances(ctx, tenant, status)
}

// One list per tenant, without a status filter (the contract allows it):
// the bridge picks the pending statuses itself, whatever their case, and
// leaves the others alone.
func TestOneListPerTenant(t *testing.T) {
	tenants := []string{"t1", "t2", "t3"}
	sim := simulatortest.Start(t, simulator.Options{Tenants: tenants})
	for _, tenant := range tenants {
		request(t, sim, tenant, 2)
	}
	for id, status := range map[int]string{1: adminapi.StatusCompleted, 3: adminapi.StatusPendingRename, 4: adminapi.StatusInProgress, 5: adminapi.StatusPendingDelete} {
		if err := sim.SetStatus(id, status); err != nil {
			t.Fatal(err)
		}
	}
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	api := &counting{AdminAPI: client(t, sim), lists: map[string]int{}}
	st, err := bridge.New(api, nil, js, bridge.Options{AllowDelete: true}).Poll(context.Background())
	// Pending: 2 and 6 (creates), 3 (rename), 5 (delete).
	if err != nil || st.Pending != 4 || st.Published != 4 {
		t.Fatalf("poll %+v, %v; want 4 pending and published", st, err)
	}
	if want := map[string]int{"": 3}; !maps.Equal(api.lists, want) {
		t.Fatalf("lists by status %v, want %v", api.lists, want)
	}
	s, _ := js.Stream(context.Background(), "INSTANCES")
	for _, subject := range []string{"instances.create.t1.2", "instances.rename.t2.3.0", "instances.delete.t3.5.0", "instances.create.t3.6"} {
		if _, err := s.GetLastMsgForSubject(context.Background(), subject); err != nil {
			t.Errorf("no job on %s: %v", subject, err)
		}
	}
}

// Tenants are polled concurrently, never more at once than the bound.
func TestTenantsPolledConcurrentlyWithinTheBound(t *testing.T) {
	var tenants []string
	for i := range 12 {
		tenants = append(tenants, fmt.Sprintf("t%d", i))
	}
	sim := simulatortest.Start(t, simulator.Options{Tenants: tenants})
	for _, tenant := range tenants {
		request(t, sim, tenant, 1)
	}
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	api := &counting{AdminAPI: client(t, sim), lists: map[string]int{}, gate: make(chan struct{})}
	done := make(chan bridge.Stats, 1)
	go func() {
		st, err := bridge.New(api, nil, js, bridge.Options{Concurrency: 3}).Poll(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	for released := 0; released < len(tenants); released++ {
		testenv.Eventually(t, 10*time.Second, "a list waiting", func() bool {
			api.mu.Lock()
			defer api.mu.Unlock()
			// Three wait at once until the last two.
			return api.waiting-released >= min(3, len(tenants)-released)
		})
		api.gate <- struct{}{}
	}
	st := <-done
	if st.Published != len(tenants) {
		t.Fatalf("poll %+v, want %d published", st, len(tenants))
	}
	if api.most != 3 {
		t.Fatalf("%d tenants polled at once, want 3", api.most)
	}
}

// A stream deleted and made again holds none of the jobs the bridge
// remembers: it publishes them again.
func TestRecreatedStreamIsFilledAgain(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	request(t, sim, "default", 3)
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	b := bridge.New(client(t, sim), nil, js, bridge.Options{})
	if st, err := b.Poll(context.Background()); err != nil || st.Published != 3 {
		t.Fatalf("first poll %+v, %v", st, err)
	}
	if err := js.DeleteStream(context.Background(), "INSTANCES"); err != nil {
		t.Fatal(err)
	}
	// Made again as the app makes it, through Retry: a create right after
	// a delete can race the server's clean-up of the old directories.
	if err := jobs.Retry(context.Background(), nil, "the job stream", func() error {
		_, err := jobs.EnsureStream(context.Background(), js, jobs.Config{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st, err := b.Poll(context.Background()); err != nil || st.Published != 3 || st.Remembered != 0 {
		t.Fatalf("poll of the new stream %+v, %v; want 3 published again", st, err)
	}
	if n := streamMsgs(t, js); n != 3 {
		t.Fatalf("stream holds %d jobs, want 3", n)
	}
}

// What the bridge remembers expires: after RememberFor it asks the stream
// again.
func TestRememberedJobsExpire(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	request(t, sim, "default", 2)
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	b := bridge.New(client(t, sim), nil, js, bridge.Options{RememberFor: time.Nanosecond})
	if st, err := b.Poll(context.Background()); err != nil || st.Published != 2 {
		t.Fatalf("first poll %+v, %v", st, err)
	}
	if st, err := b.Poll(context.Background()); err != nil || st.AlreadyQueued != 2 || st.Remembered != 0 {
		t.Fatalf("second poll %+v, %v; want 2 already queued, found in the stream", st, err)
	}
}

// A poll that published new jobs is followed at once by another, not an
// interval later: a burst is picked up without waiting a turn per page.
func TestPollsAgainAtOnceAfterNewWork(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{})
	request(t, sim, "default", 2)
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var polls []bridge.Stats
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bridge.New(client(t, sim), nil, js, bridge.Options{Interval: time.Hour, Observe: func(st bridge.Stats) {
			mu.Lock()
			polls = append(polls, st)
			mu.Unlock()
		}}).Run(ctx)
	}()
	testenv.Eventually(t, 10*time.Second, "a second poll well before the hour", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(polls) >= 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if polls[0].Published != 2 || polls[1].Published != 0 || polls[1].AlreadyQueued != 2 {
		t.Fatalf("polls %+v, want 2 published, then 2 already queued", polls)
	}
}

// requests reads one request from the simulator's list, as the manage
// flavor's source reads its row.
type requests struct{ *adminapi.Client }

func (r requests) Request(ctx context.Context, tenant string, id int) (adminapi.WorkerInstance, error) {
	list, err := r.Instances(ctx, tenant, "")
	for _, inst := range list {
		if inst.ID == id {
			return inst, nil
		}
	}
	return adminapi.WorkerInstance{}, fmt.Errorf("no request %d in tenant %q: %v", id, tenant, err)
}

// A request's publish (the manage flavor's door) asks the server for the
// stream's info at most once, not once a request: the poll's stream, or
// the one the first publish opened, serves the next, and a request's job
// waits for no such round trip.
func TestPublishDoesNotReopenTheStream(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"t1"}})
	nc, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	var infos atomic.Int64 // the stream info requests seen
	count := func() int64 {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return infos.Load()
	}
	sub, err := nc.Subscribe("$JS.API.STREAM.INFO.>", func(*nats.Msg) { infos.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	create := func(name string) int {
		t.Helper()
		inst, err := sim.CreateInstance("t1", adminapi.InstanceRequest{TenantID: sim.TenantID("t1"), TenantName: "t1", Name: name, InstanceType: "enterprise"})
		if err != nil {
			t.Fatal(err)
		}
		return inst.ID
	}
	ctx := context.Background()

	// Before any poll: the first publish opens the stream, the next do not.
	b := bridge.New(requests{client(t, sim)}, nil, js, bridge.Options{})
	for _, name := range []string{"a", "b", "c"} {
		b.Publish(ctx, "t1", create(name), jobs.OpCreate)
	}
	if n := count(); n != 1 {
		t.Fatalf("three publishes asked for the stream's info %d times, want once", n)
	}
	// After a poll (which opens it, as every poll does), none do.
	if _, err := b.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	polled := count()
	for _, name := range []string{"d", "e"} {
		b.Publish(ctx, "t1", create(name), jobs.OpCreate)
	}
	if n := count() - polled; n != 0 {
		t.Fatalf("two publishes after a poll asked for the stream's info %d times, want none", n)
	}
	if n := streamMsgs(t, js); n != 5 {
		t.Fatalf("stream holds %d jobs, want the 5 published", n)
	}
}

// settlingLedger is a ledger read just after the consumer's failure of the
// request settled: the status moved to Delete_Failed, the generation on.
type settlingLedger struct {
	sim *simulatortest.Server
	id  int
}

func (l settlingLedger) Lookup(_ context.Context, tenant string, id int) (provisioning.Record, error) {
	if err := l.sim.SetStatus(l.id, adminapi.StatusDeleteFailed); err != nil {
		return provisioning.Record{}, err
	}
	return provisioning.Record{Tenant: tenant, InstanceID: id, Database: "EdFi_Ods_x", Name: "x", Generation: 2}, nil
}

// A delete that failed between the poll's list and its ledger read is not
// published at the ledger's new generation: that job would find nothing
// to do, and the delete asked again would find its subject taken for good
// (found by the soak with retained deletes).
func TestSettledDeleteIsNotPublishedAtTheNextGeneration(t *testing.T) {
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"t1"}})
	request(t, sim, "t1", 1)
	list, err := client(t, sim).Instances(context.Background(), "t1", "")
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	id := list[0].ID
	if err := sim.SetStatus(id, adminapi.StatusPendingDelete); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.JetStream(t, testenv.NATS(t))
	if _, err := jobs.EnsureStream(context.Background(), js, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	b := bridge.New(client(t, sim), settlingLedger{sim, id}, js, bridge.Options{AllowDelete: true})
	st, err := b.Poll(context.Background())
	if err != nil || st.Published != 0 || st.Failed != 0 || streamMsgs(t, js) != 0 {
		t.Fatalf("poll %+v, %v, %d in the stream; want nothing published", st, err, streamMsgs(t, js))
	}
}
