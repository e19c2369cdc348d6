package deployments_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/edfi-tools/instancemgr/internal/config"
)

const (
	k8sBase       = "kubernetes/base"
	k8sExample    = "kubernetes/overlays/example"
	k8sExampleHPA = "kubernetes/overlays/example-hpa"
	// releaseMargin is the time a consumer needs after shutdownGrace to
	// cancel and release (nak) what is left, and exit.
	k8sReleaseMargin = 15 * time.Second
)

// The CRDs' fields this repository uses; decoding is strict, so a field
// not declared here (or misspelled in the manifests) fails.
type k8sScaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

type k8sServiceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// rendered is one kustomize build, each object decoded into its type.
type k8sRendered struct {
	deployments     []*appsv1.Deployment
	jobs            []*batchv1.Job
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	namespaces      []*corev1.Namespace
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	scaledObjects   []*k8sScaledObject
	serviceMonitors []*k8sServiceMonitor
	// objectNamespaces is the namespace of every object but Namespaces,
	// by kind/name.
	objectNamespaces map[string]string
}

// k8sOneNamespace: an overlay puts every object in one namespace, so the
// references between them (Secrets, ConfigMap, scale targets) resolve.
func k8sOneNamespace(t *testing.T, r *k8sRendered) {
	t.Helper()
	want := r.objectNamespaces["Deployment/instancemgr-consumer"]
	if want == "" {
		t.Fatal("the consumer Deployment has no namespace")
	}
	for obj, ns := range r.objectNamespaces {
		if ns != want {
			t.Errorf("%s is in namespace %q, the rest in %q", obj, ns, want)
		}
	}
}

// decodeStrict turns YAML into v, failing on duplicate keys and on fields
// v does not have.
func k8sDecodeStrict(y []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

// add decodes one object by its apiVersion and kind.
func (r *k8sRendered) add(apiVersion, kind string, y []byte) error {
	var v any
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		r.deployments, v = append(r.deployments, o), o
	case "batch/v1 Job":
		o := &batchv1.Job{}
		r.jobs, v = append(r.jobs, o), o
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		r.configMaps, v = append(r.configMaps, o), o
	case "v1 Secret":
		o := &corev1.Secret{}
		r.secrets, v = append(r.secrets, o), o
	case "v1 Service":
		o := &corev1.Service{}
		r.services, v = append(r.services, o), o
	case "v1 ServiceAccount":
		o := &corev1.ServiceAccount{}
		r.serviceAccounts, v = append(r.serviceAccounts, o), o
	case "v1 Namespace":
		o := &corev1.Namespace{}
		r.namespaces, v = append(r.namespaces, o), o
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		r.pdbs, v = append(r.pdbs, o), o
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		r.hpas, v = append(r.hpas, o), o
	case "keda.sh/v1alpha1 ScaledObject":
		o := &k8sScaledObject{}
		r.scaledObjects, v = append(r.scaledObjects, o), o
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o := &k8sServiceMonitor{}
		r.serviceMonitors, v = append(r.serviceMonitors, o), o
	default:
		return fmt.Errorf("unexpected kind %s %s", apiVersion, kind)
	}
	return k8sDecodeStrict(y, v)
}

func k8sRender(t *testing.T, dir string) *k8sRendered {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.FromSlash(dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &k8sRendered{objectNamespaces: map[string]string{}}
	if m.Size() == 0 {
		t.Fatalf("kustomize build %s: no objects", dir)
	}
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s %s: %v", dir, res.GetKind(), res.GetName(), err)
		}
		if res.GetKind() != "Namespace" {
			r.objectNamespaces[res.GetKind()+"/"+res.GetName()] = res.GetNamespace()
		}
		if err := r.add(res.GetApiVersion(), res.GetKind(), y); err != nil {
			t.Errorf("%s: %s %s: %v", dir, res.GetKind(), res.GetName(), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return r
}

func (r *k8sRendered) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range r.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %q", name)
	return nil
}

func (r *k8sRendered) configMap(name string) *corev1.ConfigMap {
	for _, c := range r.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (r *k8sRendered) secret(name string) *corev1.Secret {
	for _, s := range r.secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// podSpecs are every workload's pod template, by workload.
func (r *k8sRendered) podSpecs() map[string]*corev1.PodTemplateSpec {
	p := map[string]*corev1.PodTemplateSpec{}
	for _, d := range r.deployments {
		p["Deployment "+d.Name] = &d.Spec.Template
	}
	for _, j := range r.jobs {
		p["Job "+j.Name] = &j.Spec.Template
	}
	return p
}

// roles maps each workload to the subcommand it must run.
var k8sRoles = map[string]string{
	"Job instancemgr-setup":           "setup",
	"Deployment instancemgr-bridge":   "bridge",
	"Deployment instancemgr-consumer": "consumer",
}

// configFile finds the file a container's -config names in the ConfigMap
// mounted there, and returns its content.
func k8sConfigFile(t *testing.T, r *k8sRendered, pod *corev1.PodSpec, c *corev1.Container) string {
	t.Helper()
	if len(c.Command) != 0 {
		t.Errorf("container %s: command %q overrides the image's entrypoint", c.Name, c.Command)
	}
	if len(c.Args) != 3 || c.Args[1] != "-config" {
		t.Fatalf("container %s: args %q, want [<role> -config <file>]", c.Name, c.Args)
	}
	file := c.Args[2]
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(file) || m.SubPath != "" {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.ConfigMap == nil {
				t.Fatalf("container %s: volume %s at %s is not a ConfigMap", c.Name, v.Name, m.MountPath)
			}
			cm := r.configMap(v.ConfigMap.Name)
			if cm == nil {
				t.Fatalf("container %s: ConfigMap %q is not in the build", c.Name, v.ConfigMap.Name)
			}
			data, ok := cm.Data[path.Base(file)]
			if !ok {
				t.Fatalf("container %s: ConfigMap %s has no key %q", c.Name, cm.Name, path.Base(file))
			}
			return data
		}
		t.Fatalf("container %s: mount %s names no volume", c.Name, m.Name)
	}
	t.Fatalf("container %s: -config %s is not in a mounted directory", c.Name, file)
	return ""
}

// podEnv is the environment the container would get: literal values, and
// the rendered Secrets' keys. Missing Secrets or keys fail unless optional.
func k8sPodEnv(t *testing.T, r *k8sRendered, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.SecretRef == nil {
			t.Errorf("container %s: envFrom other than a Secret", c.Name)
			continue
		}
		s := r.secret(from.SecretRef.Name)
		if s == nil {
			t.Errorf("container %s: envFrom Secret %q is not in the build", c.Name, from.SecretRef.Name)
			continue
		}
		for k, v := range s.Data {
			env[from.Prefix+k] = string(v)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := r.secret(ref.Name)
			if s == nil {
				t.Errorf("container %s: %s: Secret %q is not in the build", c.Name, e.Name, ref.Name)
				continue
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				t.Errorf("container %s: %s: Secret %s has no key %q", c.Name, e.Name, s.Name, ref.Key)
				continue
			}
			env[e.Name] = string(v)
		default:
			t.Errorf("container %s: %s: unexpected valueFrom", c.Name, e.Name)
		}
	}
	return env
}

// loadConfig loads the ConfigMap's file with the project's own loader, in
// the container's environment.
func k8sLoadConfig(t *testing.T, data string, env map[string]string) *config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "instancemgr.yaml")
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the config does not load:\n%v", err)
	}
	return cfg
}

func k8sMetricsPort(c *corev1.Container) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == "metrics" {
			return &c.Ports[i]
		}
	}
	return nil
}

// probeOnMetrics checks an HTTP probe on path at the metrics port.
func k8sProbeOnMetrics(t *testing.T, what string, p *corev1.Probe, wantPath string, port *corev1.ContainerPort) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no httpGet probe", what)
		return
	}
	if p.HTTPGet.Path != wantPath {
		t.Errorf("%s: path %q, want %q", what, p.HTTPGet.Path, wantPath)
	}
	switch pp := p.HTTPGet.Port; {
	case pp.Type == intstr.String && pp.StrVal == port.Name:
	case pp.Type == intstr.Int && pp.IntVal == port.ContainerPort:
	default:
		t.Errorf("%s: port %s is not the metrics port %d", what, pp.String(), port.ContainerPort)
	}
}

func k8sCheckHardened(t *testing.T, what string, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	isTrue := func(a, b *bool) bool { return (b != nil && *b) || (b == nil && a != nil && *a) }
	if !isTrue(psc.RunAsNonRoot, sc.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot is not true", what)
	}
	uid := psc.RunAsUser
	if sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	if uid == nil || *uid != 65532 {
		t.Errorf("%s: runAsUser is not the image's 65532", what)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", what)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: capabilities do not drop ALL (or add some)", what)
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", what)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("%s: no %s request", what, res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory limit", what)
	}
}

// TestKubernetesExample checks the example overlay as a cluster would run it.
func TestKubernetesExample(t *testing.T) {
	r := k8sRender(t, k8sExample)
	k8sOneNamespace(t, r)

	if len(r.hpas) != 0 {
		t.Errorf("the example renders %d HorizontalPodAutoscalers beside the ScaledObject", len(r.hpas))
	}
	if len(r.serviceAccounts) != 1 {
		t.Fatalf("%d ServiceAccounts, want 1", len(r.serviceAccounts))
	}
	sa := r.serviceAccounts[0].Name

	pods := r.podSpecs()
	if len(pods) != len(k8sRoles) {
		t.Errorf("workloads %v, want those of %v", slices.Sorted(maps.Keys(pods)), k8sRoles)
	}
	var consumerCfg *config.Config
	for what, role := range k8sRoles {
		tpl, ok := pods[what]
		if !ok {
			t.Errorf("no %s", what)
			continue
		}
		pod := &tpl.Spec
		if pod.ServiceAccountName != sa {
			t.Errorf("%s: serviceAccountName %q, want %q", what, pod.ServiceAccountName, sa)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", what, len(pod.Containers))
		}
		c := &pod.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != role {
			t.Errorf("%s: args %q do not run %q", what, c.Args, role)
		}
		if !strings.HasPrefix(c.Image, "ghcr.io/edfi-tools/instancemgr:") || strings.HasSuffix(c.Image, ":latest") {
			t.Errorf("%s: image %q is not ghcr.io/edfi-tools/instancemgr at a pinned version", what, c.Image)
		}
		k8sCheckHardened(t, what, pod, c)
		cfg := k8sLoadConfig(t, k8sConfigFile(t, r, pod, c), k8sPodEnv(t, r, c))
		if role == "setup" {
			continue
		}
		port := k8sMetricsPort(c)
		if port == nil {
			t.Errorf("%s: no container port named metrics", what)
			continue
		}
		_, p, err := net.SplitHostPort(cfg.MetricsAddr)
		if err != nil || p != fmt.Sprint(port.ContainerPort) {
			t.Errorf("%s: metricsAddr %q does not serve on the metrics port %d", what, cfg.MetricsAddr, port.ContainerPort)
		}
		k8sProbeOnMetrics(t, what+" readinessProbe", c.ReadinessProbe, "/readyz", port)
		k8sProbeOnMetrics(t, what+" livenessProbe", c.LivenessProbe, "/healthz", port)
		// The probes are served once NATS first answers, which a role waits
		// for up to two minutes: liveness must not restart it before.
		k8sProbeOnMetrics(t, what+" startupProbe", c.StartupProbe, "/healthz", port)
		if sp := c.StartupProbe; sp != nil && time.Duration(sp.PeriodSeconds*sp.FailureThreshold)*time.Second < 2*time.Minute {
			t.Errorf("%s: startupProbe allows %ds, less than the two minutes the first NATS connection may take", what, sp.PeriodSeconds*sp.FailureThreshold)
		}
		if role == "consumer" {
			consumerCfg = cfg
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	bridge := r.deployment(t, "instancemgr-bridge")
	if bridge.Spec.Replicas == nil || *bridge.Spec.Replicas != 1 {
		t.Errorf("bridge replicas %s, want exactly 1", k8sPtr(bridge.Spec.Replicas))
	}
	if bridge.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("bridge strategy %q, want Recreate (a rollout must not run two)", bridge.Spec.Strategy.Type)
	}

	consumer := r.deployment(t, "instancemgr-consumer")
	grace := consumerCfg.Consumer.ShutdownGrace.D()
	tgp := consumer.Spec.Template.Spec.TerminationGracePeriodSeconds
	if tgp == nil || time.Duration(*tgp)*time.Second <= grace+k8sReleaseMargin {
		t.Errorf("consumer terminationGracePeriodSeconds %s is not more than shutdownGrace %s + %s to release", k8sPtr(tgp), grace, k8sReleaseMargin)
	}

	for _, j := range r.jobs {
		if j.Spec.BackoffLimit == nil || j.Spec.TTLSecondsAfterFinished == nil {
			t.Errorf("Job %s: backoffLimit and ttlSecondsAfterFinished must be set", j.Name)
		}
	}

	// KEDA scales the consumer Deployment on its own durable consumer.
	if len(r.scaledObjects) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(r.scaledObjects))
	}
	so := r.scaledObjects[0]
	if ref := so.Spec.ScaleTargetRef; ref.Name != consumer.Name || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Errorf("ScaledObject targets %s %q, want Deployment %q", ref.Kind, ref.Name, consumer.Name)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
		t.Errorf("ScaledObject minReplicaCount %s: at least one consumer must run to hear max-deliveries advisories", k8sPtr(so.Spec.MinReplicaCount))
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 1 || (so.Spec.MinReplicaCount != nil && *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount) {
		t.Errorf("ScaledObject maxReplicaCount %s is not at least 1 and minReplicaCount", k8sPtr(so.Spec.MaxReplicaCount))
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "nats-jetstream" {
		t.Fatalf("ScaledObject triggers %+v, want one nats-jetstream", so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	if md["stream"] != consumerCfg.NATS.Stream || md["consumer"] != consumerCfg.NATS.Consumer {
		t.Errorf("nats-jetstream trigger watches %s/%s, the config uses %s/%s", md["stream"], md["consumer"], consumerCfg.NATS.Stream, consumerCfg.NATS.Consumer)
	}
	for _, k := range []string{"natsServerMonitoringEndpoint", "account", "lagThreshold"} {
		if md[k] == "" {
			t.Errorf("nats-jetstream trigger: no %s", k)
		}
	}

	// The PodDisruptionBudget keeps a consumer through drains.
	if len(r.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(r.pdbs))
	}
	pdb := r.pdbs[0]
	if sel := k8sSelector(t, pdb.Spec.Selector); !sel.Matches(labels.Set(consumer.Spec.Template.Labels)) || sel.Matches(labels.Set(bridge.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget %s does not select the consumers alone", pdb.Name)
	}
	// One at a time, and never refusing every eviction: at one replica (the
	// scaler's minimum) or with no replica ready, minAvailable: 1 would hang
	// a node drain.
	if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v maxUnavailable %v, want maxUnavailable 1 alone", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}

	k8sCheckMetricsServices(t, r, []*appsv1.Deployment{bridge, consumer})
}

func k8sSelector(t *testing.T, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if s == nil {
		t.Fatal("no selector")
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() {
		t.Fatal("an empty selector selects everything")
	}
	return sel
}

// checkMetricsServices: each Deployment's pods are behind a Service whose
// port reaches the container port named metrics, and the ServiceMonitor
// selects those Services and scrapes that port.
func k8sCheckMetricsServices(t *testing.T, r *k8sRendered, deps []*appsv1.Deployment) {
	t.Helper()
	if len(r.serviceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(r.serviceMonitors))
	}
	sm := r.serviceMonitors[0]
	smSel := k8sSelector(t, &sm.Spec.Selector)
	if len(sm.Spec.Endpoints) == 0 {
		t.Fatal("ServiceMonitor has no endpoints")
	}
	for _, d := range deps {
		pod := d.Spec.Template
		port := k8sMetricsPort(&pod.Spec.Containers[0])
		found := false
		for _, svc := range r.services {
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
				continue
			}
			if !smSel.Matches(labels.Set(svc.Labels)) {
				t.Errorf("Service %s (Deployment %s) is not selected by ServiceMonitor %s", svc.Name, d.Name, sm.Metadata.Name)
			}
			for _, ep := range sm.Spec.Endpoints {
				var sp *corev1.ServicePort
				for i := range svc.Spec.Ports {
					if svc.Spec.Ports[i].Name == ep.Port {
						sp = &svc.Spec.Ports[i]
					}
				}
				if sp == nil {
					t.Errorf("Service %s has no port %q for the ServiceMonitor", svc.Name, ep.Port)
					continue
				}
				tp := sp.TargetPort
				if !(tp.Type == intstr.String && tp.StrVal == port.Name) && !(tp.Type == intstr.Int && tp.IntVal == port.ContainerPort) &&
					!(tp.Type == intstr.Int && tp.IntVal == 0 && sp.Port == port.ContainerPort) {
					t.Errorf("Service %s port %s targets %s, not the metrics container port", svc.Name, sp.Name, tp.String())
				}
				if ep.Path != "" && ep.Path != "/metrics" {
					t.Errorf("ServiceMonitor scrapes %q, metrics are at /metrics", ep.Path)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("no Service exposes the metrics of Deployment %s", d.Name)
		}
	}
}

// TestKubernetesBaseCarriesNoSecrets: the base references Secrets but holds
// no secret data; an overlay or the operator supplies it.
func TestKubernetesBaseCarriesNoSecrets(t *testing.T) {
	r := k8sRender(t, k8sBase)
	for _, s := range r.secrets {
		if len(s.Data) != 0 || len(s.StringData) != 0 {
			t.Errorf("base Secret %s carries data", s.Name)
		}
	}
	// The config in the base holds no password either.
	for _, cm := range r.configMaps {
		for k, v := range cm.Data {
			if strings.Contains(strings.ToLower(v), "password=") {
				t.Errorf("base ConfigMap %s key %s holds a password", cm.Name, k)
			}
		}
	}
	if len(r.deployments) == 0 {
		t.Error("the base renders no Deployments")
	}
}

// TestKubernetesHPAAlternative: the HPA component replaces the ScaledObject
// and scales the consumer Deployment.
func TestKubernetesHPAAlternative(t *testing.T) {
	r := k8sRender(t, k8sExampleHPA)
	k8sOneNamespace(t, r)
	if len(r.scaledObjects) != 0 {
		t.Errorf("the HPA alternative still renders %d ScaledObjects", len(r.scaledObjects))
	}
	if len(r.hpas) != 1 {
		t.Fatalf("%d HorizontalPodAutoscalers, want 1", len(r.hpas))
	}
	h := r.hpas[0]
	consumer := r.deployment(t, "instancemgr-consumer")
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != consumer.Name {
		t.Errorf("HPA targets %s %s %q, want apps/v1 Deployment %q", ref.APIVersion, ref.Kind, ref.Name, consumer.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 {
		t.Errorf("HPA minReplicas %s, want at least 1", k8sPtr(h.Spec.MinReplicas))
	}
	if len(h.Spec.Metrics) == 0 {
		t.Error("HPA has no metrics")
	}
	for _, c := range consumer.Spec.Template.Spec.Containers {
		if c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("container %s has no CPU request, which a CPU utilization target needs", c.Name)
		}
	}
}

// TestKubernetesStrictDecoding keeps the decoding above honest: a
// misspelled field fails, and so does an unexpected kind.
func TestKubernetesStrictDecoding(t *testing.T) {
	var r k8sRendered
	typo := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := r.add("apps/v1", "Deployment", typo); err == nil {
		t.Error("a Deployment with spec.replica decoded")
	}
	soTypo := []byte("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  minReplicas: 1\n")
	if err := r.add("keda.sh/v1alpha1", "ScaledObject", soTypo); err == nil {
		t.Error("a ScaledObject with spec.minReplicas decoded")
	}
	dup := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b, a: c}\n")
	if err := r.add("v1", "ConfigMap", dup); err == nil {
		t.Error("a ConfigMap with a duplicate key decoded")
	}
	if err := r.add("v1", "Pod", []byte("apiVersion: v1\nkind: Pod\n")); err == nil {
		t.Error("an unexpected kind decoded")
	}
	ok := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 2\n")
	if err := r.add("apps/v1", "Deployment", ok); err != nil {
		t.Errorf("a valid Deployment: %v", err)
	}
}

// k8sPtr prints an optional number.
func k8sPtr[T int32 | int64](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
