package integration

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// Under the manage flavor the write routes publish a request's job
// themselves once its row has committed, through the bridge's own
// one-request publish; the poll is the safety net.

// publishingDoor is the door publishing through a bridge of its own on js,
// whose poll loop never runs: whatever reaches the stream through it was
// published by the door.
func (e *env) publishingDoor(js jetstream.JetStream) string {
	e.t.Helper()
	ledgers := app.NewLedgers(e.cfg, e.log)
	e.t.Cleanup(ledgers.Close)
	b, err := app.NewBridge(context.Background(), e.cfg, app.BridgeAPI(e.cfg, nil, ledgers, e.log), ledgers, js, e.log, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	srv, err := app.ManageServer(e.cfg, ledgers, b, e.log, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	routes := httptest.NewServer(srv)
	e.t.Cleanup(routes.Close)
	return routes.URL
}

// perSubject is how many messages the job stream holds on each subject.
func (e *env) perSubject() map[string]uint64 {
	e.t.Helper()
	_, js := testenv.JetStream(e.t, e.natsURL)
	s, err := js.Stream(context.Background(), e.cfg.NATS.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Subjects
}

// A request POSTed to the door is Created, and one DELETEd is Deleted,
// with no poll at all: the door published each job, one message each.
func TestManageDoorPublishesWithoutPoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true, allowDelete: true})
	_, js := testenv.JetStream(t, e.natsURL)
	door := e.publishingDoor(js)
	e.startReplica(app.ConsumerDeps{})

	id := e.manageRequestAt(door, "", e.prefix+" Quick", "Minimal")
	e.waitManage(id, "Created")
	e.manageDeleteAt(door, "", id)
	e.waitManage(id, "Deleted")
	subjects := e.perSubject()
	if len(subjects) != 2 {
		t.Fatalf("stream holds %v; want one create and one delete message", subjects)
	}
	for subject, n := range subjects {
		if n != 1 {
			t.Errorf("%d messages on %s", n, subject)
		}
	}
}

// The door and polls race for the same requests, the polls by a bridge of
// their own (another replica's): each request enters the stream once, and
// a poll after them all publishes nothing.
func TestManageDoorAndPollRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true})
	e.cfg.Limits.CreatesPerMinute, e.cfg.Limits.CreatesPerMinutePerClient = -1, -1 // a burst, not a rate
	_, js := testenv.JetStream(t, e.natsURL)
	door := e.publishingDoor(js)
	poller := e.newBridge()

	const n = 12
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		byPolls int
	)
	wg.Go(func() {
		for ctx.Err() == nil {
			st, err := poller.Poll(ctx)
			if err == nil {
				mu.Lock()
				byPolls += st.Published
				mu.Unlock()
			}
		}
	})
	var posts sync.WaitGroup
	ids := make([]int, n)
	for i := range n {
		posts.Go(func() { ids[i] = e.manageRequestAt(door, "", fmt.Sprintf("%s Race %d", e.prefix, i), "Minimal") })
	}
	posts.Wait()
	stop()
	wg.Wait()

	// The door publishes after its answer: the last may still be on its way.
	var subjects map[string]uint64
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("a job for each of %d requests", n), func() bool {
		subjects = e.perSubject()
		return len(subjects) == n
	})
	for subject, c := range subjects {
		if c != 1 {
			t.Errorf("%d messages on %s", c, subject)
		}
	}
	st, err := poller.Poll(context.Background())
	if err != nil || st.Published != 0 || st.AlreadyQueued != n {
		t.Fatalf("a poll after the race: %+v, %v; want all %d already queued", st, err, n)
	}
	t.Logf("of %d requests the polls published %d, the door the rest", n, byPolls)
}

// A door that cannot reach NATS still answers 202 and leaves the request
// PendingCreate; the next poll publishes its job and it is Created.
func TestManageDoorPublishFailureLeftToPoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{manage: true})
	nc, js := testenv.JetStream(t, e.natsURL)
	door := e.publishingDoor(js)
	nc.Close()
	e.startReplica(app.ConsumerDeps{})

	id := e.manageRequestAt(door, "", e.prefix+" Late", "Minimal")
	if got := e.streamMessages(); got != 0 || e.manageStatus(id) != "PendingCreate" {
		t.Fatalf("after a failed publish: %d messages, status %s", got, e.manageStatus(id))
	}
	var b *bridge.Bridge = e.newBridge()
	st, err := b.Poll(context.Background())
	if err != nil || st.Published != 1 {
		t.Fatalf("the poll after a failed publish: %+v, %v", st, err)
	}
	e.waitManage(id, "Created")
}
