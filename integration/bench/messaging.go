package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/adminapi/simulator"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/embednats"
	"github.com/edfi-tools/instancemgr/internal/limits"
	"github.com/edfi-tools/instancemgr/jobs"
)

// MessagingOptions size the messaging benchmark.
type MessagingOptions struct {
	// Jobs is how many create jobs are published; every run consumes all
	// of them. Default 2000.
	Jobs int
	// Concurrency is the consumer's concurrency, and the number of workers
	// of the plain nats.go consumers. Default consumer.DefaultConcurrency.
	Concurrency int
	// Rounds repeats every run on fresh jobs and durables; the figures are
	// each run's median round. Default 1.
	Rounds int
	// Dir holds JetStream's files; empty for a temporary directory that is
	// removed afterwards.
	Dir string
	// ProfileDir, when set, receives a CPU profile of every run and round
	// (pprof), named after the run: where a run's CPU goes, the measured
	// part only.
	ProfileDir string
}

// profile is where run name's CPU profile of round goes: "" for none.
func (o MessagingOptions) profile(name string, round int) string {
	if o.ProfileDir == "" {
		return ""
	}
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	slug := strings.Join(words, "-")
	return filepath.Join(o.ProfileDir, fmt.Sprintf("%s-c%d-r%d.pprof", slug, o.Concurrency, round))
}

func (o MessagingOptions) withDefaults() MessagingOptions {
	if o.Jobs <= 0 {
		o.Jobs = 2000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = consumer.DefaultConcurrency
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	return o
}

// The runs of the messaging benchmark, in the order they run.
const (
	RunPlainAck       = "plain nats.go: Next + Ack"
	RunPlainDoubleAck = "plain nats.go: Next + DoubleAck"
	RunFrameworkNoAPI = "consumer, no-op Admin API"
	RunFramework      = "consumer, Admin API simulator"
)

// MessagingRun is one consumer's pass over every job.
type MessagingRun struct {
	Name    string `json:"name"`
	Round   int    `json:"round"`
	Durable string `json:"durable"`
	// LastSeq is the stream sequence of the round's last job.
	LastSeq uint64 `json:"lastSeq"`
	// Seconds runs from the consumer's start (every job already stored)
	// to the last ack: confirmed by the server for DoubleAck, flushed to
	// it for Ack.
	Seconds    float64 `json:"seconds"`
	JobsPerSec float64 `json:"jobsPerSecond"`
	// Acked counts the deliveries the client acked, AckedTwice the stream
	// sequences among them acked more than once, Other the deliveries
	// that ended otherwise (retried, terminated, released).
	Acked      int `json:"acked"`
	AckedTwice int `json:"ackedTwice"`
	Other      int `json:"other"`
	// What the server says of the durable afterwards.
	ServerAckFloor   uint64 `json:"serverAckFloor"` // stream sequence
	ServerAckPending int    `json:"serverAckPending"`
	ServerPending    uint64 `json:"serverPending"`
	// Per job, for the whole process (the embedded NATS server and the
	// simulator included): CPU time (user + system), heap allocations.
	CPUMicrosPerJob  float64 `json:"cpuMicrosPerJob"`
	AllocsPerJob     float64 `json:"allocsPerJob"`
	AllocBytesPerJob float64 `json:"allocBytesPerJob"`
	// PeakHeapBytes is the largest live-and-unswept heap seen during the
	// run, sampled every 5 ms, for the whole process.
	PeakHeapBytes uint64 `json:"peakHeapBytes"`
}

// MessagingResult is the messaging benchmark's figures.
type MessagingResult struct {
	Jobs        int `json:"jobs"`
	Concurrency int `json:"concurrency"`
	Rounds      int `json:"rounds"`
	GOMAXPROCS  int `json:"gomaxprocs"`
	// PublishSeconds is how long publishing a round's jobs took
	// (asynchronous publishes with the bridge's options), before any
	// consumer ran; the slowest round.
	PublishSeconds float64 `json:"publishSeconds"`
	// Runs is each run's median round by jobs/s; AllRuns every round.
	Runs    []MessagingRun `json:"runs"`
	AllRuns []MessagingRun `json:"allRuns"`
	// Ratio is the consumer's jobs/s with the simulator over plain
	// nats.go's Next + Ack; RatioNoAPI the same without the Admin API.
	Ratio      float64 `json:"ratio"`
	RatioNoAPI float64 `json:"ratioNoAdminApi"`
	// SimulatorCompleted counts the instances the simulator has Completed,
	// SimulatorCompletedCalls the completed calls it received.
	SimulatorCompleted      int `json:"simulatorCompleted"`
	SimulatorCompletedCalls int `json:"simulatorCompletedCalls"`
	// SimulatorConnections counts the TCP connections the simulator
	// accepted: a client that keeps its connections alive opens about as
	// many as it runs calls at once.
	SimulatorConnections int64 `json:"simulatorConnections"`
}

// Run returns the run of that name.
func (r MessagingResult) Run(name string) (MessagingRun, bool) {
	for _, x := range r.Runs {
		if x.Name == name {
			return x, true
		}
	}
	return MessagingRun{}, false
}

// Table is the result as printed.
func (r MessagingResult) Table() Table {
	title := fmt.Sprintf("Messaging overhead: %d create jobs, concurrency %d, GOMAXPROCS %d", r.Jobs, r.Concurrency, r.GOMAXPROCS)
	if r.Rounds > 1 {
		title += fmt.Sprintf(", median of %d rounds", r.Rounds)
	}
	t := Table{
		Title:  title,
		Header: []string{"run", "jobs/s", "of plain Ack", "seconds", "CPU µs/job", "allocs/job", "KB/job", "peak heap MB"},
	}
	base, _ := r.Run(RunPlainAck)
	for _, x := range r.Runs {
		share := "-"
		if base.JobsPerSec > 0 {
			share = fmt.Sprintf("%.0f %%", 100*x.JobsPerSec/base.JobsPerSec)
		}
		t.Rows = append(t.Rows, []string{
			x.Name, fmt.Sprintf("%.0f", x.JobsPerSec), share, fmt.Sprintf("%.2f", x.Seconds),
			fmt.Sprintf("%.0f", x.CPUMicrosPerJob), fmt.Sprintf("%.0f", x.AllocsPerJob),
			fmt.Sprintf("%.1f", x.AllocBytesPerJob/1024), fmt.Sprintf("%.1f", float64(x.PeakHeapBytes)/(1<<20)),
		})
	}
	t.Notes = []string{
		fmt.Sprintf("Ratio (consumer with the simulator / plain Next + Ack): %.0f %%; without the Admin API: %.0f %%. Target: at least 50 %%.", 100*r.Ratio, 100*r.RatioNoAPI),
		fmt.Sprintf("The simulator accepted %d TCP connections for %d jobs' %d HTTP calls (and one token request).", r.SimulatorConnections, r.Jobs*r.Rounds, 2*r.Jobs*r.Rounds),
		"Each run is its own durable on the same stream, one embedded NATS server (file storage), in one process; every job was stored before the first run (publishing took " +
			fmt.Sprintf("%.2f s", r.PublishSeconds) + "). Time runs from the consumer's start to the last ack (DoubleAck: confirmed; Ack: flushed).",
		"The consumer is app.NewConsumer with the real handlers, metrics, heartbeats (ack wait / 3), middleware and a JSON logger at info (to io.Discard); its database step is a benchmark-only no-op engine and registry. " +
			"With the simulator, each job makes two HTTP calls (GET the instance, POST completed); the no-op Admin API run makes none.",
		"CPU, allocations and heap are the whole process's: the NATS server and the simulator are in them.",
	}
	if r.Rounds > 1 {
		for _, x := range r.Runs {
			var each []string
			for _, y := range r.AllRuns {
				if y.Name == x.Name {
					each = append(each, fmt.Sprintf("%.0f", y.JobsPerSec))
				}
			}
			t.Notes = append(t.Notes, fmt.Sprintf("%s, jobs/s by round: %s.", x.Name, strings.Join(each, ", ")))
		}
	}
	return t
}

// Messaging measures the consumer framework's jobs/s beside a plain nats.go
// pull consumer, on one embedded server, over the same stored jobs.
func Messaging(ctx context.Context, o MessagingOptions) (MessagingResult, error) {
	o = o.withDefaults()
	res := MessagingResult{Jobs: o.Jobs, Concurrency: o.Concurrency, Rounds: o.Rounds, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "instancemgr-bench-messaging-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	srv, err := embednats.Start(embednats.Options{StoreDir: dir})
	if err != nil {
		return res, err
	}
	defer srv.Shutdown()

	sim, simURL, conns, stopSim, err := startSimulator()
	if err != nil {
		return res, err
	}
	defer stopSim()
	const clientID, secret = "bench", "bench-secret-0123456789"
	if err := sim.RegisterClient(clientID, secret); err != nil {
		return res, err
	}
	cfg := &config.Config{
		AdminAPI: config.AdminAPI{BaseURL: simURL, ClientID: clientID, ClientSecret: secret},
		NATS:     config.NATS{URL: srv.ClientURL()},
		Consumer: config.Consumer{Concurrency: o.Concurrency},
		// Thousands of creates in one tenant: the rate is what is measured.
		Limits: limits.Limits{InstancesPerTenant: -1, CreatesPerMinute: -1, CreatesPerMinutePerClient: -1},
		// Required by the configuration; never connected to: the tenant's
		// engine and registry are the benchmark-only no-ops.
		Tenants: map[string]config.TenantEntry{config.DefaultTenant: {
			Master: "host=127.0.0.1;port=5432;username=bench;database=postgres",
			Admin:  "host=127.0.0.1;port=5432;username=bench;database=EdFi_Admin",
			ODS:    "host=127.0.0.1;port=5432;username=bench;database={0}",
		}},
	}
	if err := cfg.Complete(func(string) string { return "" }); err != nil {
		return res, err
	}
	sc := cfg.StreamConfig().WithDefaults()

	nc, js, err := connect(srv.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	if _, err := jobs.Ensure(ctx, js, sc); err != nil {
		return res, err
	}
	stream, err := js.Stream(ctx, sc.Stream)
	if err != nil {
		return res, err
	}
	// The real client, with its metrics and retries as a replica has it.
	api, err := adminapi.New(adminapi.Config{
		BaseURL: cfg.AdminAPI.BaseURL, TokenURL: cfg.AdminAPI.TokenURL, ClientID: clientID, ClientSecret: secret,
		Timeout: cfg.AdminAPI.Timeout.D(), MaxAttempts: cfg.AdminAPI.MaxAttempts, Observe: adminapi.NewMetrics(prometheus.NewRegistry()).Observe,
	})
	if err != nil {
		return res, err
	}
	if err := api.CheckToken(ctx); err != nil { // the token is fetched once per replica, not per job
		return res, err
	}

	for round := 1; round <= o.Rounds; round++ {
		// Each round starts from an empty stream: its durables see only
		// its own jobs.
		if err := stream.Purge(ctx); err != nil {
			return res, err
		}
		// Seeded in bulk: one request at a time checks each name against
		// every instance, quadratic in the jobs.
		reqs := make([]adminapi.InstanceRequest, o.Jobs)
		for i := range reqs {
			reqs[i] = adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: fmt.Sprintf("District %d-%d", round, i+1), InstanceType: "enterprise"}
		}
		insts, err := sim.CreateInstances("", reqs, "")
		if err != nil {
			return res, fmt.Errorf("request the round's instances: %w", err)
		}
		batch := make([]jobs.Job, o.Jobs)
		names := make(map[int]string, len(insts))
		for i, inst := range insts {
			batch[i] = jobs.NewCreate("default", inst.ID, reqs[i].Name)
			names[inst.ID] = reqs[i].Name
		}
		start := time.Now()
		if err := publish(ctx, js, batch); err != nil {
			return res, err
		}
		res.PublishSeconds = max(res.PublishSeconds, time.Since(start).Seconds())
		info, err := stream.Info(ctx)
		if err != nil {
			return res, err
		}
		last := info.State.LastSeq

		add := func(run MessagingRun, err error) error {
			run.Round, run.LastSeq = round, last
			res.AllRuns = append(res.AllRuns, run)
			return err
		}
		for _, double := range []bool{false, true} {
			name, durable := RunPlainAck, fmt.Sprintf("bench-plain-ack-%d", round)
			if double {
				name, durable = RunPlainDoubleAck, fmt.Sprintf("bench-plain-doubleack-%d", round)
			}
			psc := sc
			psc.Consumer = durable
			if err := add(runPlain(ctx, srv.ClientURL(), psc, o, round, name, double)); err != nil {
				return res, err
			}
		}
		noAPI := *cfg
		noAPI.NATS.Consumer = fmt.Sprintf("bench-noapi-%d", round)
		if err := add(runFramework(ctx, &noAPI, o, round, RunFrameworkNoAPI, benchOnlyAdminAPI{names: names})); err != nil {
			return res, err
		}
		// The real durable, which carries on from round to round.
		if err := add(runFramework(ctx, cfg, o, round, RunFramework, api)); err != nil {
			return res, err
		}
	}
	res.Runs = medians(res.AllRuns)

	res.SimulatorConnections = conns.Load()
	for _, in := range sim.Instances() {
		if in.Status == adminapi.StatusCompleted {
			res.SimulatorCompleted++
		}
		res.SimulatorCompletedCalls += in.Calls["completed"]
	}
	base, _ := res.Run(RunPlainAck)
	if base.JobsPerSec > 0 {
		fw, _ := res.Run(RunFramework)
		na, _ := res.Run(RunFrameworkNoAPI)
		res.Ratio, res.RatioNoAPI = fw.JobsPerSec/base.JobsPerSec, na.JobsPerSec/base.JobsPerSec
	}
	return res, nil
}

// medians is each run's median round by jobs/s (the lower of the middle
// two for an even count), in the order the runs first appear.
func medians(all []MessagingRun) []MessagingRun {
	var names []string
	by := map[string][]MessagingRun{}
	for _, r := range all {
		if _, ok := by[r.Name]; !ok {
			names = append(names, r.Name)
		}
		by[r.Name] = append(by[r.Name], r)
	}
	out := make([]MessagingRun, 0, len(names))
	for _, n := range names {
		rs := by[n]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].JobsPerSec < rs[j].JobsPerSec })
		out = append(out, rs[(len(rs)-1)/2])
	}
	return out
}

// startSimulator serves a simulator over real HTTP on a loopback port and
// counts the connections it accepts.
func startSimulator() (*simulator.Simulator, string, *atomic.Int64, func(), error) {
	sim := simulator.New(simulator.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, nil, err
	}
	conns := new(atomic.Int64)
	hs := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	stop := func() {
		_ = hs.Close()
		<-done
		sim.Close()
	}
	return sim, "http://" + ln.Addr().String(), conns, stop, nil
}

func connect(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// publish stores every job as the bridge publishes it (message ID, on its
// own subject, expecting it to be the subject's first), asynchronously.
func publish(ctx context.Context, js jetstream.JetStream, batch []jobs.Job) error {
	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	for _, j := range batch {
		data, err := jobs.Encode(j)
		if err != nil {
			return err
		}
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: j.Subject(), Data: data, Header: nats.Header{}},
			jetstream.WithMsgID(j.ID), jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			return fmt.Errorf("publish %s: %w", j.ID, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		}
	}
	return nil
}

// tally counts how the deliveries of one run ended.
type tally struct {
	want  int
	mu    sync.Mutex
	acked map[uint64]int // by stream sequence
	n     int
	other int
	done  chan struct{}
}

func newTally(want int) *tally {
	return &tally{want: want, acked: make(map[uint64]int, want), done: make(chan struct{})}
}

func (t *tally) ack(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.acked[seq]++
	if t.n++; t.n == t.want {
		close(t.done)
	}
}

func (t *tally) fail() {
	t.mu.Lock()
	t.other++
	t.mu.Unlock()
}

func (t *tally) fill(r *MessagingRun) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.Acked, r.Other = t.n, t.other
	for _, n := range t.acked {
		if n > 1 {
			r.AckedTwice++
		}
	}
}

func (t *tally) wait(ctx context.Context, what string) error {
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("%s: %d of %d jobs acked (%d ended otherwise) when stopped: %w", what, t.n, t.want, t.other, ctx.Err())
	}
}

// runPlain is the baseline: workers that each pull one message (Next),
// ack it (Ack, or DoubleAck and wait for the server's answer) and pull
// again. No decoding, no handler, no heartbeats.
func runPlain(ctx context.Context, url string, sc jobs.Config, o MessagingOptions, round int, name string, double bool) (MessagingRun, error) {
	run := MessagingRun{Name: name, Durable: sc.Consumer}
	nc, js, err := connect(url)
	if err != nil {
		return run, err
	}
	defer nc.Close()
	cons, err := jobs.EnsureConsumer(ctx, js, sc)
	if err != nil {
		return run, err
	}
	t := newTally(o.Jobs)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m, err := startMeasure(o.profile(name, round))
	if err != nil {
		return run, err
	}
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for runCtx.Err() == nil {
				pullCtx, cancelPull := context.WithTimeout(runCtx, 5*time.Second)
				msg, err := cons.Next(jetstream.FetchContext(pullCtx))
				cancelPull()
				if err != nil {
					continue
				}
				md, err := msg.Metadata()
				if err != nil {
					t.fail()
					continue
				}
				if double {
					err = msg.DoubleAck(runCtx)
				} else {
					err = msg.Ack()
				}
				if err != nil {
					t.fail()
					continue
				}
				t.ack(md.Sequence.Stream)
			}
		})
	}
	err = t.wait(ctx, name)
	if err == nil && !double {
		err = nc.FlushWithContext(ctx) // every ack has reached the server
	}
	m.stop(&run, o.Jobs)
	cancel()
	wg.Wait()
	if err != nil {
		return run, err
	}
	t.fill(&run)
	return run, serverView(ctx, js, sc, &run)
}

// runFramework runs one consumer replica as app.NewConsumer builds it, with
// the benchmark-only engine and registry, until every job is acked.
func runFramework(ctx context.Context, cfg *config.Config, o MessagingOptions, round int, name string, api consumer.AdminAPI) (MessagingRun, error) {
	run := MessagingRun{Name: name, Durable: cfg.NATS.Consumer}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	nc, js, err := app.ConnectNATS(ctx, cfg, "instancemgr-bench", log)
	if err != nil {
		return run, err
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	t := newTally(o.Jobs)
	var beats atomic.Int64
	deps := app.ConsumerDeps{
		JS: js, API: api, Tenants: newBenchOnlyTenants(), Log: log, Metrics: consumer.NewMetrics(reg),
		Beat: func() { beats.Add(1) },
		TestSeams: consumer.TestSeams{Observe: func(out consumer.Outcome) {
			if out.Result == consumer.Acked {
				t.ack(out.Delivery.StreamSeq)
			} else {
				t.fail()
			}
		}},
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := app.NewConsumer(runCtx, cfg, deps)
	if err != nil {
		return run, err
	}
	m, err := startMeasure(o.profile(name, round))
	if err != nil {
		return run, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	err = t.wait(ctx, name)
	m.stop(&run, o.Jobs)
	cancel()
	if rerr := <-done; err == nil {
		err = rerr
	}
	if err != nil {
		return run, err
	}
	t.fill(&run)
	return run, serverView(ctx, js, cfg.StreamConfig().WithDefaults(), &run)
}

// serverView records what the server says of the run's durable.
func serverView(ctx context.Context, js jetstream.JetStream, sc jobs.Config, run *MessagingRun) error {
	cons, err := js.Consumer(ctx, sc.Stream, sc.Consumer)
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	run.ServerAckFloor, run.ServerAckPending, run.ServerPending = info.AckFloor.Stream, info.NumAckPending, info.NumPending
	return nil
}

// measure samples the process's CPU time, allocations and peak heap over a
// run.
type measure struct {
	start      time.Time
	cpu        time.Duration
	mallocs    uint64
	allocBytes uint64
	peak       atomic.Uint64
	quit, done chan struct{}
	profile    *os.File
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

// startMeasure starts measuring; with a profile path, it writes a CPU
// profile of the measured part there.
func startMeasure(profile string) (*measure, error) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	m := &measure{mallocs: ms.Mallocs, allocBytes: ms.TotalAlloc, quit: make(chan struct{}), done: make(chan struct{})}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("CPU profile %s: %w", profile, err)
		}
		m.profile = f
	}
	m.cpu = processCPU()
	go func() {
		defer close(m.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		s := make([]metrics.Sample, len(heapSample))
		copy(s, heapSample)
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > m.peak.Load() {
				m.peak.Store(v)
			}
			select {
			case <-m.quit:
				return
			case <-tick.C:
			}
		}
	}()
	m.start = time.Now()
	return m, nil
}

func (m *measure) stop(run *MessagingRun, jobs int) {
	elapsed := time.Since(m.start)
	cpu := processCPU() - m.cpu
	if m.profile != nil {
		pprof.StopCPUProfile()
		m.profile.Close()
	}
	close(m.quit)
	<-m.done
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := float64(jobs)
	run.Seconds = elapsed.Seconds()
	run.JobsPerSec = n / elapsed.Seconds()
	run.CPUMicrosPerJob = float64(cpu.Microseconds()) / n
	run.AllocsPerJob = float64(ms.Mallocs-m.mallocs) / n
	run.AllocBytesPerJob = float64(ms.TotalAlloc-m.allocBytes) / n
	run.PeakHeapBytes = m.peak.Load()
}

// CheckMessaging reports every way r falls short of "each run acked every
// job exactly once, and the simulator completed each instance once": the
// completeness the benchmark's figures rest on.
func CheckMessaging(r MessagingResult) error {
	var problems []string
	for _, run := range r.AllRuns {
		if run.Acked != r.Jobs || run.AckedTwice != 0 || run.Other != 0 {
			problems = append(problems, fmt.Sprintf("%s round %d: %d acked of %d, %d acked twice, %d ended otherwise", run.Name, run.Round, run.Acked, r.Jobs, run.AckedTwice, run.Other))
		}
		if run.ServerAckFloor != run.LastSeq || run.ServerAckPending != 0 || run.ServerPending != 0 {
			problems = append(problems, fmt.Sprintf("%s round %d: the server has ack floor %d, last job %d, %d ack pending, %d pending", run.Name, run.Round, run.ServerAckFloor, run.LastSeq, run.ServerAckPending, run.ServerPending))
		}
	}
	if len(r.AllRuns) != 4*r.Rounds || len(r.Runs) != 4 {
		problems = append(problems, fmt.Sprintf("%d runs in %d rounds, %d medians; want 4 a round", len(r.AllRuns), r.Rounds, len(r.Runs)))
	}
	if n := r.Jobs * r.Rounds; r.SimulatorCompleted != n || r.SimulatorCompletedCalls != n {
		problems = append(problems, fmt.Sprintf("simulator: %d of %d instances Completed, %d completed calls", r.SimulatorCompleted, n, r.SimulatorCompletedCalls))
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("%w (messaging): %v", errIncomplete, problems)
}
