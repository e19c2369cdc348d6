package bench_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/integration/bench"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
)

// TestBenchZeroPoll measures POST to Created under the manage flavor, the
// door publishing each job at once, against the copy's own time (a raw
// CREATE DATABASE of the same template before each request), with the
// bridge's default poll; and, beside it, POST to completed under the
// adminconsole flavor with the same poll, which a request waits for. The
// first request after the processes start is measured on its own, apart
// from the N, and each request's breakdown is logged.
// INSTANCEMGR_BENCH=zeropoll runs the small template with 30 requests and
// the adminconsole run; otherwise the tiny template with 3 requests and
// no adminconsole run (a 10 s poll a request), to keep the harness from
// rotting.
func TestBenchZeroPoll(t *testing.T) {
	full := os.Getenv("INSTANCEMGR_BENCH") == "zeropoll"
	spec, n := bench.Tiny, 3
	if full {
		spec, n = bench.Small, 30
	}
	world := itest.NewWorld(t, "")
	h := systest.New(t)
	bins, err := systest.Build(h.Dir())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := bench.MakeTemplate(t, world.PG, world.Master, world.Prefix+"_zp_"+spec.Label, spec)
	m := bench.Manage(t, bench.ManageOptions{Harness: h, Bin: bins.Instancemgr, Master: world.Master, Template: tmpl, N: n, NamePrefix: world.Prefix + "_zpm"})
	if m.N != n || m.LatencyP50 <= 0 || m.CopyP50 <= 0 || m.OwnCopyP50 <= 0 || m.StoredP50 <= 0 || m.FirstLatency <= 0 || m.FirstCopy <= 0 {
		t.Fatalf("a figure was not measured: %+v", m)
	}
	table := bench.Table{
		Title: fmt.Sprintf("POST to done, one request at a time, bridge poll %s (the default), %s template (%s)", m.Poll, spec.Label, bench.MB(tmpl.Bytes)),
		Header: []string{"flavor", "requests", "raw copy p50 ms", "p99 ms", "its own copy p50 ms", "p99 ms", "POST to job stored p50 ms", "p99 ms", "POST to done p50 ms", "p99 ms",
			"beyond its own copy p50 ms", "p99 ms", "target p99 ms", "met"},
		Rows: [][]string{{"manage (the door publishes)", fmt.Sprint(m.N), bench.Ms(m.CopyP50), bench.Ms(m.CopyP99), bench.Ms(m.OwnCopyP50), bench.Ms(m.OwnCopyP99),
			bench.Ms1(m.StoredP50), bench.Ms1(m.StoredP99), bench.Ms(m.LatencyP50), bench.Ms(m.LatencyP99), bench.Ms(m.BeyondP50), bench.Ms(m.BeyondP99), "100", yesNo(m.BeyondP99 <= 100*time.Millisecond)},
			{"manage, the first request after start (not among the above)", "1", "", "", bench.Ms(m.FirstCopy), "", bench.Ms1(m.FirstStored), "", bench.Ms(m.FirstLatency), "", bench.Ms(m.FirstLatency - m.FirstCopy), "", "", ""}},
		Notes: []string{"POST to job stored: to the job's message stored in JetStream (its stream time); the adminconsole run gives its pickup, to the consumer's first read, which comes after. raw copy: CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY of the same template on the same server, just before each request; its own copy: the system's copy for the request (instancemgr_copy_seconds); " +
			"POST to done: to the row's Created (manage) or the simulator's completed (adminconsole); beyond its own copy: each request's POST to done less its own copy, which the shared disk's speed does not move. " +
			"The first request after start is measured on its own: it pays for its path's first use (the Admin API's first authorizing call, each statement's first run on its connection), the steady figures above do not."},
	}
	if full {
		// Requests 1.05 s apart: over two polls, each waits for its poll.
		s := bench.System(t, bench.SystemOptions{Harness: h, Bin: bins.Instancemgr, Master: world.Master, Template: tmpl, N: 20, Replicas: 1, Concurrency: 4,
			Poll: bridge.DefaultInterval, Spacing: 1050 * time.Millisecond, Strategy: "file_copy", NamePrefix: world.Prefix + "_zpa"})
		own := s.PerJob["copy"]
		table.Rows = append(table.Rows, []string{"adminconsole (the poll publishes)", fmt.Sprint(s.N), "", "", bench.Ms(own) + " (mean)", "",
			bench.Ms(s.PickupP50) + " (pickup)", bench.Ms(s.PickupP99) + " (pickup)", bench.Ms(s.LatencyP50), bench.Ms(s.LatencyP99), bench.Ms(s.LatencyP50 - own), bench.Ms(s.LatencyP99 - own), "", ""})
	}
	table.Print(os.Stdout)
	if doc := os.Getenv("INSTANCEMGR_BENCH_ZEROPOLL_DOC"); doc != "" {
		f, err := os.Create(doc)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		table.Markdown(f)
	}
}
