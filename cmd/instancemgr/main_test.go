package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edfi-tools/instancemgr/consumer"
	"github.com/edfi-tools/instancemgr/internal/testenv"
	"github.com/edfi-tools/instancemgr/jobs"
)

func TestSetupIsIdempotent(t *testing.T) {
	url := testenv.NATS(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := fmt.Sprintf(`
adminApi: {baseUrl: "http://127.0.0.1:1", clientId: w}
nats: {url: %q, ackWait: 20s, maxDeliver: 7}
tenants:
  default: {master: "host=h;database=postgres", admin: "host=h;database=EdFi_Admin", ods: "host=h;database={0}"}
`, url)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INSTANCEMGR_ADMINAPI_CLIENT_SECRET", "from-env")
	for range 2 {
		var out, errOut bytes.Buffer
		if err := run([]string{"setup", "-config", cfg}, &out, &errOut); err != nil {
			t.Fatalf("setup: %v\n%s", err, errOut.String())
		}
		if !strings.Contains(out.String(), "stream INSTANCES") || !strings.Contains(out.String(), "ack wait 20s, max deliver 7") {
			t.Fatalf("setup said %q", out.String())
		}
	}
	_, js := testenv.JetStream(t, url)
	c, err := js.Consumer(context.Background(), "INSTANCES", "instancemgr")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 20*time.Second || info.Config.MaxDeliver != 7 || info.Config.BackOff[0] != 20*time.Second {
		t.Fatalf("consumer config %+v", info.Config)
	}
	if _, err := js.Stream(context.Background(), "INSTANCES_DEAD"); err != nil {
		t.Fatalf("dead-letter stream: %v", err)
	}
}

func TestSetupReportsEveryConfigProblem(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("nats: {url: \"http://x\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"setup", "-config", cfg}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"adminApi.baseUrl", "nats.url", "tenants"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestUnknownSubcommandAndVersion(t *testing.T) {
	if err := run([]string{"explode"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
	var out bytes.Buffer
	if err := run([]string{"version"}, &out, &bytes.Buffer{}); err != nil || !strings.HasPrefix(out.String(), "instancemgr ") {
		t.Fatalf("version: %q, %v", out.String(), err)
	}
}

// The chaos suite's switches are refused unless --enable-test-switches is
// given: a production consumer cannot be slowed or lose its heartbeat by an
// environment variable left behind.
func TestTestSwitchesNeedTheFlag(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE": "1s", "INSTANCEMGR_TEST_DISABLE_HEARTBEAT": "1"}[k]
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := testSwitches(env, false, log); err == nil || !strings.Contains(err.Error(), "--enable-test-switches") {
		t.Fatalf("switches without the flag: %v", err)
	}
	seams, err := testSwitches(env, true, log)
	if err != nil || seams.AfterDatabase == nil || !seams.DisableHeartbeat {
		t.Fatalf("switches with the flag: %+v, %v", seams, err)
	}
	if seams, err := testSwitches(func(string) string { return "" }, false, log); err != nil || seams.AfterDatabase != nil || seams.DisableHeartbeat {
		t.Fatalf("no switches: %+v, %v", seams, err)
	}
}

// INSTANCEMGR_TEST_SLOW_TENANTS slows only the named tenants' jobs: the
// fairness bench's server with a slow disk.
func TestSlowTenantsSwitch(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"INSTANCEMGR_TEST_SLOW_AFTER_DATABASE": "1h", "INSTANCEMGR_TEST_SLOW_TENANTS": "slow,slower"}[k]
	}
	seams, err := testSwitches(env, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := seams.AfterDatabase(context.Background(), consumer.Delivery{Job: jobs.Job{Tenant: "fast"}}); err != nil {
		t.Fatalf("a fast tenant's job: %v, want no wait", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := seams.AfterDatabase(ctx, consumer.Delivery{Job: jobs.Job{Tenant: "slower"}}); err == nil {
		t.Fatal("a slow tenant's job did not wait")
	}
}

// TestMain lets a test run the binary's main in a child process (the test
// binary itself), to see its exit status.
func TestMain(m *testing.M) {
	if args := os.Getenv("INSTANCEMGR_TEST_RUN_MAIN"); args != "" {
		os.Args = append([]string{"instancemgr"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs main with args in a child process and returns its exit
// status and output.
func runMain(t *testing.T, args string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "INSTANCEMGR_TEST_RUN_MAIN="+args)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// Asking for help succeeds and shows the flags; a wrong flag fails.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range []string{"-h", "--help", "consumer -h", "bridge --help", "dev -h", "healthcheck -h"} {
		code, out := runMain(t, args)
		if code != 0 || !strings.Contains(strings.ToLower(out), "usage") {
			t.Errorf("instancemgr %s: exit %d, output:\n%s", args, code, out)
		}
	}
	if code, out := runMain(t, "consumer -no-such-flag"); code == 0 {
		t.Errorf("instancemgr consumer -no-such-flag: exit 0, output:\n%s", out)
	}
}

// Roles log one JSON object per line by default, naming the role, and
// text when asked (-log-format or INSTANCEMGR_LOG_FORMAT).
func TestRolesLogJSONByDefault(t *testing.T) {
	url := testenv.NATS(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := fmt.Sprintf(`
adminApi: {baseUrl: "http://127.0.0.1:1", clientId: w}
nats: {url: %q}
tenants:
  default: {master: "host=h;database=postgres", admin: "host=h;database=EdFi_Admin", ods: "host=h;database={0}"}
`, url)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INSTANCEMGR_ADMINAPI_CLIENT_SECRET", "from-env")
	setup := func(args ...string) []string {
		t.Helper()
		var errOut bytes.Buffer
		if err := run(append([]string{"setup", "-config", cfg}, args...), &bytes.Buffer{}, &errOut); err != nil {
			t.Fatalf("setup %v: %v\n%s", args, err, errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
		if len(lines) == 0 || lines[0] == "" {
			t.Fatalf("setup %v logged nothing", args)
		}
		return lines
	}
	for _, line := range setup() {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", line, err)
		}
		if rec["role"] != "setup" || rec["msg"] == "" || rec["level"] == "" || rec["time"] == "" {
			t.Errorf("JSON line without time, level, msg or role=setup: %q", line)
		}
	}
	for _, line := range setup("-log-format", "text") {
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, "role=setup") {
			t.Errorf("not a text line: %q", line)
		}
	}
	t.Setenv("INSTANCEMGR_LOG_FORMAT", "text")
	for _, line := range setup() {
		if !strings.HasPrefix(line, "time=") {
			t.Errorf("INSTANCEMGR_LOG_FORMAT=text, but: %q", line)
		}
	}
}

// config check validates without running anything and shows the effective
// configuration with no secret in it.
func TestConfigCheckRedactsSecrets(t *testing.T) {
	const (
		clientSecret = "Client-S3cret-XYZ"
		pgPassword   = "Pg-Passw0rd-XYZ"
		natsPassword = "Nats-Pass-XYZ"
		key          = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGU="
	)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	body := fmt.Sprintf(`
adminApi: {baseUrl: "https://admin.example.org", clientId: w}
nats: {url: "nats://u:%s@nats.example.org:4222", ackWait: 45s}
tenants:
  default: {master: "host=db;username=im;password=%s;database=postgres", admin: "host=db;username=im;password=%s;database=EdFi_Admin", ods: "host=db;username=ods;password=%s;database={0}"}
`, natsPassword, pgPassword, pgPassword, pgPassword)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INSTANCEMGR_ADMINAPI_CLIENT_SECRET", clientSecret)
	t.Setenv("INSTANCEMGR_ODS_ENCRYPTION_KEY", key)
	var out, errOut bytes.Buffer
	if err := run([]string{"config", "check", "-config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("config check: %v\n%s", err, errOut.String())
	}
	for _, secret := range []string{clientSecret, pgPassword, natsPassword, key} {
		if strings.Contains(out.String()+errOut.String(), secret) {
			t.Errorf("config check shows a secret %q:\n%s", secret, out.String())
		}
	}
	// What it shows is the effective configuration: defaults and the
	// environment applied, readable back.
	var shown struct {
		AdminAPI struct {
			ClientSecret string `yaml:"clientSecret"`
			TokenURL     string `yaml:"tokenUrl"`
		} `yaml:"adminApi"`
		NATS struct {
			AckWait string `yaml:"ackWait"`
			Stream  string `yaml:"stream"`
		} `yaml:"nats"`
		Tenants map[string]struct {
			Master string `yaml:"master"`
		} `yaml:"tenants"`
	}
	if err := yaml.Unmarshal(out.Bytes(), &shown); err != nil {
		t.Fatalf("config check output is not YAML: %v\n%s", err, out.String())
	}
	if shown.AdminAPI.ClientSecret != "REDACTED" || shown.AdminAPI.TokenURL != "https://admin.example.org/connect/token" ||
		shown.NATS.AckWait != "45s" || shown.NATS.Stream != "INSTANCES" || !strings.Contains(shown.Tenants["default"].Master, "database=postgres") {
		t.Errorf("config check shows %+v", shown)
	}

	if err := os.WriteFile(cfg, []byte("nats: {url: \"http://x\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"config", "check", "-config", cfg}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "adminApi.baseUrl") || !strings.Contains(err.Error(), "nats.url") {
		t.Fatalf("config check of a bad configuration: %v", err)
	}
}
