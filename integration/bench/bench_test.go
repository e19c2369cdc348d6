package bench_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/integration/bench"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
)

// size is how much a run measures: "full" for `task bench`
// (INSTANCEMGR_BENCH=full), small otherwise, so that `go test ./...` keeps
// the harness working without the time a full run takes.
type size struct {
	full      bool
	templates []bench.TemplateSpec
	n         int
	replicas  []int
	repeat    int
}

func benchSize(t *testing.T) size {
	sz := size{templates: []bench.TemplateSpec{bench.Tiny}, n: 4, replicas: []int{1, 2}, repeat: 1}
	if os.Getenv("INSTANCEMGR_BENCH") == "full" {
		sz = size{full: true, templates: []bench.TemplateSpec{bench.Small, bench.Large, bench.ODS}, n: 80, replicas: []int{1, 2, 4}, repeat: 5}
	}
	// A part of a run, to look into one figure:
	// INSTANCEMGR_BENCH_TEMPLATES=large INSTANCEMGR_BENCH_REPLICAS=1,2 INSTANCEMGR_BENCH_N=40.
	if v := os.Getenv("INSTANCEMGR_BENCH_TEMPLATES"); v != "" {
		sz.templates = nil
		for _, label := range strings.Split(v, ",") {
			i := slices.IndexFunc(bench.Templates, func(s bench.TemplateSpec) bool { return s.Label == label })
			if i < 0 {
				t.Fatalf("INSTANCEMGR_BENCH_TEMPLATES: no template %q (tiny, small, large, ods)", label)
			}
			sz.templates = append(sz.templates, bench.Templates[i])
		}
	}
	if v := os.Getenv("INSTANCEMGR_BENCH_REPLICAS"); v != "" {
		sz.replicas = nil
		for _, r := range strings.Split(v, ",") {
			n, err := strconv.Atoi(r)
			if err != nil || n < 1 {
				t.Fatalf("INSTANCEMGR_BENCH_REPLICAS: %q", r)
			}
			sz.replicas = append(sz.replicas, n)
		}
	}
	for key, dst := range map[string]*int{"INSTANCEMGR_BENCH_N": &sz.n, "INSTANCEMGR_BENCH_REPEAT": &sz.repeat} {
		if v := os.Getenv(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s: %q", key, v)
			}
			*dst = n
		}
	}
	return sz
}

// perReplica is consumer.concurrency in every run: the default.
const perReplica = 4

// report is what a run writes as JSON.
type report struct {
	When     time.Time              `json:"when"`
	Full     bool                   `json:"full"`
	Machine  bench.Machine          `json:"machine"`
	Runs     []row                  `json:"runs"`
	Strategy []bench.RawResult      `json:"copyStrategy"`
	Pickup   []bench.SystemResult   `json:"pickup"`
	Tables   []bench.Table          `json:"tables"`
	Extra    map[string]any         `json:"extra,omitempty"`
	Template []bench.Template       `json:"templates"`
	Raw      [][]bench.RawResult    `json:"rawRepeats"`
	Protocol [][]bench.RawResult    `json:"rawProtocolRepeats"`
	System   [][]bench.SystemResult `json:"systemRepeats"`
}

type row struct {
	Raw      bench.RawResult    `json:"raw"`
	Protocol bench.RawResult    `json:"rawProtocol"`
	System   bench.SystemResult `json:"system"`
	Ratio    float64            `json:"systemOverRaw"`
	// ProtocolRatio is raw with the ownership protocol's statements over
	// plain raw: what the protocol costs at the database.
	ProtocolRatio float64 `json:"rawProtocolOverRaw"`
}

// The system against the physical limit: for each template and replica
// count, the same N creates done straight on PostgreSQL (raw) and through
// the whole system (system), at the same concurrency.
func TestBench(t *testing.T) {
	sz := benchSize(t)
	// INSTANCEMGR_BENCH_SERVER=memory: a private cluster on /dev/shm with
	// fsync off, where a copy costs processors and memory only, so that the
	// system's own overhead shows through without a disk's noise.
	h := systest.New(t)
	url := ""
	if os.Getenv("INSTANCEMGR_BENCH_SERVER") == "memory" {
		url = h.Postgres("/dev/shm").URL
	}
	world := itest.NewWorld(t, url)
	bins, err := systest.Build(h.Dir())
	if err != nil {
		t.Fatal(err)
	}
	bin := bins.Instancemgr
	rep := report{When: time.Now().UTC(), Full: sz.full, Machine: bench.ThisMachine(t, world.PG)}
	const poll = time.Second
	strategy := "file_copy"
	if v := os.Getenv("INSTANCEMGR_BENCH_STRATEGY"); v != "" {
		strategy = v
	}
	main := bench.Table{
		Title:  fmt.Sprintf("Creates: raw PostgreSQL against the whole system (N=%d, %d jobs per replica at once, STRATEGY %s, median of %d)", sz.n, perReplica, strings.ToUpper(strategy), sz.repeat),
		Header: []string{"template", "size", "replicas", "raw s", "system s", "system/raw", "pairs min-max", "raw+protocol s", "raw+protocol/raw", "latency p50 ms", "p95 ms", "p99 ms", "pickup p50 ms", "pickup p99 ms", "poll ms", "peak RSS/consumer"},
	}
	phases := bench.Table{
		Title:  "Where a create's time goes: mean per job, from the consumers' metrics (the median system run of each row above)",
		Header: []string{"template", "replicas", "pull to settle ms", "database ms", "registration ms", "adminapi ms", "rest ms", "consumers+bridge CPU ms", "NATS+simulator CPU ms"},
	}
	strategies := bench.Table{
		Title:  fmt.Sprintf("Copy strategy: raw creates (N=%d, %d at once, median of %d)", sz.n, perReplica, sz.repeat),
		Header: []string{"template", "size", "strategy", "raw s", "per database s"},
	}
	// Raw and system copy the template the same way: the configuration's
	// default.
	for _, spec := range sz.templates {
		tmpl := bench.MakeTemplate(t, world.PG, world.Master, world.Prefix+"_tmpl_"+spec.Label, spec)
		rep.Template = append(rep.Template, tmpl)
		_, adminDB := world.AdminDatabase(t, "admin_"+spec.Label)
		// One run not counted: the template's pages into the cache, the
		// server's first checkpoints behind.
		bench.Raw(t, bench.RawOptions{Master: world.Master, AdminDB: adminDB, Template: tmpl, N: sz.n, Concurrency: perReplica, NamePrefix: world.Prefix + "_" + spec.Label + "_warm"})
		for _, replicas := range sz.replicas {
			var raws, protocols []bench.RawResult
			var systems []bench.SystemResult
			for i := range sz.repeat {
				tag := fmt.Sprintf("%s_%s_%d_%d", world.Prefix, spec.Label, replicas, i)
				ro := bench.RawOptions{Master: world.Master, AdminDB: adminDB, Template: tmpl, N: sz.n, Concurrency: replicas * perReplica, Strategy: strategy, NamePrefix: tag + "_raw"}
				raws = append(raws, bench.Raw(t, ro))
				ro.Protocol, ro.NamePrefix = true, tag+"_rawp"
				protocols = append(protocols, bench.Raw(t, ro))
				systems = append(systems, bench.System(t, bench.SystemOptions{Harness: h, Bin: bin, Master: world.Master, Template: tmpl, N: sz.n,
					Replicas: replicas, Concurrency: perReplica, Poll: poll, Strategy: strategy, NamePrefix: tag + "_sys", ProfileDir: os.Getenv("INSTANCEMGR_BENCH_PPROF")}))
			}
			rep.Raw, rep.Protocol, rep.System = append(rep.Raw, raws), append(rep.Protocol, protocols), append(rep.System, systems)
			byElapsed := func(r bench.RawResult) time.Duration { return r.Elapsed }
			raw, prot := raws[0], protocols[0]
			raw.Elapsed, prot.Elapsed = median(raws, byElapsed), median(protocols, byElapsed)
			sys := systems[medianIndex(systems, func(r bench.SystemResult) time.Duration { return r.Elapsed })]
			r := row{Raw: raw, Protocol: prot, System: sys, Ratio: sys.Elapsed.Seconds() / raw.Elapsed.Seconds(), ProtocolRatio: prot.Elapsed.Seconds() / raw.Elapsed.Seconds()}
			rep.Runs = append(rep.Runs, r)
			main.Rows = append(main.Rows, []string{spec.Label, bench.MB(tmpl.Bytes), fmt.Sprint(replicas), bench.Secs(raw.Elapsed), bench.Secs(sys.Elapsed), fmt.Sprintf("%.2f", r.Ratio), pairRange(raws, systems),
				bench.Secs(prot.Elapsed), fmt.Sprintf("%.2f", r.ProtocolRatio),
				bench.Ms(sys.LatencyP50), bench.Ms(sys.LatencyP95), bench.Ms(sys.LatencyP99), bench.Ms(sys.PickupP50), bench.Ms(sys.PickupP99), bench.Ms(sys.Poll), bench.MB(slices.Max(sys.PeakRSS))})
			checkSystem(t, sys)
			p := sys.PerJob
			phases.Rows = append(phases.Rows, []string{spec.Label, fmt.Sprint(replicas), bench.Ms1(p["job"]), bench.Ms1(p["database"]), bench.Ms1(p["registration"]), bench.Ms1(p["adminapi"]),
				bench.Ms1(p["job"] - p["database"] - p["registration"] - p["adminapi"]), bench.Ms1(sys.ProcessCPU / time.Duration(sys.N)), bench.Ms1(sys.HarnessCPU / time.Duration(sys.N))})
		}
		for _, strategy := range []string{"wal_log", "file_copy"} {
			var raws []bench.RawResult
			for i := range sz.repeat {
				tag := fmt.Sprintf("%s_%s_%s_%d", world.Prefix, spec.Label, strategy, i)
				raws = append(raws, bench.Raw(t, bench.RawOptions{Master: world.Master, AdminDB: adminDB, Template: tmpl, N: sz.n, Concurrency: perReplica, Strategy: strategy, NamePrefix: tag}))
			}
			r := raws[0]
			r.Elapsed = median(raws, func(r bench.RawResult) time.Duration { return r.Elapsed })
			rep.Strategy = append(rep.Strategy, r)
			strategies.Rows = append(strategies.Rows, []string{spec.Label, bench.MB(tmpl.Bytes), strategy, bench.Secs(r.Elapsed), bench.Secs(r.Elapsed / time.Duration(sz.n))})
		}
	}
	// Pickup at low load: requests arriving apart, so that none waits for a
	// free worker; what is left is the bridge's poll and the system's own
	// delay.
	pickup := bench.Table{
		Title:  fmt.Sprintf("Pickup at low load: requests one at a time, no more than one replica's %d workers per poll interval (1 replica)", perReplica),
		Header: []string{"poll ms", "requests", "apart ms", "pickup p50 ms", "pickup p99 ms", "target p99 ms (poll + 100)", "latency p50 ms", "latency p99 ms"},
	}
	tmpl := rep.Template[0]
	for _, poll := range []time.Duration{time.Second, 2 * time.Second} {
		n := max(sz.n, 6)
		// A poll finds at most perReplica new requests, so that none
		// waits for a free worker, whatever a copy takes on this disk
		// (at 137 ms apart, seven a poll, a slow disk's copies made the
		// last three wait); the 37 ms spreads the arrivals over every
		// phase of the poll.
		apart := poll/perReplica + 37*time.Millisecond
		r := bench.System(t, bench.SystemOptions{Harness: h, Bin: bin, Master: world.Master, Template: tmpl, N: n, Replicas: 1, Concurrency: perReplica,
			Poll: poll, Spacing: apart, NamePrefix: fmt.Sprintf("%s_pickup_%d", world.Prefix, poll.Milliseconds())})
		checkSystem(t, r)
		rep.Pickup = append(rep.Pickup, r)
		pickup.Rows = append(pickup.Rows, []string{bench.Ms(poll), fmt.Sprint(n), bench.Ms(apart), bench.Ms(r.PickupP50), bench.Ms(r.PickupP99), bench.Ms(poll + 100*time.Millisecond), bench.Ms(r.LatencyP50), bench.Ms(r.LatencyP99)})
	}
	rep.Tables = []bench.Table{main, phases, pickup, strategies}
	if sz.full {
		rep.Extra = map[string]any{}
		bridges := bench.FullBridgeScale(t)
		rep.Extra["bridge"] = bridges
		for _, b := range bridges {
			rep.Tables = append(rep.Tables, b.Table())
		}
		msgs := bench.FullMessaging(t)
		rep.Extra["messaging"] = msgs
		for _, m := range msgs {
			rep.Tables = append(rep.Tables, m.Table())
		}
	}
	publish(t, rep)
}

// checkSystem asserts that a run measured everything it reports: every
// figure is there and in order. Never how fast.
func checkSystem(t *testing.T, r bench.SystemResult) {
	t.Helper()
	if r.Elapsed <= 0 || r.PickupP50 <= 0 || r.PickupP99 < r.PickupP50 || r.LatencyP50 < r.PickupP50 || r.LatencyP99 < r.LatencyP95 || r.LatencyP95 < r.LatencyP50 {
		t.Errorf("incomplete or inconsistent figures: %+v", r)
	}
	for _, phase := range []string{"job", "database", "registration", "adminapi"} {
		if r.PerJob[phase] <= 0 {
			t.Errorf("no time measured for %s: %v", phase, r.PerJob)
		}
	}
	if r.ProcessCPU <= 0 {
		t.Errorf("no CPU time measured for the consumers and the bridge: %v", r.ProcessCPU)
	}
	if len(r.PeakRSS) != r.Replicas || slices.Min(r.PeakRSS) <= 0 {
		t.Errorf("peak RSS of %d consumers: %v", r.Replicas, r.PeakRSS)
	}
}

// pairRange is the least and the greatest system/raw of one repeat's pair
// (a raw run and the system run right after it): how far this machine's
// disk lets one pair differ from another.
func pairRange(raws []bench.RawResult, systems []bench.SystemResult) string {
	var ratios []float64
	for i := range raws {
		ratios = append(ratios, systems[i].Elapsed.Seconds()/raws[i].Elapsed.Seconds())
	}
	return fmt.Sprintf("%.2f-%.2f", slices.Min(ratios), slices.Max(ratios))
}

func median[T any](xs []T, f func(T) time.Duration) time.Duration {
	return f(xs[medianIndex(xs, f)])
}

func medianIndex[T any](xs []T, f func(T) time.Duration) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(f(xs[a]), f(xs[b])) })
	return idx[len(idx)/2]
}

// publish prints the tables, writes the JSON (INSTANCEMGR_BENCH_JSON, else
// a temporary file) and, with INSTANCEMGR_BENCH_DOC, puts the tables into
// that Markdown file between its bench markers.
func publish(t *testing.T, rep report) {
	t.Helper()
	var md strings.Builder
	fmt.Fprintf(&md, "Run %s on %s.\n\n", rep.When.Format("2006-01-02 15:04 MST"), rep.Machine)
	for _, tb := range rep.Tables {
		tb.Print(os.Stdout)
		tb.Markdown(&md)
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("INSTANCEMGR_BENCH_JSON")
	if out == "" {
		out = t.TempDir() + "/bench.json"
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\nJSON: %s\n", out)
	if doc := os.Getenv("INSTANCEMGR_BENCH_DOC"); doc != "" {
		if err := bench.ReplaceBetweenMarkers(doc, md.String()); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("tables written into %s\n", doc)
	}
}
