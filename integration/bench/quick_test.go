package bench_test

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/integration/bench"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
	"github.com/edfi-tools/instancemgr/internal/app"
	"github.com/edfi-tools/instancemgr/internal/connstr"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/postgres"
)

// quickCase is a template and how many creates a quick run makes of it.
type quickCase struct {
	spec bench.TemplateSpec
	n    int
}

// The headline ratios of issue 20, in a few minutes (`task bench:quick`,
// INSTANCEMGR_BENCH=quick; a tiny run otherwise, to keep the harness
// working): both strategies, and what `instancemgr calibrate` measures
// and recommends, on two servers that disagree (the shared one and a
// private cluster on memory), the system with its default (the server's,
// WAL_LOG) against the faster raw strategy at the same concurrency, and
// `instancemgr dev` with its defaults against the faster sequential copy. It prints
// figures and whether each target is met; it fails only when a run did
// not measure what it reports.
func TestBenchQuick(t *testing.T) {
	quick := os.Getenv("INSTANCEMGR_BENCH") == "quick"
	cases := []quickCase{{bench.Tiny, 3}}
	replicas := []int{1}
	if quick {
		cases = []quickCase{{bench.Small, 20}, {bench.Large, 10}, {bench.ODS, 10}}
		replicas = []int{1, 2}
	}
	world := itest.NewWorld(t, "")
	h := systest.New(t)
	bins, err := systest.Build(h.Dir())
	if err != nil {
		t.Fatal(err)
	}
	bin := bins.Instancemgr
	machine := bench.ThisMachine(t, world.PG)

	began := time.Now()
	lap := func(what string) { t.Logf("%s: done %s into the run", what, time.Since(began).Round(time.Second)) }

	type server struct {
		label     string
		world     *itest.World
		engine    *postgres.Engine
		templates map[string]bench.Template
		faster    map[string]time.Duration // the faster sequential time per template
		decided   map[string]postgres.Calibration
		sysAdmin  string // the raw runs' EdFi_Admin beside the system's
	}
	newServer := func(label string, w *itest.World) *server {
		engine, err := postgres.NewEngine(context.Background(), w.Master.PgxConnString(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(engine.Close)
		return &server{label: label, world: w, engine: engine, templates: map[string]bench.Template{}, faster: map[string]time.Duration{}, decided: map[string]postgres.Calibration{}}
	}
	// decide is what instancemgr calibrate measures and recommends for a
	// template at copies at once, measured once per count, outside every
	// timed run.
	decide := func(sv *server, tmpl bench.Template, copies int) postgres.Calibration {
		if d, ok := sv.decided[tmpl.Name]; ok && d.Copies == min(copies, provisioning.MaxCalibrationCopies) {
			return d
		}
		sv.engine.CalibrationConcurrency = copies
		clean(t, sv.world)
		plan, err := sv.engine.PlanCalibration(context.Background(), tmpl.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		cal, err := sv.engine.Calibrate(context.Background(), plan)
		if err != nil {
			t.Fatal(err)
		}
		if cal.FileCopy <= 0 || cal.WALLog <= 0 {
			t.Fatalf("calibration measured nothing: %+v", cal)
		}
		sv.decided[tmpl.Name] = cal
		return cal
	}
	shared := newServer("shared", world)
	shm := "/dev/shm"
	if st, err := os.Stat(shm); err != nil || !st.IsDir() {
		shm = ""
	}
	private := h.Postgres(shm)
	label := "private on memory (fsync off)"
	if shm == "" {
		label = "private (fsync off)"
	}
	// The private cluster's runs come last: its copies live in memory and
	// would push the shared server's template out of the page cache.
	privateServer := newServer(label, itest.NewWorld(t, private.URL))

	strategyTable := bench.Table{
		Title: fmt.Sprintf("The copy strategies on two servers: N creates with each strategy one after another in one session and %d at once, and what instancemgr calibrate measured (rounds of twice as many copies, at most 1 GiB, %d at once) and recommends",
			perReplica, perReplica),
		Header: []string{"server", "template", "size", "N", "sequential FILE_COPY s", "sequential WAL_LOG s", "faster sequential",
			"FILE_COPY s", "WAL_LOG s", "faster", "by", "calibrate: file_copy s a round", "calibrate: wal_log s a round", "calibrate recommends", "same"},
	}
	// The shared server's figures at a replica's copies at once are the
	// system table's raw runs at one replica (filled in there): the same
	// runs, not run twice.
	atOnce := map[string]int{} // server and template label -> its row in strategyTable, to fill in
	fill := func(row []string, together map[string]time.Duration, cal postgres.Calibration) {
		faster := fasterOf(together)
		slow, fast := max(together["file_copy"], together["wal_log"]), min(together["file_copy"], together["wal_log"])
		row[7], row[8], row[9], row[10] = bench.Secs(together["file_copy"]), bench.Secs(together["wal_log"]), faster, fmt.Sprintf("%.0f %%", 100*(1-fast.Seconds()/slow.Seconds()))
		// calibrate recommends WAL_LOG unless FILE_COPY is faster by its margin.
		row[14] = yesNo(string(cal.Strategy) == faster)
		if string(cal.Strategy) != faster && cal.Strategy == postgres.CopyWALLog && fast.Seconds() > (1-postgres.FileCopyMargin)*slow.Seconds() {
			row[14] = "within margin"
		}
	}
	strategyRows := func(sv *server, concurrent bool) {
		_, adminDB := sv.world.AdminDatabase(t, "admin_quick")
		for _, c := range cases {
			tmpl := bench.MakeTemplate(t, sv.world.PG, sv.world.Master, sv.world.Prefix+"_q_"+c.spec.Label, c.spec)
			sv.templates[c.spec.Label] = tmpl
			seq, together := map[string]time.Duration{}, map[string]time.Duration{}
			for _, s := range []string{"file_copy", "wal_log"} {
				clean(t, sv.world)
				seq[s] = bench.Raw(t, bench.RawOptions{Master: sv.world.Master, AdminDB: adminDB, Template: tmpl, N: c.n, Concurrency: 1, Strategy: s,
					NamePrefix: fmt.Sprintf("%s_seq_%s_%s", sv.world.Prefix, c.spec.Label, s)}).Elapsed
				if concurrent {
					clean(t, sv.world)
					together[s] = bench.Raw(t, bench.RawOptions{Master: sv.world.Master, AdminDB: adminDB, Template: tmpl, N: c.n, Concurrency: perReplica, Strategy: s,
						NamePrefix: fmt.Sprintf("%s_conc_%s_%s", sv.world.Prefix, c.spec.Label, s)}).Elapsed
				}
			}
			sv.faster[c.spec.Label] = seq[fasterOf(seq)]
			// What calibrate recommends for a replica's jobs at once,
			// against the runs at that concurrency.
			cal := decide(sv, tmpl, perReplica)
			row := []string{sv.label, c.spec.Label, bench.MB(tmpl.Bytes), fmt.Sprint(c.n), bench.Secs(seq["file_copy"]), bench.Secs(seq["wal_log"]), fasterOf(seq),
				"", "", "", "", bench.Secs(cal.FileCopy), bench.Secs(cal.WALLog), string(cal.Strategy), ""}
			if concurrent {
				fill(row, together, cal)
			} else {
				atOnce[sv.label+"/"+c.spec.Label] = len(strategyTable.Rows)
			}
			strategyTable.Rows = append(strategyTable.Rows, row)
		}
		lap("strategies on " + sv.label)
	}
	strategyRows(shared, false)

	// The system on the shared server, with its default (the server's:
	// WAL_LOG), against both raw strategies at the same concurrency, in rounds that interleave the three: the shared
	// disk's speed moves within a minute, so the ratio is of medians, and
	// each round's own ratio is shown beside it.
	rounds := 1
	if v := os.Getenv("INSTANCEMGR_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("INSTANCEMGR_BENCH_ROUNDS=%q: want a count", v)
		}
		rounds = n
	}
	systemTable := bench.Table{
		Title: fmt.Sprintf("The system (the server's default strategy, WAL_LOG) against the faster raw strategy at the same concurrency (%d jobs per replica at once; medians of %d rounds), on the shared server and on the private one in memory, where no disk's noise hides the system's own overhead", perReplica, rounds),
		Header: []string{"server", "template", "N", "replicas", "raw FILE_COPY s", "raw WAL_LOG s", "calibrate recommends", "the system copied with", "system s", "system/faster raw", "each round", "target", "met",
			"faster raw ms a copy", "job ms", "database ms", "of it copy ms", "registration ms", "adminapi ms", "pickup p50 ms",
			"server CPU ms a job, raw WAL_LOG", "server CPU ms a job, system", "system's processes CPU ms a job", "copies beyond the requests' (MB)"},
	}
	var headline [][]string
	systemRow := func(sv *server, c quickCase, r int) {
		world := sv.world
		if sv.sysAdmin == "" {
			_, sv.sysAdmin = world.AdminDatabase(t, "admin_quick_sys")
		}
		adminDB := sv.sysAdmin
		tmpl := sv.templates[c.spec.Label]
		cal := decide(sv, tmpl, r*perReplica)
		raws, rawCPU := map[string][]time.Duration{}, map[string][]time.Duration{}
		var systems []bench.SystemResult
		var each []string
		for round := range rounds {
			raw := map[string]time.Duration{}
			for _, s := range []string{"file_copy", "wal_log"} {
				clean(t, world)
				res := bench.Raw(t, bench.RawOptions{Master: world.Master, AdminDB: adminDB, Template: tmpl, N: c.n, Concurrency: r * perReplica, Strategy: s,
					NamePrefix: fmt.Sprintf("%s_raw_%s_%d_%s_%d", world.Prefix, c.spec.Label, r, s, round)})
				raw[s] = res.Elapsed
				raws[s], rawCPU[s] = append(raws[s], raw[s]), append(rawCPU[s], res.ServerCPU)
			}
			clean(t, world)
			sys := bench.System(t, bench.SystemOptions{Harness: h, Bin: bin, Master: world.Master, Template: tmpl, N: c.n, Replicas: r, Concurrency: perReplica,
				Poll: time.Second, NamePrefix: fmt.Sprintf("%s_sys_%s_%d_%d", world.Prefix, c.spec.Label, r, round)})
			checkSystem(t, sys)
			// The system copies with the server's default, whatever a
			// measurement recommends: no job measures or chooses.
			if sys.CopiedWith["default"] != c.n {
				t.Errorf("%s, %s, %d replica(s): the system's copies by strategy %v, want all %d with the server's default", sv.label, c.spec.Label, r, sys.CopiedWith, c.n)
			}
			systems = append(systems, sys)
			each = append(each, fmt.Sprintf("%.2f", sys.Elapsed.Seconds()/raw[fasterOf(raw)].Seconds()))
		}
		sys := systems[medianIndex(systems, func(r bench.SystemResult) time.Duration { return r.Elapsed })]
		itself := func(d time.Duration) time.Duration { return d }
		raw := map[string]time.Duration{"file_copy": median(raws["file_copy"], itself), "wal_log": median(raws["wal_log"], itself)}
		ratio := sys.Elapsed.Seconds() / raw[fasterOf(raw)].Seconds()
		if i, ok := atOnce[sv.label+"/"+c.spec.Label]; ok && r*perReplica == perReplica {
			fill(strategyTable.Rows[i], raw, cal)
		}
		// Every copy the system's jobs made (each one timed): none beyond
		// the requests' own databases, or a job wrote scratch copies
		// nobody asked for.
		copies := 0
		for _, n := range sys.CopiedWith {
			copies += n
		}
		if copies != c.n {
			t.Errorf("%s, %s, %d replica(s): the system made %d copies for %d requests", sv.label, c.spec.Label, r, copies, c.n)
		}
		p := sys.PerJob
		// Processor time a job: the server's in raw's run with the same
		// strategy and in the system's, and the system's own processes'
		// (consumers, bridge, and the harness's NATS and Admin API).
		perJob := func(d time.Duration) string { return bench.Ms1(d / time.Duration(c.n)) }
		cpu := []string{perJob(median(rawCPU["wal_log"], itself)), perJob(sys.ServerCPU), perJob(sys.ProcessCPU + sys.HarnessCPU)}
		systemTable.Rows = append(systemTable.Rows, []string{sv.label, c.spec.Label, fmt.Sprint(c.n), fmt.Sprint(r), bench.Secs(raw["file_copy"]), bench.Secs(raw["wal_log"]), string(cal.Strategy), copiedWith(sys.CopiedWith),
			bench.Secs(sys.Elapsed), fmt.Sprintf("%.2f", ratio), strings.Join(each, " "), "≤ 1.05", yesNo(ratio <= 1.05),
			bench.Ms1(raw[fasterOf(raw)] * time.Duration(r*perReplica) / time.Duration(c.n)), bench.Ms1(p["job"]), bench.Ms1(p["database"]), bench.Ms1(p["copy"]), bench.Ms1(p["registration"]), bench.Ms1(p["adminapi"]), bench.Ms(sys.PickupP50), cpu[0], cpu[1], cpu[2],
			fmt.Sprintf("%d (%s)", copies-c.n, bench.MB(int64(copies-c.n)*tmpl.Bytes))})
		headline = append(headline, []string{fmt.Sprintf("system/faster raw, %s, %d replica(s), %s", c.spec.Label, r, sv.label), fmt.Sprintf("%.2f", ratio), "≤ 1.05", yesNo(ratio <= 1.05)})
		lap(fmt.Sprintf("system, %s, %d replica(s), %s", c.spec.Label, r, sv.label))
	}

	// instancemgr dev with its defaults, on the shared server.
	devCopies := app.DefaultDevOptions().CopiesAtOnce()
	devTable := bench.Table{
		Title: fmt.Sprintf("instancemgr dev with its defaults (the server's default strategy; calibrate measured at its %d copies at once): N creates asked for at once (shared server)", devCopies),
		Header: []string{"template", "N", "poll s", "faster sequential s", "calibrate recommends", "first publish to last completion s", "ratio", "target", "met", "POST to last completion s", "poll + sequential + 0.2 s", "met",
			"first to last publish s", "pickup p50 ms", "pickup max ms", "job ms", "database ms", "of it copy ms", "registration ms", "adminapi ms"},
	}
	var devHeadline [][]string
	devRow := func(c quickCase) {
		tmpl := shared.templates[c.spec.Label]
		cal := decide(shared, tmpl, devCopies)
		clean(t, world)
		d := bench.Dev(t, bench.DevOptions{Harness: h, Bin: bin, Postgres: testenv.PostgresURL(), Template: tmpl, N: c.n, NamePrefix: fmt.Sprintf("%s_dev_%s", world.Prefix, c.spec.Label)})
		if d.PublishToDone <= 0 || d.PostToDone < d.PublishToDone {
			t.Fatalf("dev run measured nothing: %+v", d)
		}
		seq := shared.faster[c.spec.Label]
		ratio := d.PublishToDone.Seconds() / seq.Seconds()
		e2eLimit := d.Poll + seq + 200*time.Millisecond
		devTable.Rows = append(devTable.Rows, []string{c.spec.Label, fmt.Sprint(c.n), bench.Secs(d.Poll), bench.Secs(seq), string(cal.Strategy), bench.Secs(d.PublishToDone), fmt.Sprintf("%.2f", ratio), "≤ 1.10", yesNo(ratio <= 1.10),
			bench.Secs(d.PostToDone), bench.Secs(e2eLimit), yesNo(d.PostToDone <= e2eLimit), bench.Secs(d.Published), bench.Ms(d.PickupP50), bench.Ms(d.PickupMax),
			bench.Ms1(d.PerJob["job"]), bench.Ms1(d.PerJob["database"]), bench.Ms1(d.PerJob["copy"]), bench.Ms1(d.PerJob["registration"]), bench.Ms1(d.PerJob["adminapi"])})
		devHeadline = append(devHeadline,
			[]string{fmt.Sprintf("dev, %d %s: first publish to last completion / faster sequential", c.n, c.spec.Label), fmt.Sprintf("%.2f", ratio), "≤ 1.10", yesNo(ratio <= 1.10)},
			[]string{fmt.Sprintf("dev, %d %s: POST to last completion", c.n, c.spec.Label), bench.Secs(d.PostToDone) + " s", "≤ " + bench.Secs(e2eLimit) + " s", yesNo(d.PostToDone <= e2eLimit)})
		lap("dev, " + c.spec.Label)
	}
	// Per template, the runs at one replica's copies at once (what the
	// strategies' table measured) first, dev's next, then the rest: each
	// count is measured once.
	for _, c := range cases {
		byCopies := slices.Clone(replicas)
		slices.SortStableFunc(byCopies, func(a, b int) int { return cmp.Compare(abs(a*perReplica-devCopies), abs(b*perReplica-devCopies)) })
		systemRow(shared, c, byCopies[0])
		devRow(c)
		for _, r := range byCopies[1:] {
			systemRow(shared, c, r)
		}
	}
	strategyRows(privateServer, true)
	for _, c := range cases {
		for _, r := range replicas {
			systemRow(privateServer, c, r)
		}
	}
	headline = append(headline, devHeadline...)
	heads := bench.Table{Title: "Headline ratios (issue 20's targets)", Header: []string{"what", "measured", "target", "met"}, Rows: headline}
	fmt.Printf("\nRun %s on %s; the private cluster at %s.\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine, redacted(private.URL))
	for _, tb := range []bench.Table{strategyTable, systemTable, devTable, heads} {
		tb.Print(os.Stdout)
	}
	if doc := os.Getenv("INSTANCEMGR_BENCH_QUICK_DOC"); doc != "" {
		var md strings.Builder
		fmt.Fprintf(&md, "Run %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine)
		for _, tb := range []bench.Table{strategyTable, systemTable, devTable, heads} {
			tb.Markdown(&md)
		}
		if err := os.WriteFile(doc, []byte(md.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// clean checkpoints the server before a timed run, outside its time: a
// FILE_COPY run must not pay for the buffers the run before it dirtied
// (its first checkpoint writes them), or the order of the runs decides
// which strategy wins.
func clean(t *testing.T, w *itest.World) {
	t.Helper()
	if _, err := w.PG.Exec(context.Background(), "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
}

func abs(n int) int { return max(n, -n) }

// copiedWith is how many copies each strategy made, as "file_copy 10".
func copiedWith(by map[string]int) string {
	var out []string
	for _, s := range slices.Sorted(maps.Keys(by)) {
		out = append(out, fmt.Sprintf("%s %d", cmp.Or(s, "default"), by[s]))
	}
	return strings.Join(out, ", ")
}

func fasterOf(d map[string]time.Duration) string {
	if d["file_copy"] < d["wal_log"] {
		return "file_copy"
	}
	return "wal_log"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func redacted(url string) string {
	c, err := connstr.ParsePostgres(url)
	if err != nil {
		return "?"
	}
	return c.Redacted()
}
