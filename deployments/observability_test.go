package deployments_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

const (
	rulesFile     = "prometheus/rules.yaml"
	rulesTests    = "prometheus/rules_test.yaml"
	dashboardFile = "grafana/instancemgr.json"
)

// promtool checks the rules and the Prometheus configuration, and runs the
// rules' unit tests (one or more per alert).
func TestPrometheusRulesWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"check", "config", promConfig},
		{"test", "rules", rulesTests},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every alert has a unit test that expects it to fire.
func TestEveryAlertHasAFiringTest(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, rulesFile, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, rulesTests, &tests)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	anchors := runbookAnchors(t)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] {
				t.Errorf("alert %s has no unit test in which it fires", r.Alert)
			}
			if anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookURL); !ok || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q is not a section of docs/operations.md (%s#...)", r.Alert, r.Annotations["runbook_url"], runbookURL)
			}
		}
	}
	if n == 0 {
		t.Fatal("rules.yaml has no alerts")
	}
}

// runbookURL is where the runbook is published; alerts link its sections.
const runbookURL = "https://github.com/edfi-tools/instancemgr/blob/main/docs/operations.md#"

// runbookAnchors are the anchors GitHub gives the runbook's headings:
// lower case, punctuation dropped, spaces as hyphens.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	anchors := map[string]bool{}
	for line := range strings.Lines(string(raw)) {
		if h, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "## "); ok {
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

var metricName = regexp.MustCompile(`\binstancemgr_[a-z_]+\b`)

// exportedByBinary builds the real binary, runs `instancemgr dev` (the
// bridge, consumer replicas and the simulator in one process, with one
// registry), has it carry out a create, and returns the metric names its
// /metrics serves then, with the series names of histograms.
func exportedByBinary(t *testing.T) []string {
	t.Helper()
	pg := testenv.Postgres(t)
	prefix := testenv.Prefix()
	testenv.DropDatabasesWithPrefix(t, pg, prefix)
	bin := testenv.BuildBinary(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	dev := exec.CommandContext(ctx, bin, "dev", "-postgres", testenv.PostgresURL(), "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0",
		"-data-dir", t.TempDir(), "-template", prefix+"_template", "-admin-database", prefix+"_admin", "-name-pattern", prefix+"_{name}",
		"-poll-interval", "200ms", "-replicas", "1", "-log-level", "warn")
	dev.Cancel = func() error { return dev.Process.Signal(os.Interrupt) }
	banner, logs := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	dev.Stdout, dev.Stderr = banner, logs
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := dev.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("dev: %v\n%s", err, logs.String())
		}
	})
	urls := regexp.MustCompile(`Admin API simulator\s+(http://\S+)[\s\S]*probes, metrics\s+(http://\S+)/healthz`)
	var m []string
	testenv.Eventually(t, time.Minute, "dev's banner", func() bool {
		m = urls.FindStringSubmatch(banner.String())
		return m != nil
	})
	simURL, probes := m[1], m[2]

	// A create, as the Admin Console asks for one.
	resp, err := http.PostForm(simURL+"/connect/register", url.Values{"ClientId": {"console"}, "ClientSecret": {"s3cret-Value"}, "DisplayName": {"console"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	api, err := adminapi.New(adminapi.Config{BaseURL: simURL, TokenURL: simURL + "/connect/token", ClientID: "console", ClientSecret: "s3cret-Value"})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := api.CreateOdsInstance(ctx, "", adminapi.InstanceRequest{TenantID: 1, TenantName: "default", Name: "Metrics", InstanceType: "enterprise"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the create completed", func() bool {
		w, err := api.Instance(ctx, "", inst.ID)
		return err == nil && w.Status == adminapi.StatusCompleted
	})

	var names []string
	testenv.Eventually(t, 30*time.Second, "the job counted as acked, by phase", func() bool {
		families := testenv.Scrape(t, probes+"/metrics")
		names = names[:0]
		for name, mf := range families {
			names = append(names, name)
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				names = append(names, name+"_bucket", name+"_sum", name+"_count")
			}
		}
		acked := 0.0
		for _, metric := range families["instancemgr_consumer_deliveries_total"].GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "acked" {
					acked += metric.GetCounter().GetValue()
				}
			}
		}
		// and its time split into the three phases.
		phases := map[string]uint64{}
		for _, metric := range families["instancemgr_consumer_phase_seconds"].GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "phase" {
					phases[l.GetValue()] += metric.GetHistogram().GetSampleCount()
				}
			}
		}
		return acked >= 1 && phases["database"] >= 1 && phases["registration"] >= 1 && phases["adminapi"] >= 1
	})
	return names
}

// Every dashboard query is valid PromQL: promtool checks each as the
// expression of a recording rule.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool is not installed (Debian package prometheus; .ci/run installs it)")
	}
	var rules []map[string]string
	for i, e := range dashboardQueries(t) {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query%d", i), "expr": e})
	}
	raw, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("a dashboard query does not parse: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(rules)); !strings.Contains(string(out), want) {
		t.Fatalf("promtool: %s; want %q", out, want)
	}
}

// dashboard is what the tests read of the Grafana dashboard.
type dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return dash
}

// dashboardQueries are the dashboard's queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, p := range readDashboard(t).Panels {
		for _, target := range p.Targets {
			exprs = append(exprs, target.Expr)
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s has no query", dashboardFile)
	}
	return exprs
}

// The dashboard is provisioned from where compose mounts it, queries the
// provisioned datasource, and every metric named in it or in the rules is
// one the roles export.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	names := exportedByBinary(t)
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dash := readDashboard(t)
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no uid or no panels", dashboardFile)
	}
	var ds struct {
		Datasources []struct {
			UID string `json:"uid"`
		} `json:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds)
	exprs := []string{string(rules)}
	for _, p := range dash.Panels {
		if len(ds.Datasources) != 1 || p.Datasource.UID != ds.Datasources[0].UID {
			t.Errorf("panel %q queries datasource %q, not the provisioned one", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			exprs = append(exprs, target.Expr)
		}
	}
	used := 0
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			used++
			if !slices.Contains(names, name) {
				t.Errorf("%s is queried but not exported (exported: %v)", name, names)
			}
		}
	}
	if used == 0 {
		t.Fatal("no instancemgr metric is queried")
	}

	// Grafana's provider reads the directory compose mounts the dashboard in.
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/instancemgr.yaml", &prov)
	g := service(t, project(t), "grafana")
	file, _ := filepath.Abs(dashboardFile)
	mountedAt := ""
	for _, v := range g.Volumes {
		if v.Source == file {
			mountedAt = v.Target
		}
	}
	if len(prov.Providers) != 1 || mountedAt == "" || path.Clean(prov.Providers[0].Options.Path) != path.Dir(mountedAt) {
		t.Errorf("grafana mounts %s at %q, the provider reads %+v", file, mountedAt, prov.Providers)
	}
	// Prometheus loads the rules: mounted beside its configuration.
	prom := service(t, project(t), "prometheus")
	rulesAbs, _ := filepath.Abs(rulesFile)
	var promCfg struct {
		RuleFiles []string `json:"rule_files"`
	}
	readYAML(t, promConfig, &promCfg)
	found := false
	for _, v := range prom.Volumes {
		for _, rf := range promCfg.RuleFiles {
			target := rf
			if !path.IsAbs(rf) {
				target = path.Join(path.Dir(flag(prom.Command, "--config.file")), rf)
			}
			if v.Source == rulesAbs && v.Target == target {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("prometheus does not load %s: rule_files %v, volumes %v", rulesFile, promCfg.RuleFiles, prom.Volumes)
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// The alerts on missing roles select their scrape jobs by name: the
// selectors match the job of each role in both deployments (compose's
// scrape jobs, and the Services the ServiceMonitor selects, whose names
// the Prometheus Operator uses as job), and no other role's.
func TestAlertJobSelectorsMatchBothDeployments(t *testing.T) {
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	selectors := map[string]*regexp.Regexp{}
	for _, m := range regexp.MustCompile(`job=~"(instancemgr-(bridge|consumer)[^"]*)"`).FindAllStringSubmatch(string(raw), -1) {
		selectors[m[2]] = regexp.MustCompile("^(?:" + m[1] + ")$")
	}
	if len(selectors) != 2 {
		t.Fatalf("rules select jobs %v, want the bridge's and the consumer's", selectors)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	readYAML(t, promConfig, &prom)
	jobs := map[string][]string{} // role -> job names in either deployment
	for _, sc := range prom.ScrapeConfigs {
		for role := range selectors {
			if strings.Contains(sc.JobName, role) {
				jobs[role] = append(jobs[role], sc.JobName)
			}
		}
	}
	r := k8sRender(t, k8sExample)
	for _, svc := range r.services {
		if role := svc.Labels["app.kubernetes.io/component"]; selectors[role] != nil {
			jobs[role] = append(jobs[role], svc.Name)
		}
	}
	for role, sel := range selectors {
		if len(jobs[role]) != 2 {
			t.Errorf("%s: jobs %v, want one in compose and one in Kubernetes", role, jobs[role])
		}
		for other, names := range jobs {
			for _, job := range names {
				if got := sel.MatchString(job); got != (other == role) {
					t.Errorf("the %s selector %q matches job %q (of the %s): %t", role, sel, job, other, got)
				}
			}
		}
	}
}
