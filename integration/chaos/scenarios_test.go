package chaos

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// 1. Three replicas; one, chosen at random, is killed with SIGKILL every
// second or so and restarted, while the jobs run.
func TestReplicaCrashes(t *testing.T) {
	jobs := size(24, 60)
	s := newSys(t, sysOptions{concurrency: 2, consumerEnv: []string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=1s"}})
	for range 3 {
		s.startReplica()
	}
	ids := s.request("Crash", jobs)
	s.startBridge()
	start := time.Now()
	kills := 0
	rng := rand.New(rand.NewPCG(1, 2))
	for s.countStatus(ids, adminapi.StatusCompleted) < jobs {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("jobs not done after %d kills", kills)
		}
		victim := s.replicas[rng.IntN(len(s.replicas))]
		time.Sleep(time.Duration(700+rng.IntN(600)) * time.Millisecond) // the fault schedule, not a wait for a condition
		victim.Kill()
		kills++
		victim.Restart()
	}
	took := time.Since(start)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	if e.Deliveries <= uint64(jobs) {
		t.Logf("no kill landed mid-job this run (%d deliveries)", e.Deliveries)
	}
	report(t, "1 replica crashes", jobs, fmtKills(kills, "SIGKILL"), e, took)
}

func fmtKills(n int, what string) string { return strconv.Itoa(n) + " × " + what }

// 2. A replica frozen mid-job past its ack wait: another replica finishes
// the job; when the frozen one resumes it finds the job done and does not
// report success again.
func TestFrozenReplica(t *testing.T) {
	s := newSys(t, sysOptions{ackWait: 2 * time.Second, consumerEnv: []string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=3s"}})
	frozen := s.startReplica()
	ids := s.request("Frozen", 1)
	s.startBridge()
	// The database exists: the replica is inside the job, in its slow step.
	testenv.Eventually(t, time.Minute, "the first replica to create the database", func() bool { return s.effects(ids).Databases == 1 })
	frozen.Signal(syscall.SIGSTOP)
	stoppedAt := time.Now()
	s.startReplica()
	took := s.waitStatus(ids, adminapi.StatusCompleted, time.Minute)
	if time.Since(stoppedAt) < 2*time.Second {
		t.Fatal("completed before the frozen replica's lock could expire")
	}
	frozen.Signal(syscall.SIGCONT)
	// The resumed replica finishes its delivery: it must find the
	// registration and the Completed status and call nothing.
	testenv.Eventually(t, time.Minute, "the resumed replica to settle its stale delivery", func() bool {
		return strings.Contains(frozen.Log(), "already_registered=true")
	})
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	if e.CompletedCalls != 1 {
		t.Fatalf("completed called %d times, want 1", e.CompletedCalls)
	}
	report(t, "2 frozen replica", 1, "SIGSTOP 2×ackWait, SIGCONT", e, took)
}

// 3. The lock is shorter than the work and nothing renews it: deliveries
// overlap, and still one database and one row per job.
func TestLockShorterThanWork(t *testing.T) {
	jobs := size(6, 20)
	s := newSys(t, sysOptions{ackWait: 2 * time.Second, consumerEnv: []string{
		"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=5s", "INSTANCEMGR_TEST_DISABLE_HEARTBEAT=1"}})
	for range 3 {
		s.startReplica()
	}
	ids := s.request("Overlap", jobs)
	s.startBridge()
	took := s.waitStatus(ids, adminapi.StatusCompleted, 3*time.Minute)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	if e.Deliveries <= uint64(jobs) {
		t.Fatalf("%d deliveries for %d jobs: no delivery overlapped another", e.Deliveries, jobs)
	}
	report(t, "3 lock shorter than work", jobs, "ackWait 2s, 5s jobs, no heartbeat", e, took)
}

// 4. SIGTERM while jobs are in flight: they finish and are acked, no new
// job is pulled, and the process exits within its grace period.
func TestGracefulShutdown(t *testing.T) {
	jobs := 20
	s := newSys(t, sysOptions{concurrency: 20, grace: 20 * time.Second, consumerEnv: []string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=3s"}})
	r := s.startReplica()
	ids := s.request("Drain", jobs)
	s.startBridge()
	testenv.Eventually(t, time.Minute, "20 jobs in flight", func() bool { return s.effects(ids).Databases == jobs })
	more := s.request("Late", 5)
	r.Signal(syscall.SIGTERM)
	termAt := time.Now()
	if !r.WaitExit(25 * time.Second) {
		t.Fatal("the replica did not exit within its grace period")
	}
	exitTook := time.Since(termAt)
	if code := r.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := s.countStatus(ids, adminapi.StatusCompleted); n != jobs {
		t.Fatalf("%d of %d in-flight jobs finished before exit", n, jobs)
	}
	if n := s.countStatus(more, adminapi.StatusCompleted); n != 0 {
		t.Fatalf("%d jobs were pulled after SIGTERM", n)
	}
	s.startReplica()
	s.waitStatus(append(ids, more...), adminapi.StatusCompleted, time.Minute)
	e := s.settle(append(ids, more...))
	s.expectOnce(append(ids, more...), e, 0)
	report(t, "4 graceful shutdown", jobs+len(more), "SIGTERM with 20 in flight", e, exitTook)
}

// 4b. SIGTERM with jobs that outlast the grace, under the Kubernetes
// manifest's own figures: the replica cancels and releases every in-flight
// job when consumer.shutdownGrace runs out and exits within the pod's
// terminationGracePeriodSeconds, before Kubernetes would kill it. The lock
// is far longer than the test, so only a release lets another replica have
// the jobs.
func TestGraceRunsOutWithinThePodsPeriod(t *testing.T) {
	grace, period := manifestGrace(t)
	jobs := 4
	s := newSys(t, sysOptions{concurrency: jobs, grace: grace, ackWait: 10 * time.Minute})
	r := s.startReplica("INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=" + (period + time.Minute).String())
	ids := s.request("Outlast", jobs)
	s.startBridge()
	testenv.Eventually(t, time.Minute, "the jobs in flight", func() bool { return s.effects(ids).Databases == jobs })
	r.Signal(syscall.SIGTERM)
	termAt := time.Now()
	if !r.WaitExit(period) {
		t.Fatalf("the replica did not exit within the pod's grace period %s (shutdownGrace %s): Kubernetes would kill it", period, grace)
	}
	exitTook := time.Since(termAt)
	if code := r.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := s.countStatus(ids, adminapi.StatusCompleted); n != 0 {
		t.Fatalf("%d jobs completed although none could finish within the grace", n)
	}
	if log := r.Log(); strings.Count(log, "released for another replica") != jobs {
		t.Fatalf("the replica did not release all %d in-flight jobs:\n%s", jobs, log)
	}
	s.startReplica()
	s.waitStatus(ids, adminapi.StatusCompleted, time.Minute)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	report(t, "4b grace runs out", jobs, fmt.Sprintf("SIGTERM, jobs outlast shutdownGrace %s, pod grace %s", grace, period), e, exitTook)
}

// 5. The Admin API fails 30 % of calls with 500/503, some time out; then it
// is down altogether for a while. Every job completes once, and no rolled
// back registration leaves a row.
func TestAdminAPIFaults(t *testing.T) {
	jobs := size(20, 40)
	down := time.Duration(size(6, 20)) * time.Second
	s := newSys(t, sysOptions{})
	for range 2 {
		s.startReplica()
	}
	ids := s.request("Flaky", jobs)
	s.faults([]simulator.Fault{
		{Path: "/adminconsole/*", Status: 503, Share: 0.15},
		{Path: "/adminconsole/*/*", Status: 500, Share: 0.15},
		{Path: "/adminconsole/instances/*/completed", Status: 503, Share: 0.3},
		{Path: "/adminconsole/instances/*", Delay: 3 * time.Second, Share: 0.1},
	})
	s.startBridge()
	start := time.Now()
	testenv.Eventually(t, 3*time.Minute, "a third of the jobs to complete under faults", func() bool {
		return s.countStatus(ids, adminapi.StatusCompleted) >= jobs/3
	})
	s.faults([]simulator.Fault{{Path: "/adminconsole/*", Status: 503}, {Path: "/adminconsole/*/*", Status: 503}, {Path: "/adminconsole/*/*/*", Status: 503}})
	time.Sleep(down) // the outage itself
	s.faults(nil)
	s.waitStatus(ids, adminapi.StatusCompleted, 3*time.Minute)
	took := time.Since(start)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	report(t, "5 Admin API faults", jobs, "30% 5xx, 10% slow, "+down.String()+" outage", e, took)
}

// 7. The single NATS server restarts (file storage) in the middle of the
// batch: clients reconnect and nothing is lost.
func TestNATSRestart(t *testing.T) {
	jobs := size(20, 60)
	s := newSys(t, sysOptions{concurrency: 2, consumerEnv: []string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=1s"}})
	for range 2 {
		s.startReplica()
	}
	ids := s.request("Restart", jobs)
	s.startBridge()
	testenv.Eventually(t, time.Minute, "the first jobs to complete", func() bool { return s.countStatus(ids, adminapi.StatusCompleted) >= 2 })
	s.nats[0].Kill()
	downAt := time.Now()
	s.nats[0].Restart()
	s.waitStatus(ids, adminapi.StatusCompleted, 3*time.Minute)
	took := time.Since(downAt)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	report(t, "7 NATS restart", jobs, "SIGKILL nats-server, restart", e, took)
}

// 8. A poison job fails on every delivery: it reaches MaxDeliver, lands in
// the dead letters, and the other jobs go through meanwhile.
func TestPoisonJob(t *testing.T) {
	jobs := size(10, 30)
	s := newSys(t, sysOptions{maxDeliver: 4, ackWait: time.Second})
	for range 2 {
		s.startReplica()
	}
	ids := s.request("Poison", jobs)
	poison := ids[0]
	s.faults([]simulator.Fault{{Method: "POST", Path: "/adminconsole/instances/" + strconv.Itoa(poison) + "/completed", Status: 500}})
	s.startBridge()
	took := s.waitStatus(ids[1:], adminapi.StatusCompleted, 2*time.Minute)
	testenv.Eventually(t, time.Minute, "the poison job's dead letter", func() bool { return s.effects(ids).DeadLetters == 1 })
	e := s.settle(ids)
	if e.Completed != jobs-1 || e.Rows != jobs-1 || e.DeadLetters != 1 || s.records()[poison].Status != adminapi.StatusPending {
		t.Fatalf("effects %+v", e)
	}
	report(t, "8 poison job", jobs, "one job fails every delivery (maxDeliver 4)", e, took)
}

// 6. PostgreSQL restarts in the middle of the batch (a private cluster, so
// no other test notices): every job completes once.
func TestPostgresRestart(t *testing.T) {
	jobs := size(16, 40)
	s := newSys(t, sysOptions{private: true, concurrency: 2, consumerEnv: []string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=400ms"}})
	for range 2 {
		s.startReplica()
	}
	ids := s.request("Restart", jobs)
	s.startBridge()
	testenv.Eventually(t, time.Minute, "some jobs to complete", func() bool { return s.countStatus(ids, adminapi.StatusCompleted) >= jobs/4 })
	restartAt := time.Now()
	s.private.Restart()
	s.pg.Reset()
	s.admin.Reset()
	s.waitStatus(ids, adminapi.StatusCompleted, 3*time.Minute)
	took := time.Since(restartAt)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	report(t, "6 PostgreSQL restart", jobs, "pg_ctl restart -m fast", e, took)
}

// 7b. A three-node NATS cluster, the stream with three replicas: the node
// leading the stream is killed mid-batch; the others carry on and nothing
// is lost.
func TestNATSClusterLeaderKilled(t *testing.T) {
	jobs := size(16, 60)
	s := newSys(t, sysOptions{cluster: true, concurrency: 2, consumerEnv: []string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=1s"}})
	for range 3 {
		s.startReplica()
	}
	ids := s.request("Cluster", jobs)
	s.startBridge()
	leader := s.streamLeader()
	testenv.Eventually(t, 2*time.Minute, "the first jobs to complete", func() bool { return s.countStatus(ids, adminapi.StatusCompleted) >= 2 })
	killedAt := time.Now()
	s.natsNode(leader).Kill()
	s.waitStatus(ids, adminapi.StatusCompleted, 3*time.Minute)
	took := time.Since(killedAt)
	e := s.settle(ids)
	s.expectOnce(ids, e, 0)
	if newLeader := s.streamLeader(); newLeader == leader {
		t.Fatalf("the killed node %s still leads the stream", leader)
	}
	report(t, "7b NATS cluster, leader killed", jobs, "SIGKILL the stream leader of 3", e, took)
}

// 9. Every replica dies while one holds a job's last delivery, after the
// server has sent the max-deliveries advisory that no replica could act
// on: both replicas are frozen (SIGSTOP) as the last delivery goes out, so
// their open pull requests let the server give up on the job and send the
// advisory into processes that never run again (SIGKILL). The advisory is
// kept in the advisory stream, and the replicas started afterwards turn the
// job into a dead letter, once.
func TestAllReplicasKilledAtTheLastDelivery(t *testing.T) {
	s := newSys(t, sysOptions{maxDeliver: 2, ackWait: time.Second, consumerEnv: []string{
		"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE=1m", "INSTANCEMGR_TEST_DISABLE_HEARTBEAT=1"}})
	for range 2 {
		s.startReplica()
	}
	ids := s.request("Orphan", 1)
	s.startBridge()
	// No heartbeat: the first delivery's lock runs out after a second and
	// the job goes out a second, last, time.
	testenv.Eventually(t, time.Minute, "the job's last delivery", func() bool { return s.effects(ids).Deliveries >= 2 })
	for _, r := range s.replicas {
		r.Signal(syscall.SIGSTOP)
	}
	frozenAt := time.Now()
	testenv.Eventually(t, time.Minute, "the server to give up on the job", func() bool {
		e := s.effects(ids)
		return e.AckPending == 0 && e.Pending == 0
	})
	for _, r := range s.replicas {
		r.Kill()
	}
	if e := s.effects(ids); e.DeadLetters != 0 {
		t.Fatalf("a dead letter from frozen replicas: %+v", e)
	}
	for range 2 {
		s.startReplica()
	}
	testenv.Eventually(t, 2*time.Minute, "the orphaned job's dead letter", func() bool { return s.effects(ids).DeadLetters >= 1 })
	took := time.Since(frozenAt)
	e := s.effects(ids)
	if e.DeadLetters != 1 || e.Completed != 0 || s.records()[ids[0]].Status != adminapi.StatusPending {
		t.Fatalf("effects %+v, status %s; want one dead letter and the request still Pending", e, s.records()[ids[0]].Status)
	}
	report(t, "9 every replica dies at the last delivery", 1, "SIGSTOP both replicas, advisory sent, SIGKILL, 2 new replicas", e, took)
}
