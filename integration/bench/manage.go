package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/adminapi/simulator/simulatortest"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
	"github.com/edfi-tools/instancemgr/provisioning"
)

// ManageOptions are one run of the manage flavor: N requests POSTed one at
// a time to the bridge's write routes (the door), after a first one
// measured on its own, each waited for until Created, with the bridge's
// default poll interval, against a raw CREATE DATABASE of the same
// template on the same server before each.
type ManageOptions struct {
	Harness    *systest.Harness
	Bin        string
	Master     connstr.Conn
	Template   Template
	N          int
	NamePrefix string // the run's databases start with it; dropped after
}

// ManageResult is what the run measured.
type ManageResult struct {
	Template string        `json:"template"`
	N        int           `json:"n"`
	Poll     time.Duration `json:"pollNs"`
	// Latency is each request's time from its POST to its row Created
	// (the row's lastmodifieddate, the consumer's clock on this machine);
	// Copy each raw CREATE DATABASE's time; OwnCopy the system's copy for
	// the request (instancemgr_copy_seconds); Beyond each request's
	// latency less its own copy: what the system adds to the copy, the
	// figure the disk's speed does not move.
	LatencyP50 time.Duration `json:"latencyP50Ns"`
	LatencyP99 time.Duration `json:"latencyP99Ns"`
	CopyP50    time.Duration `json:"copyP50Ns"`
	CopyP99    time.Duration `json:"copyP99Ns"`
	OwnCopyP50 time.Duration `json:"ownCopyP50Ns"`
	OwnCopyP99 time.Duration `json:"ownCopyP99Ns"`
	BeyondP50  time.Duration `json:"beyondP50Ns"`
	BeyondP99  time.Duration `json:"beyondP99Ns"`
	// Stored is from the POST to its job stored in JetStream: the wait
	// the door's publish leaves of the poll's.
	StoredP50 time.Duration `json:"storedP50Ns"`
	StoredP99 time.Duration `json:"storedP99Ns"`
	// First* are the first request after the processes started, which is
	// not among the N: what opening its path on first use costs.
	FirstLatency time.Duration `json:"firstLatencyNs"`
	FirstCopy    time.Duration `json:"firstCopyNs"`
	FirstStored  time.Duration `json:"firstStoredNs"`
	FirstAnswer  time.Duration `json:"firstAnswerNs"`
}

// manageKey is the run's ODS connection-string key (base64 of 32 bytes).
const manageKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// Manage runs the manage flavor's bridge (serving the door) and one
// consumer, each its own process of the real binary, and measures POST to
// Created one request at a time, so that no request waits for another.
func Manage(t testing.TB, o ManageOptions) ManageResult {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	maint := pool(t, o.Master.PgxConnString(), 1)
	defer maint.Close()
	defer dropPrefix(t, maint, o.NamePrefix)
	adminDB := o.NamePrefix + "_admin"
	if _, err := maint.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{adminDB}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	admin := pool(t, o.Master.WithDatabase(adminDB).PgxConnString(), 1)
	defer admin.Close()
	if _, err := admin.Exec(ctx, testenv.AdminFixture(t)); err != nil {
		t.Fatalf("load the EdFi_Admin fixture: %v", err)
	}
	if _, err := admin.Exec(ctx, simulator.ManageSchema); err != nil {
		t.Fatal(err)
	}
	ns, err := embednats.Start(embednats.Options{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	// The Admin API in front, which authorizes each call to the door.
	sim := simulatortest.Start(t, simulator.Options{Tenants: []string{"default"}, Manage: true,
		AdminDatabases: map[string]string{"default": o.Master.WithDatabase(adminDB).PgxConnString()}})
	defer sim.Close()

	doorPort := testenv.FreePort(t)
	config := func(role string) (path, probes string) {
		port := testenv.FreePort(t)
		path = filepath.Join(dir, role+".yaml")
		listen := ""
		if role == "bridge" {
			listen = fmt.Sprintf(", manageListen: 127.0.0.1:%d", doorPort)
		}
		// The poll interval is the default: the door does not wait for it.
		body := fmt.Sprintf(`adminApi: {flavor: manage, baseUrl: %q%s}
nats: {url: %q}
consumer: {concurrency: 4}
provisioning: {naming: pattern, namePattern: %q, templates: {Minimal: %q, Sample: %q}, encryptionKey: %q, copyStrategy: file_copy}
limits: {instancesPerTenant: -1, createsPerMinute: -1, createsPerMinutePerClient: -1}
metricsAddr: 127.0.0.1:%d
logLevel: warn
tenants:
  default: {master: %q, admin: %q, ods: %q}
`, sim.URL, listen, ns.ClientURL(), o.NamePrefix+"_{name}", o.Template.Name, o.Template.Name, manageKey, port,
			o.Master.ADONet(), o.Master.WithDatabase(adminDB).ADONet(), o.Master.WithDatabase("{0}").ADONet())
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path, fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	sys := SystemOptions{Harness: o.Harness, Bin: o.Bin, NamePrefix: o.NamePrefix}
	var procs []*role
	defer func() {
		for _, p := range procs {
			p.stop(t)
		}
	}()
	for _, name := range []string{"consumer", "bridge"} {
		cfg, probes := config(name)
		p := start(sys, nil, probes, name, 0, cfg)
		procs = append(procs, p)
		p.waitReady(t)
	}
	door := fmt.Sprintf("http://127.0.0.1:%d/v2/odsInstances/manage", doorPort)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, jobs.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	token := sim.Token(t)
	settle(t, maint)

	var latency, copies, own, beyond, stored []time.Duration
	var first manageSample
	// One more request than measured, first: the first request after the
	// processes start pays for what its path opens on first use (the
	// Admin API's connection and its own first query, each statement's
	// first run on its connection); a steady figure leaves it out, and it
	// is given on its own.
	for i := range o.N + 1 {
		raw := fmt.Sprintf("%s_raw%d", o.NamePrefix, i+1)
		began := time.Now()
		if _, err := maint.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{raw}.Sanitize()+" TEMPLATE "+pgx.Identifier{o.Template.Name}.Sanitize()+" STRATEGY FILE_COPY"); err != nil {
			t.Fatal(err)
		}
		took := time.Since(began)
		s := manageRequest(t, procs, door, token, admin, stream, fmt.Sprintf("M%d", i+1))
		if i == 0 {
			first = s
			continue
		}
		copies = append(copies, took)
		latency, own, beyond, stored = append(latency, s.latency), append(own, s.copy), append(beyond, s.latency-s.copy), append(stored, s.stored)
	}
	return ManageResult{Template: o.Template.Spec.Label, N: o.N, Poll: bridge.DefaultInterval,
		LatencyP50: Quantile(latency, 0.5), LatencyP99: Quantile(latency, 0.99), CopyP50: Quantile(copies, 0.5), CopyP99: Quantile(copies, 0.99),
		OwnCopyP50: Quantile(own, 0.5), OwnCopyP99: Quantile(own, 0.99), BeyondP50: Quantile(beyond, 0.5), BeyondP99: Quantile(beyond, 0.99),
		StoredP50: Quantile(stored, 0.5), StoredP99: Quantile(stored, 0.99),
		FirstLatency: first.latency, FirstCopy: first.copy, FirstStored: first.stored, FirstAnswer: first.answer}
}

// manageSample is one request's times from its POST: to the door's
// answer, to its job stored, to its row Created; and its own copy.
type manageSample struct {
	answer, stored, latency, copy time.Duration
}

// manageRequest POSTs one request named name to the door, waits for it
// to be Created, and logs where its time went: the door's answer, the
// job's store, the consumer's job (pull to settle) by phase.
func manageRequest(t testing.TB, procs []*role, door, token string, admin *pgxpool.Pool, stream jetstream.Stream, name string) manageSample {
	t.Helper()
	ctx := context.Background()
	consumer := procs[0].probes + "/metrics"
	before := jobSeconds(testenv.Scrape(t, consumer))
	id, posted := post(t, door, token, name)
	answer := time.Now().UTC().Sub(posted)
	var done time.Time
	testenv.Eventually(t, time.Minute, "manage request "+strconv.Itoa(id)+" Created", func() bool {
		for _, p := range procs {
			p.CheckAlive()
		}
		var status string
		err := admin.QueryRow(ctx, `SELECT status, coalesce(lastmodifieddate, 'epoch') FROM adminapi.odsinstancemanages WHERE id = $1`, id).Scan(&status, &done)
		return err == nil && status == "Created"
	})
	// Created commits before the job's metrics are observed; its time
	// (pull to settle) is observed last.
	var spent func(k string) time.Duration
	testenv.Eventually(t, 10*time.Second, "the request's copy and job in the consumer's metrics", func() bool {
		after := jobSeconds(testenv.Scrape(t, consumer))
		spent = func(k string) time.Duration { return time.Duration((after[k] - before[k]) * float64(time.Second)) }
		return spent("copy") > 0 && spent("job") > 0
	})
	m, err := stream.GetLastMsgForSubject(ctx, jobs.NewCreate("default", id, "").OnLine(provisioning.LineManage).Subject())
	if err != nil {
		t.Fatalf("the job of request %d: %v", id, err)
	}
	s := manageSample{answer: answer, stored: m.Time.Sub(posted), latency: done.Sub(posted), copy: spent("copy")}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	t.Logf("request %d (ms from its POST): answered %s, job stored %s, Created %s, beyond its copy %s; consumer (pull to settle) %s: copy %s, rest of the database phase %s, registration %s, Admin API %s",
		id, ms(s.answer), ms(s.stored), ms(s.latency), ms(s.latency-s.copy), ms(spent("job")), ms(s.copy), ms(spent("database")-s.copy), ms(spent("registration")), ms(spent("adminapi")))
	return s
}

// post POSTs a Minimal request named name to the door and returns its id
// and when the POST was sent, in UTC as the rows' dates are.
func post(t testing.TB, door, token, name string) (int, time.Time) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, door, strings.NewReader(`{"name":"`+name+`","databaseTemplate":"Minimal"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	posted := time.Now().UTC()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	id, err := strconv.Atoi(loc[strings.LastIndex(loc, "/")+1:])
	if resp.StatusCode != http.StatusAccepted || err != nil {
		t.Fatalf("POST %s: %d, Location %q", door, resp.StatusCode, loc)
	}
	return id, posted
}
