package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// DevOptions are a run of `instancemgr dev` with its defaults (poll
// interval, replicas, workers, copy strategy): only where it keeps its
// state and which template and names it uses are the run's own.
type DevOptions struct {
	Harness    *systest.Harness
	Bin        string
	Postgres   string // the server's URL
	Template   Template
	N          int
	NamePrefix string // the run's databases, EdFi_Admin and data; dropped after
}

// DevResult is what the run measured.
type DevResult struct {
	Template string        `json:"template"`
	N        int           `json:"n"`
	Poll     time.Duration `json:"pollNs"`
	// PublishToDone is from the first job stored in JetStream to the last
	// completed the simulator received.
	PublishToDone time.Duration `json:"publishToDoneNs"`
	// PostToDone is from the first request's POST to the last completed:
	// what the Admin Console sees.
	PostToDone time.Duration `json:"postToDoneNs"`
	// Published is from the first job stored to the last: how far the
	// bridge's polls spread the burst.
	Published time.Duration `json:"publishedNs"`
	// PickupP50 and PickupMax are from a request to a worker's first read
	// of it.
	PickupP50, PickupMax time.Duration
	// PerJob is each phase's mean per job, from dev's consumer metrics
	// ("job" is the whole job).
	PerJob map[string]time.Duration
}

var (
	devSimulator = regexp.MustCompile(`Admin API simulator\s+(http://\S+)`)
	devNATS      = regexp.MustCompile(`NATS \(embedded\)\s+(nats://\S+)`)
	devPoll      = regexp.MustCompile(`bridge polls every (\S+);`)
	devProbes    = regexp.MustCompile(`probes, metrics\s+(http://\S+)/healthz`)
)

// Dev starts `instancemgr dev`, asks for N instances at once as the Admin
// Console would, waits until all are Completed, and stops it.
func Dev(t testing.TB, o DevOptions) DevResult {
	t.Helper()
	dir := t.TempDir()
	pg := pool(t, o.Postgres, 1)
	defer pg.Close()
	defer dropPrefix(t, pg, o.NamePrefix)
	dev := o.Harness.Start(o.NamePrefix+"-dev", o.Bin, nil, "dev", "-postgres", o.Postgres, "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0", "-nats-port", "0",
		"-data-dir", filepath.Join(dir, "data"), "-template", o.Template.Name, "-admin-database", o.NamePrefix+"_admin",
		"-name-pattern", o.NamePrefix+"_{name}", "-log-level", devLogLevel())
	defer func() { _ = dev.Stop(syscall.SIGINT, 30*time.Second) }()
	var banner string
	testenv.Eventually(t, time.Minute, "dev's banner", func() bool {
		dev.CheckAlive()
		banner = dev.Log()
		return devSimulator.MatchString(banner) && devNATS.MatchString(banner) && devPoll.MatchString(banner) && devProbes.MatchString(banner)
	})
	simURL, natsURL := devSimulator.FindStringSubmatch(banner)[1], devNATS.FindStringSubmatch(banner)[1]
	poll, err := time.ParseDuration(devPoll.FindStringSubmatch(banner)[1])
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(simURL+"/connect/register", url.Values{"ClientId": {"bench"}, "ClientSecret": {"bench-" + o.NamePrefix}, "DisplayName": {"bench"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	console, err := adminapi.New(adminapi.Config{BaseURL: simURL, TokenURL: simURL + "/connect/token", ClientID: "bench", ClientSecret: "bench-" + o.NamePrefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := console.Tenants(context.Background()); err != nil { // the token, before the clock starts
		t.Fatal(err)
	}
	// What dev's start wrote (its EdFi_Admin, its schemas) is on disk
	// before the clock starts, as the raw runs' server is: the first
	// FILE_COPY checkpoint would otherwise write it, and the first copies
	// of either strategy compete with its write-back.
	settle(t, pg)
	ids := make([]int, o.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	start := time.Now()
	for i := range o.N {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			inst, err := console.CreateOdsInstance(context.Background(), "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: fmt.Sprintf("D%d", i+1), InstanceType: "enterprise"})
			if err != nil {
				t.Error(err)
			}
			ids[i] = inst.ID
		})
	}
	wg.Wait()
	var last time.Time
	var pickup []time.Duration
	testenv.Eventually(t, 2*time.Minute+time.Duration(o.N)*10*time.Second, fmt.Sprintf("%d dev requests Completed", o.N), func() bool {
		resp, err := http.Get(simURL + "/_simulator/instances")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var recs []simulator.InstanceState
		if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
			return false
		}
		byID := map[int]simulator.InstanceState{}
		for _, r := range recs {
			byID[r.ID] = r
		}
		last, pickup = time.Time{}, nil
		for _, id := range ids {
			r := byID[id]
			if r.Status != adminapi.StatusCompleted {
				return false
			}
			if r.Timeline.Completed.After(last) {
				last = r.Timeline.Completed
			}
			pickup = append(pickup, r.Timeline.FirstWorkerRead.Sub(r.Timeline.Requested))
		}
		return true
	})
	perJob := map[string]time.Duration{}
	for k, v := range jobSeconds(testenv.Scrape(t, devProbes.FindStringSubmatch(banner)[1]+"/metrics")) {
		perJob[k] = time.Duration(v / float64(o.N) * float64(time.Second))
	}
	if os.Getenv("INSTANCEMGR_BENCH_LOGS") != "" {
		t.Logf("dev's log:\n%s", dev.Log())
	}
	first, nth := storedSpan(t, natsURL, o.N)
	return DevResult{Template: o.Template.Spec.Label, N: o.N, Poll: poll, PublishToDone: last.Sub(first), PostToDone: last.Sub(start),
		Published: nth.Sub(first), PickupP50: Quantile(pickup, 0.5), PickupMax: slices.Max(pickup), PerJob: perJob}
}

// devLogLevel is dev's log level: debug with INSTANCEMGR_BENCH_LOGS, to
// look into a figure.
func devLogLevel() string {
	if os.Getenv("INSTANCEMGR_BENCH_LOGS") != "" {
		return "debug"
	}
	return "warn"
}
