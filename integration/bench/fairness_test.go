package bench_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/edfi-tools/instancemgr/integration/bench"
	"github.com/edfi-tools/instancemgr/integration/itest"
	"github.com/edfi-tools/instancemgr/integration/systest"
)

// A slow server holds back no other (issue 31): tenant "slow" on the
// shared server copies the large template, tenant "fast" on a private
// server on memory the small one; one consumer with four slots. The fast
// server's jobs are timed alone, then behind the slow server's backlog
// with every slot open to any server (consumer.copiesPerServer 4, as
// before the share) and with the default share (2 of 4). The target: the
// fast server's jobs done within 1.2 × their time alone. INSTANCEMGR_BENCH=
// fairness (or full) for the figures; a tiny run otherwise, to keep the
// harness working. It prints figures and fails only when a run did not
// measure what it reports.
func TestFairness(t *testing.T) {
	slowSpec, fastSpec, slowN, fastN, repeat := bench.Tiny, bench.Tiny, 2, 2, 1
	if v := os.Getenv("INSTANCEMGR_BENCH"); v == "fairness" || v == "full" {
		slowSpec, fastSpec, slowN, fastN, repeat = bench.Large, bench.Small, 12, 12, 3
	}
	const concurrency = 4
	world := itest.NewWorld(t, "")
	h := systest.New(t)
	bins, err := systest.Build(h.Dir())
	if err != nil {
		t.Fatal(err)
	}
	private := itest.NewWorld(t, h.Postgres("/dev/shm").URL)
	name := world.Prefix + "_tmpl_fair"
	slow := bench.FairServer{Master: world.Master, Template: bench.MakeTemplate(t, world.PG, world.Master, name, slowSpec)}
	fast := bench.FairServer{Master: private.Master, Template: bench.MakeTemplate(t, private.PG, private.Master, name, fastSpec)}

	cases := []struct {
		label        string
		slowN, share int
	}{
		{"fast server alone", 0, 0},
		{"both, every slot to any server (before)", slowN, concurrency},
		{"both, a share per server (after)", slowN, 0},
	}
	table := bench.Table{
		Title:  fmt.Sprintf("Fairness: %d fast jobs (%s template, private server) behind %d slow ones (%s template, shared server), one consumer, %d slots, median of %d", fastN, fastSpec.Label, slowN, slowSpec.Label, concurrency, repeat),
		Header: []string{"run", "copiesPerServer", "fast jobs done", "× alone", "fast p50", "slow jobs done"},
		Notes:  []string{"done: from the first request of that server's tenant to its last Completed; target: fast within 1.2 × alone"},
	}
	var alone time.Duration
	run := 0
	for _, c := range cases {
		var fastDone, fastP50, slowDone []time.Duration
		for range repeat {
			run++
			r := bench.Fairness(t, bench.FairnessOptions{Harness: h, Bin: bins.Instancemgr, Slow: slow, Fast: fast, SlowN: c.slowN, FastN: fastN,
				Concurrency: concurrency, CopiesPerServer: c.share, NamePrefix: world.Prefix + "_f" + strconv.Itoa(run)})
			if r.Fast <= 0 || (c.slowN > 0 && r.Slow <= 0) {
				t.Fatalf("%s: measured nothing: %+v", c.label, r)
			}
			fastDone, fastP50, slowDone = append(fastDone, r.Fast), append(fastP50, r.FastP50), append(slowDone, r.Slow)
		}
		f := bench.Quantile(fastDone, 0.5)
		if c.slowN == 0 {
			alone = f
		}
		share := strconv.Itoa(c.share)
		if c.share == 0 {
			share = "default (2)"
		}
		slowFig := "-"
		if c.slowN > 0 {
			slowFig = bench.Quantile(slowDone, 0.5).Round(10 * time.Millisecond).String()
		}
		table.Rows = append(table.Rows, []string{c.label, share, f.Round(10 * time.Millisecond).String(), fmt.Sprintf("%.2f", float64(f)/float64(alone)),
			bench.Quantile(fastP50, 0.5).Round(10 * time.Millisecond).String(), slowFig})
	}
	table.Print(os.Stdout)
	table.Markdown(os.Stdout)
}
