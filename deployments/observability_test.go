package deployments_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/edfi-tools/instancemgr/adminapi"
	"github.com/edfi-tools/instancemgr/bridge"
	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

const (
	rulesFile     = "prometheus/rules.yaml"
	rulesTests    = "prometheus/rules_test.yaml"
	dashboardFile = "grafana/dashboards/instancemgr.json"
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
			if !strings.HasPrefix(r.Annotations["runbook_url"], "https://") {
				t.Errorf("alert %s has no runbook_url", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("rules.yaml has no alerts")
	}
}

var metricName = regexp.MustCompile(`\binstancemgr_[a-z_]+\b`)

// exported lists the metric names the bridge and a consumer export, with
// the series names of histograms.
func exported(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, b := consumer.NewMetrics(reg), bridge.NewMetrics(reg)
	// Vectors export nothing until they have a child.
	c.Jobs.WithLabelValues("create", "acked").Inc()
	c.DeadLetters.WithLabelValues("create", "conflict").Inc()
	c.Duration.WithLabelValues("create").Observe(1)
	b.Jobs.WithLabelValues("create", "published").Inc()
	b.PollFailures.WithLabelValues("auth").Inc()
	adminapi.NewMetrics(reg).Observe("GET /adminconsole/tenants", "2xx", time.Second)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if mf.GetType().String() == "HISTOGRAM" {
			names = append(names, mf.GetName()+"_bucket", mf.GetName()+"_sum", mf.GetName()+"_count")
		}
	}
	return names
}

// The dashboard is provisioned from where compose mounts it, queries the
// provisioned datasource, and every metric named in it or in the rules is
// one the roles export.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	names := exported(t)
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
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
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
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
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
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
	dir, _ := filepath.Abs(filepath.Dir(dashboardFile))
	mountedAt := ""
	for _, v := range g.Volumes {
		if v.Source == dir {
			mountedAt = v.Target
		}
	}
	if len(prov.Providers) != 1 || mountedAt == "" || path.Clean(prov.Providers[0].Options.Path) != mountedAt {
		t.Errorf("grafana mounts %s at %q, the provider reads %+v", dir, mountedAt, prov.Providers)
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
