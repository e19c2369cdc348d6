package chaos

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/edfi-tools/instancemgr/internal/config"
	"github.com/edfi-tools/instancemgr/internal/testenv"
)

// manifestGrace renders the example Kubernetes overlay and returns the
// consumer's consumer.shutdownGrace (from the configuration it mounts,
// defaults applied) and its pod's terminationGracePeriodSeconds.
func manifestGrace(t *testing.T) (grace, period time.Duration) {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(t), "deployments", "kubernetes", "overlays", "example")
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	var cfgText string
	var seconds int64 = -1
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		switch r.GetKind() {
		case "ConfigMap":
			if data, ok := m["data"].(map[string]any); ok {
				if s, ok := data["instancemgr.yaml"].(string); ok {
					cfgText = s
				}
			}
		case "Deployment":
			spec := dig(m, "spec", "template", "spec")
			containers, _ := spec["containers"].([]any)
			for _, c := range containers {
				args, _ := c.(map[string]any)["args"].([]any)
				if len(args) > 0 && args[0] == "consumer" {
					if s, ok := spec["terminationGracePeriodSeconds"].(int); ok {
						seconds = int64(s)
					} else if f, ok := spec["terminationGracePeriodSeconds"].(float64); ok {
						seconds = int64(f)
					} else {
						seconds = 30 // Kubernetes' default
					}
				}
			}
		}
	}
	if cfgText == "" || seconds < 0 {
		t.Fatalf("the overlay has no instancemgr.yaml ConfigMap (%t) or no consumer Deployment (%t)", cfgText != "", seconds >= 0)
	}
	path := filepath.Join(t.TempDir(), "instancemgr.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	// Secrets come from the pod's environment; any value does here.
	cfg, err := config.Load(path, func(k string) string {
		if k == "INSTANCEMGR_ADMINAPI_CLIENT_SECRET" {
			return "unused"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("the manifest's configuration: %v", err)
	}
	return cfg.Consumer.ShutdownGrace.D(), time.Duration(seconds) * time.Second
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m, _ = m[k].(map[string]any)
	}
	return m
}
