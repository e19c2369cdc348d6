package deployments_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/connstr"
)

const (
	composeDir  = "compose"
	composeFile = "compose/compose.yaml"
	envExample  = "compose/.env.example"
	promConfig  = "prometheus/prometheus.yml"
	fixturePath = "../provisioning/postgres/edfi_admin_pg.sql"
	initdbMount = "/docker-entrypoint-initdb.d"
	metricsPort = 9464
)

// The instancemgr roles: one image, the role as the command.
var roles = []string{"simulator", "setup", "bridge", "consumer"}

// The roles that read the configuration file.
var configRoles = []string{"setup", "bridge", "consumer"}

func loadCompose(t *testing.T, envFiles ...string) (*types.Project, error) {
	t.Helper()
	wd, err := filepath.Abs(composeDir)
	if err != nil {
		t.Fatal(err)
	}
	abs := make([]string, len(envFiles))
	for i, f := range envFiles {
		if abs[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	// No WithOsEnv: only the env file feeds interpolation, so the test
	// does not depend on the environment it runs in.
	opts, err := cli.NewProjectOptions([]string{filepath.Join(wd, "compose.yaml")},
		cli.WithWorkingDirectory(wd),
		cli.WithEnvFiles(abs...),
		cli.WithDotEnv,
		cli.WithName("instancemgr"),
	)
	if err != nil {
		t.Fatal(err)
	}
	return cli.ProjectFromOptions(context.Background(), opts)
}

func project(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, envExample)
	if err != nil {
		t.Fatalf("load %s with %s: %v", composeFile, envExample, err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

// env is a service's environment as the process inside sees it.
func env(s types.ServiceConfig) func(string) string {
	return func(k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
}

func TestComposeLoadsWithTheExampleEnvironment(t *testing.T) {
	p := project(t)
	got := p.ServiceNames()
	sort.Strings(got)
	want := []string{"bridge", "consumer", "grafana", "nats", "postgres", "prometheus", "setup", "simulator"}
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	if p.Name != "instancemgr" {
		t.Errorf("project name = %q", p.Name)
	}
}

// Every ${VAR} in compose.yaml is either documented in .env.example or has
// a default: nothing is left to an empty substitution.
func TestComposeVariablesAreDocumentedOrDefaulted(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	ex, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ex), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf(".env.example: %q is not KEY=value", line)
			continue
		}
		documented[k] = v
	}
	refs := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}`).FindAllStringSubmatch(string(raw), -1)
	if len(refs) == 0 {
		t.Fatal("compose.yaml uses no variables; where do the secrets come from?")
	}
	for _, m := range refs {
		name, mod := m[1], m[2]
		_, doc := documented[name]
		defaulted := strings.HasPrefix(mod, ":-") || strings.HasPrefix(mod, "-")
		if !doc && !defaulted {
			t.Errorf("${%s%s} is neither in .env.example nor has a default", name, mod)
		}
	}
	// The secrets are required (${VAR:?}) and the example holds placeholders only.
	for _, secret := range []string{"INSTANCEMGR_ADMINAPI_CLIENT_SECRET", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} {
		if !strings.Contains(string(raw), "${"+secret+":?") {
			t.Errorf("compose.yaml does not require %s with ${%s:?...}", secret, secret)
		}
		if v := documented[secret]; !strings.Contains(v, "change-me") {
			t.Errorf(".env.example %s=%q is not an obvious placeholder", secret, v)
		}
	}
}

func TestComposeRefusesToLoadWithoutSecrets(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(empty, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadCompose(t, empty)
	if err == nil {
		t.Fatal("compose.yaml loaded without any secret in the environment")
	}
	if !strings.Contains(err.Error(), "in .env") {
		t.Errorf("error does not point at .env: %v", err)
	}
}

func TestComposeRolesShareOneImage(t *testing.T) {
	p := project(t)
	first := service(t, p, roles[0])
	if first.Image == "" || first.Build == nil {
		t.Fatalf("%s: image %q, build %v; want both", roles[0], first.Image, first.Build)
	}
	root, _ := filepath.Abs("..")
	for _, name := range roles {
		s := service(t, p, name)
		if s.Image != first.Image {
			t.Errorf("%s: image %q, %s uses %q", name, s.Image, roles[0], first.Image)
		}
		if s.Build == nil {
			t.Errorf("%s: no build section", name)
			continue
		}
		if filepath.Clean(s.Build.Context) != root {
			t.Errorf("%s: build context %q, want the repository root %q", name, s.Build.Context, root)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: dockerfile: %v", name, err)
		}
		if len(s.Command) == 0 || s.Command[0] != name {
			t.Errorf("%s: command %q does not start with the role", name, s.Command)
		}
		if len(s.Entrypoint) != 0 {
			t.Errorf("%s: entrypoint %q overrides the image's", name, s.Entrypoint)
		}
	}
}

func TestComposeStartOrder(t *testing.T) {
	p := project(t)
	setup := service(t, p, "setup")
	if setup.Restart != "no" {
		t.Errorf("setup: restart %q, want \"no\" (it is one-shot)", setup.Restart)
	}
	for _, name := range []string{"bridge", "consumer"} {
		s := service(t, p, name)
		d, ok := s.DependsOn["setup"]
		if !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: depends_on setup = %+v, want condition %s", name, d, types.ServiceConditionCompletedSuccessfully)
		}
		if d, ok := s.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends_on postgres = %+v, want service_healthy", name, d)
		}
		if s.Restart == "no" || s.Restart == "" {
			t.Errorf("%s: restart %q; a long-running role should come back", name, s.Restart)
		}
	}
	if d, ok := setup.DependsOn["nats"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("setup: depends_on nats = %+v, want service_healthy", d)
	}
	if _, ok := service(t, p, "bridge").DependsOn["simulator"]; !ok {
		t.Error("bridge does not depend on simulator")
	}
	consumer := service(t, p, "consumer")
	if consumer.Deploy == nil || consumer.Deploy.Replicas == nil || *consumer.Deploy.Replicas != 3 {
		t.Errorf("consumer: deploy.replicas = %v, want 3", consumer.Deploy)
	}
	if bridge := service(t, p, "bridge"); bridge.GetScale() != 1 {
		n := bridge.GetScale()
		t.Errorf("bridge: %d replicas; exactly one bridge runs", n)
	}
}

// nats and postgres have healthchecks, and service_healthy is only ever
// asked of a service that has one (otherwise compose waits forever).
func TestComposeHealthchecks(t *testing.T) {
	p := project(t)
	for _, name := range []string{"nats", "postgres"} {
		hc := service(t, p, name).HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 {
			t.Errorf("%s: no usable healthcheck: %+v", name, hc)
		}
	}
	if hc := service(t, p, "nats").HealthCheck; hc != nil && !strings.Contains(strings.Join(hc.Test, " "), ":8222/healthz?js-enabled-only=true") {
		t.Errorf("nats healthcheck %q does not ask the monitoring port whether JetStream is up", hc.Test)
	}
	if cmd := strings.Join(service(t, p, "nats").Command, " "); !strings.Contains(cmd, "-js") || !strings.Contains(cmd, "-m 8222") {
		t.Errorf("nats command %q lacks -js or -m 8222", cmd)
	}
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				continue
			}
			hc := service(t, p, dep).HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) == 0 {
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", s.Name, dep, dep)
			}
		}
	}
	// The instancemgr image is distroless (no shell, no wget): bridge and
	// consumer are checked by the binary itself, on their /readyz.
	for _, name := range []string{"bridge", "consumer"} {
		s := service(t, p, name)
		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
			t.Errorf("%s: no exec-form healthcheck: %+v", name, hc)
			continue
		}
		cfg, err := config.Load(configFile(t, s), env(s))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, port, _ := strings.Cut(cfg.MetricsAddr, ":")
		want := []string{"/instancemgr", "healthcheck", "-url", "http://127.0.0.1:" + port + "/readyz"}
		if strings.Join(hc.Test[1:], " ") != strings.Join(want, " ") {
			t.Errorf("%s: healthcheck %q, want %q (the image's binary asking the role's metricsAddr)", name, hc.Test[1:], want)
		}
	}
	for _, name := range []string{"simulator", "setup"} {
		if hc := service(t, p, name).HealthCheck; hc != nil && !hc.Disable && len(hc.Test) > 0 {
			t.Errorf("%s: healthcheck %q: it serves no probe", name, hc.Test)
		}
	}
}

// A consumer stopped by compose is given consumer.shutdownGrace plus 15 s
// to release its jobs before it is killed.
func TestComposeStopGraceCoversTheShutdownGrace(t *testing.T) {
	p := project(t)
	s := service(t, p, "consumer")
	cfg, err := config.Load(configFile(t, s), env(s))
	if err != nil {
		t.Fatal(err)
	}
	want := cfg.Consumer.ShutdownGrace.D() + 15*time.Second
	if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < want {
		t.Errorf("consumer: stop_grace_period %v, want at least %s (shutdownGrace %s + 15 s)", s.StopGracePeriod, want, cfg.Consumer.ShutdownGrace.D())
	}
}

// configFile returns the host path of the configuration a role reads:
// the bind mount at INSTANCEMGR_CONFIG.
func configFile(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	target := env(s)("INSTANCEMGR_CONFIG")
	if target == "" {
		t.Fatalf("%s: INSTANCEMGR_CONFIG is not set", s.Name)
	}
	for _, v := range s.Volumes {
		if v.Target == target {
			if v.Type != types.VolumeTypeBind || !v.ReadOnly {
				t.Errorf("%s: %s is mounted as %s (read only %v), want a read-only bind", s.Name, target, v.Type, v.ReadOnly)
			}
			return v.Source
		}
	}
	t.Fatalf("%s: nothing is mounted at INSTANCEMGR_CONFIG=%s", s.Name, target)
	return ""
}

// The configuration mounted into each role validates with the environment
// compose gives that role, as instancemgr itself loads it.
func TestComposeConfigValidatesWithTheServiceEnvironment(t *testing.T) {
	p := project(t)
	for _, name := range configRoles {
		s := service(t, p, name)
		path := configFile(t, s)
		cfg, err := config.Load(path, env(s))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.AdminAPI.ClientSecret == "" || cfg.AdminAPI.ClientSecret != env(s)("INSTANCEMGR_ADMINAPI_CLIENT_SECRET") {
			t.Errorf("%s: the Admin API client secret does not come from the environment", name)
		}
		tc, err := cfg.Servers(config.DefaultTenant)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if tc.Master.Password == "" || tc.Admin.Password == "" {
			t.Errorf("%s: tenant default has no PostgreSQL password from the environment", name)
		}
		// postgres:15 serves no TLS, and off loopback the worker's default is
		// verify-full: the effective strings must say SSL Mode=Disable.
		for _, c := range []struct {
			key  string
			conn connstr.Conn
		}{{"master", tc.Master}, {"admin", tc.Admin}} {
			if c.conn.SSLMode() != "disable" {
				t.Errorf("%s: tenants.default.%s does not set SSL Mode=Disable (postgres here has no TLS)", name, c.key)
			}
		}
		for _, c := range []struct{ key, host string }{{"master", tc.Master.Host}, {"admin", tc.Admin.Host}, {"ods", tc.ODS.Host}} {
			if _, err := p.GetService(c.host); err != nil {
				t.Errorf("%s: tenants.default.%s host %q is not a compose service", name, c.key, c.host)
			}
		}
		if _, port, _ := net.SplitHostPort(cfg.MetricsAddr); port != strconv.Itoa(metricsPort) {
			t.Errorf("%s: metricsAddr %q, want port %d (what prometheus.yml scrapes)", name, cfg.MetricsAddr, metricsPort)
		}
		// The Admin API is the simulator, which knows this client.
		u, err := url.Parse(cfg.AdminAPI.BaseURL)
		if err != nil {
			t.Fatal(err)
		}
		sim := service(t, p, u.Hostname())
		if !slices.Equal(sim.Command[:1], []string{"simulator"}) {
			t.Errorf("adminApi.baseUrl host %s is not the simulator", u.Hostname())
		}
		if flag(sim.Command, "-client-id") != cfg.AdminAPI.ClientID {
			t.Errorf("simulator registers client %q, %s uses %q", flag(sim.Command, "-client-id"), name, cfg.AdminAPI.ClientID)
		}
		if env(sim)("INSTANCEMGR_SIMULATOR_CLIENT_SECRET") != cfg.AdminAPI.ClientSecret {
			t.Errorf("simulator's client secret differs from %s's", name)
		}
		if _, port, _ := net.SplitHostPort(flag(sim.Command, "-listen")); port != u.Port() {
			t.Errorf("simulator listens on %q, %s calls %s", flag(sim.Command, "-listen"), name, cfg.AdminAPI.BaseURL)
		}
		nu, err := url.Parse(cfg.NATS.URL)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.GetService(nu.Hostname()); err != nil {
			t.Errorf("%s: nats.url host %q is not a compose service", name, nu.Hostname())
		}
	}
}

func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

type promFile struct {
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `json:"names"`
			Type  string   `json:"type"`
			Port  int      `json:"port"`
		} `json:"dns_sd_configs"`
	} `json:"scrape_configs"`
}

// Prometheus scrapes the bridge and every consumer replica on the
// metrics port, by compose service name.
func TestPrometheusScrapesTheRoles(t *testing.T) {
	p := project(t)
	raw, err := os.ReadFile(promConfig)
	if err != nil {
		t.Fatal(err)
	}
	var pf promFile
	if err := yaml.Unmarshal(raw, &pf); err != nil {
		t.Fatal(err)
	}
	static := map[string]bool{}
	dns := map[string]bool{}
	for _, sc := range pf.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("job %s: target %q: %v", sc.JobName, target, err)
					continue
				}
				if host == "localhost" {
					continue
				}
				if _, err := p.GetService(host); err != nil {
					t.Errorf("job %s: target %q is not a compose service", sc.JobName, target)
				}
				if port == strconv.Itoa(metricsPort) {
					static[host] = true
				}
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				if _, err := p.GetService(n); err != nil {
					t.Errorf("job %s: dns name %q is not a compose service", sc.JobName, n)
				}
				if d.Type == "A" && d.Port == metricsPort {
					dns[n] = true
				}
			}
		}
	}
	if !static["bridge"] && !dns["bridge"] {
		t.Errorf("bridge:%d is not scraped", metricsPort)
	}
	// Replicas sit behind one name: only DNS service discovery finds them all.
	if !dns["consumer"] {
		t.Errorf("consumer is not scraped through dns_sd_configs type A on port %d", metricsPort)
	}
	// The file is what the prometheus service reads.
	prom := service(t, p, "prometheus")
	abs, _ := filepath.Abs(promConfig)
	want := flag(prom.Command, "--config.file")
	if want == "" {
		t.Fatalf("prometheus command %q has no --config.file", prom.Command)
	}
	mounted := false
	for _, v := range prom.Volumes {
		if v.Source == abs && v.Target == want {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("prometheus does not mount %s at %s", abs, want)
	}
	if strings.Contains(prom.Image, ":latest") || !strings.Contains(prom.Image, ":") {
		t.Errorf("prometheus image %q is not pinned", prom.Image)
	}
}

func TestGrafanaDatasourceIsThePrometheusService(t *testing.T) {
	p := project(t)
	g := service(t, p, "grafana")
	provisioning, _ := filepath.Abs("grafana/provisioning")
	found := false
	for _, v := range g.Volumes {
		if v.Source == provisioning && v.Target == "/etc/grafana/provisioning" {
			found = true
		}
	}
	if !found {
		t.Errorf("grafana does not mount %s at /etc/grafana/provisioning", provisioning)
	}
	raw, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Datasources []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"datasources"`
	}
	if err := yaml.Unmarshal(raw, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources = %+v, want one prometheus", ds.Datasources)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetService(u.Hostname()); err != nil || u.Hostname() != "prometheus" {
		t.Errorf("datasource url %q is not the prometheus service", ds.Datasources[0].URL)
	}
	if env(g)("GF_SECURITY_ADMIN_PASSWORD") == "" {
		t.Error("grafana admin password is not set from the environment")
	}
}

// shellVars reads the NAME=value assignments at the start of lines.
func shellVars(script string) map[string]string {
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_][A-Z0-9_]*)=(\S+)\s*$`).FindAllStringSubmatch(script, -1) {
		vars[m[1]] = strings.Trim(m[2], `"'`)
	}
	return vars
}

// The init script creates the databases the configuration names and loads
// the fixture from where compose mounts it.
func TestPostgresInitCreatesWhatTheConfigNeeds(t *testing.T) {
	p := project(t)
	pg := service(t, p, "postgres")
	mounts := map[string]string{} // target -> source
	for _, v := range pg.Volumes {
		mounts[v.Target] = v.Source
	}
	initdb, ok := mounts[initdbMount]
	if !ok {
		t.Fatalf("postgres mounts nothing at %s", initdbMount)
	}
	scripts, _ := filepath.Glob(filepath.Join(initdb, "*.sh"))
	if len(scripts) != 1 {
		t.Fatalf("init scripts in %s: %v, want one", initdb, scripts)
	}
	raw, err := os.ReadFile(scripts[0])
	if err != nil {
		t.Fatal(err)
	}
	script := string(raw)
	if !strings.HasPrefix(script, "#!/bin/sh") && !strings.HasPrefix(script, "#!/bin/bash") {
		t.Errorf("%s has no shell shebang", scripts[0])
	}
	if fi, err := os.Stat(scripts[0]); err == nil && fi.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", scripts[0])
	}
	vars := shellVars(script)

	fixture, ok := mounts[vars["FIXTURE"]]
	if !ok {
		t.Errorf("init script loads FIXTURE=%q, which postgres does not mount", vars["FIXTURE"])
	} else {
		want, _ := filepath.Abs(fixturePath)
		if fixture != want {
			t.Errorf("%s is mounted from %s, want %s", vars["FIXTURE"], fixture, want)
		}
		if fi, err := os.Stat(fixture); err != nil || fi.Size() == 0 {
			t.Errorf("fixture %s: %v", fixture, err)
		}
	}
	if !regexp.MustCompile(`--dbname "\$ADMIN_DB" --file "\$FIXTURE"`).MatchString(script) {
		t.Error("init script does not load $FIXTURE into $ADMIN_DB")
	}
	for _, v := range []string{"ADMIN_DB", "TEMPLATE_DB"} {
		if !strings.Contains(script, `CREATE DATABASE "$`+v+`"`) {
			t.Errorf("init script does not create $%s", v)
		}
	}

	s := service(t, p, "consumer")
	cfg, err := config.Load(configFile(t, s), env(s))
	if err != nil {
		t.Fatal(err)
	}
	if vars["TEMPLATE_DB"] != cfg.Provisioning.Template {
		t.Errorf("init script creates template %q, provisioning.template is %q", vars["TEMPLATE_DB"], cfg.Provisioning.Template)
	}
	tc, err := cfg.Servers(config.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	if vars["ADMIN_DB"] != tc.Admin.Database {
		t.Errorf("init script creates %q, tenants.default.admin names %q", vars["ADMIN_DB"], tc.Admin.Database)
	}
	if tc.Master.Password != env(pg)("POSTGRES_PASSWORD") {
		t.Error("the tenant's master password is not postgres's POSTGRES_PASSWORD")
	}
}
