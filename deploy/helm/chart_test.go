// Package helm holds the tests of the Helm chart in deploy/helm/mcptrail:
// every values file renders with `helm template`, passes `helm lint
// --strict` and kubeconform, decodes strictly into the Kubernetes API types,
// and its gateway config passes mcptrail's own validation.
package helm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/sessionseal"
)

const chartDir = "mcptrail"

// tool finds a program installed by scripts/setup.sh (go install puts it in
// $(go env GOPATH)/bin, which may not be on PATH).
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", dir).Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			continue
		}
		p := filepath.Join(strings.TrimSpace(string(out)), name)
		if dir == "GOPATH" {
			p = filepath.Join(strings.TrimSpace(string(out)), "bin", name)
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not installed: run scripts/setup.sh", name)
	return ""
}

func run(t *testing.T, stdin []byte, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// helm must not read or write the user's config and cache.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.Bytes(), err
}

func schemaDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := writeSchemas(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// kubeconform validates manifests offline against the generated schemas;
// a kind without a schema is an error (no -ignore-missing-schemas).
func kubeconform(t *testing.T, schemas string, manifests []byte) (valid int, err error) {
	t.Helper()
	out, err := run(t, manifests, tool(t, "kubeconform"), "-strict", "-summary", "-output", "json",
		"-schema-location", filepath.Join(schemas, "{{ .ResourceKind }}{{ .KindSuffix }}.json"), "-")
	var res struct {
		Summary struct{ Valid, Invalid, Errors, Skipped int } `json:"summary"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil && err == nil {
		return 0, fmt.Errorf("kubeconform output %q: %w", out, jerr)
	}
	if err == nil && (res.Summary.Invalid+res.Summary.Errors+res.Summary.Skipped != 0) {
		err = fmt.Errorf("kubeconform summary %+v", res.Summary)
	}
	return res.Summary.Valid, err
}

// rendered is one manifest of `helm template`.
type rendered struct {
	Kind string
	Name string
	Raw  []byte // JSON
}

func splitManifests(t *testing.T, out []byte) []rendered {
	t.Helper()
	var docs []rendered
	r := utilyaml.NewYAMLReader(bufioReader(out))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
		}
		if string(js) == "null" {
			continue
		}
		var meta struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := json.Unmarshal(js, &meta); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, rendered{meta.Kind, meta.Metadata.Name, js})
	}
	return docs
}

// decode is a strict decode into a Kubernetes API type: an unknown field
// is an error, as on a server with field validation Strict.
func decode(t *testing.T, d rendered, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(d.Raw, into); err != nil {
		t.Fatalf("%s %s does not decode strictly into %T: %v", d.Kind, d.Name, into, err)
	}
}

func TestChartRendersAndValidates(t *testing.T) {
	helm := tool(t, "helm")
	schemas := schemaDir(t)
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir, err)
	}
	type want struct {
		kinds       []string // sorted kind/name-suffix list
		replicas    int32    // 0: set by the HPA
		image       string
		adminPort   int32
		tokens      int
		redisEnv    string
		secretName  string
		clusterSet  bool
		annotations bool
		preStop     int64 // seconds of the preStop sleep; 0: none
		sessionKeys bool  // sessions.keys set (sealed sessions)
	}
	wants := map[string]want{
		"default-values.yaml": {
			kinds: []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"},
			image: "ghcr.io/mcptrail/mcptrail:dev", adminPort: 9090, secretName: "ci-mcptrail", annotations: true, preStop: 5,
		},
		"full-values.yaml": {
			kinds: []string{"ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service", "Service", "ServiceAccount"},
			image: "ghcr.io/mcptrail/mcptrail:1.2.3-node", adminPort: 9090, tokens: 2, redisEnv: "ci-mcptrail-redis:6379",
			secretName: "ci-mcptrail", clusterSet: true, annotations: true, preStop: 5, sessionKeys: true,
		},
		"existing-secret-values.yaml": {
			kinds:    []string{"ConfigMap", "Deployment", "Service"},
			replicas: 3, image: "ghcr.io/mcptrail/mcptrail:dev", tokens: 1, redisEnv: "redis.shared.svc.cluster.local:6379",
			secretName: "mcptrail-secrets", sessionKeys: true,
		},
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			w, ok := wants[name]
			if !ok {
				t.Fatalf("no expectations for %s: add them to this test", name)
			}
			if _, err := run(t, nil, helm, "lint", "--strict", chartDir, "-f", f); err != nil {
				t.Fatal(err)
			}
			out, err := run(t, nil, helm, "template", "ci", chartDir, "-f", f, "--namespace", "gateways")
			if err != nil {
				t.Fatal(err)
			}
			docs := splitManifests(t, out)
			valid, err := kubeconform(t, schemas, out)
			if err != nil {
				t.Fatal(err)
			}
			if valid != len(docs) {
				t.Errorf("kubeconform: %d valid, want all %d manifests", valid, len(docs))
			}
			var kinds []string
			byKind := map[string][]rendered{}
			for _, d := range docs {
				kinds = append(kinds, d.Kind)
				byKind[d.Kind] = append(byKind[d.Kind], d)
			}
			sort.Strings(kinds)
			if strings.Join(kinds, " ") != strings.Join(w.kinds, " ") {
				t.Errorf("kinds = %v, want %v", kinds, w.kinds)
			}
			checkGateway(t, byKind, w.replicas, w.image, w.adminPort, w.tokens, w.redisEnv, w.secretName, w.annotations)
			cfg := checkConfig(t, byKind, w.adminPort, w.tokens, w.clusterSet)
			checkReplicaConfig(t, cfg, w.redisEnv, w.sessionKeys)
			dep := findDeployment(t, byKind, "ci-mcptrail")
			var sleep int64
			if lc := dep.Spec.Template.Spec.Containers[0].Lifecycle; lc != nil && lc.PreStop != nil && lc.PreStop.Sleep != nil {
				sleep = lc.PreStop.Sleep.Seconds
			}
			if grace := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; sleep != w.preStop || grace == nil || sleep >= *grace {
				t.Errorf("preStop sleep = %d s (grace %v), want %d s, shorter than the grace period", sleep, grace, w.preStop)
			}
			for _, d := range byKind["HorizontalPodAutoscaler"] {
				var h autoscalingv2.HorizontalPodAutoscaler
				decode(t, d, &h)
				if h.Spec.ScaleTargetRef.Name != "ci-mcptrail" || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
					t.Errorf("HPA %s targets %+v with minReplicas %v", d.Name, h.Spec.ScaleTargetRef, h.Spec.MinReplicas)
				}
			}
			for _, d := range byKind["PodDisruptionBudget"] {
				var p policyv1.PodDisruptionBudget
				decode(t, d, &p)
				if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
					t.Errorf("PDB %s: want exactly one of minAvailable and maxUnavailable: %+v", d.Name, p.Spec)
				}
			}
		})
	}
}

func findDeployment(t *testing.T, byKind map[string][]rendered, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range byKind["Deployment"] {
		if d.Name == name {
			var dep appsv1.Deployment
			decode(t, d, &dep)
			return &dep
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func checkGateway(t *testing.T, byKind map[string][]rendered, replicas int32, image string, adminPort int32, tokens int, redisEnv, secretName string, annotations bool) {
	t.Helper()
	dep := findDeployment(t, byKind, "ci-mcptrail")
	if got := dep.Spec.Replicas; replicas == 0 && got != nil || replicas != 0 && (got == nil || *got != replicas) {
		t.Errorf("replicas = %v, want %d (0: left to the HPA)", got, replicas)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != image {
		t.Errorf("image = %q, want %q", c.Image, image)
	}
	probes := []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}}
	for _, p := range probes {
		if p.p == nil || p.p.HTTPGet == nil || p.p.HTTPGet.Path != p.path || p.p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe = %+v, want GET %s on port http", p.name, p.p, p.path)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["admin"] != adminPort {
		t.Errorf("container ports = %v, want http 8080 and admin %d", ports, adminPort)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"MCPTRAIL_REDACTION_KEY", "CLICKHOUSE_PASSWORD", "MCPTRAIL_SESSION_KEY"} {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secretName || e.Value != "" {
			t.Errorf("env %s = %+v, want it from Secret %s", name, e, secretName)
		}
	}
	n := 0
	for name, e := range env {
		if strings.HasPrefix(name, "MCPTRAIL_TOKEN_") {
			n++
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secretName {
				t.Errorf("env %s = %+v, want it from Secret %s", name, e, secretName)
			}
		}
	}
	if n != tokens {
		t.Errorf("token env vars = %d, want %d", n, tokens)
	}
	if got := env["MCPTRAIL_REDIS_ADDR"].Value; got != redisEnv {
		t.Errorf("MCPTRAIL_REDIS_ADDR = %q, want %q", got, redisEnv)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext = %+v, want a read-only root and no privilege escalation", sc)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot", pod.SecurityContext)
	}
	ann := dep.Spec.Template.Annotations
	if ann["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a config change would not roll the pods")
	}
	wantPort := "8080"
	if adminPort != 0 {
		wantPort = fmt.Sprint(adminPort)
	}
	if annotations && (ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != wantPort) ||
		!annotations && ann["prometheus.io/scrape"] != "" {
		t.Errorf("scrape annotations = %v, want them %v on port %s", ann, annotations, wantPort)
	}
	for _, d := range byKind["Service"] {
		var s corev1.Service
		decode(t, d, &s)
		if d.Name == "ci-mcptrail" && s.Spec.SessionAffinity != corev1.ServiceAffinityNone {
			t.Errorf("Service sessionAffinity = %q, want None (no sticky sessions)", s.Spec.SessionAffinity)
		}
	}
}

// checkConfig runs the rendered mcptrail.yaml through mcptrail's config
// validation, with the environment the Deployment gives the container.
func checkConfig(t *testing.T, byKind map[string][]rendered, adminPort int32, tokens int, clusterSet bool) *config.Config {
	t.Helper()
	if len(byKind["ConfigMap"]) != 1 {
		t.Fatalf("ConfigMaps = %d, want 1", len(byKind["ConfigMap"]))
	}
	var cm corev1.ConfigMap
	decode(t, byKind["ConfigMap"][0], &cm)
	raw := cm.Data["mcptrail.yaml"]
	secretData := map[string]string{}
	for _, d := range byKind["Secret"] {
		var s corev1.Secret
		decode(t, d, &s)
		for k, v := range s.StringData {
			secretData[k] = v
		}
	}
	dep := findDeployment(t, byKind, "ci-mcptrail")
	env := map[string]string{}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			v, ok := secretData[e.ValueFrom.SecretKeyRef.Key]
			if !ok { // an existing Secret: any well-formed value
				v = "0000000000000000000000000000000000000000000000000000000000000000"
			}
			env[e.Name] = v
		default:
			env[e.Name] = e.Value
		}
	}
	cfg, err := config.ParseEnv([]byte(raw), "mcptrail.yaml", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("the rendered config fails mcptrail's validation: %v\n%s", err, raw)
	}
	if cfg.Listen != "0.0.0.0:8080" {
		t.Errorf("listen = %q", cfg.Listen)
	}
	wantAdmin := ""
	if adminPort != 0 {
		wantAdmin = fmt.Sprintf("0.0.0.0:%d", adminPort)
	}
	if cfg.Admin.Listen != wantAdmin {
		t.Errorf("admin.listen = %q, want %q", cfg.Admin.Listen, wantAdmin)
	}
	if len(cfg.Auth.Tokens) != tokens {
		t.Errorf("auth.tokens = %d, want %d", len(cfg.Auth.Tokens), tokens)
	}
	for name, v := range secretData {
		if v != "" && strings.Contains(raw, v) {
			t.Errorf("Secret key %s's value is in the ConfigMap", name)
		}
	}
	if cfg.Recorder.ClickHouse.Password != env["CLICKHOUSE_PASSWORD"] {
		t.Errorf("recorder.clickhouse.password does not come from CLICKHOUSE_PASSWORD")
	}
	if (cfg.Recorder.ClickHouse.Cluster != "") != clusterSet {
		t.Errorf("recorder.clickhouse.cluster = %q, want set %v", cfg.Recorder.ClickHouse.Cluster, clusterSet)
	}
	if cfg.Recorder.Spool.Dir != "/var/lib/mcptrail/spool" {
		t.Errorf("recorder.spool.dir = %q, want it on the data volume", cfg.Recorder.Spool.Dir)
	}
	return cfg
}

// checkReplicaConfig: the session keys of the Secret reach sessions.keys
// (and parse as a key ring when the chart made the Secret), and with
// redis.enabled the rendered config shares state through it.
func checkReplicaConfig(t *testing.T, cfg *config.Config, redisAddr string, sessionKeys bool) {
	t.Helper()
	if cfg.Sessions.Sealed() != sessionKeys {
		t.Errorf("sessions sealed = %v, want %v", cfg.Sessions.Sealed(), sessionKeys)
	}
	if keys := cfg.Sessions.Keys; keys != "" && !strings.HasPrefix(keys, "0000") {
		if _, err := sessionseal.ParseKeys([]byte(keys)); err != nil {
			t.Errorf("secrets.sessionKey is not a key ring: %v", err)
		}
	}
	if cfg.Redis.Addr != redisAddr {
		t.Errorf("redis.addr = %q, want %q", cfg.Redis.Addr, redisAddr)
	}
}

// TestChartRefusesMissingRedactionKey: without a redaction key the chart
// does not render (a gateway would record placeholders keyed by nothing).
func TestChartRefusesMissingRedactionKey(t *testing.T) {
	_, err := run(t, nil, tool(t, "helm"), "template", "ci", chartDir)
	if err == nil || !strings.Contains(err.Error(), "secrets.redactionKey is required") {
		t.Fatalf("helm template without secrets.redactionKey: %v, want it refused naming the value", err)
	}
}

// TestSchemasCatchMistakes: the generated schemas have teeth — kubeconform
// with them refuses a misspelt field, a wrong type and a kind it has no
// schema for, and accepts the same manifest without the mistake.
func TestSchemasCatchMistakes(t *testing.T) {
	schemas := schemaDir(t)
	const good = `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers:
        - name: x
          image: x
          ports: [{name: http, containerPort: 8080}]
          resources: {requests: {cpu: 250m, memory: 1Gi}}
          livenessProbe: {httpGet: {path: /healthz, port: http}}
`
	tests := []struct {
		name, manifest string
		wantValid      bool
	}{
		{"good", good, true},
		{"misspelt field", strings.Replace(good, "replicas: 2", "replica: 2", 1), false},
		{"wrong type", strings.Replace(good, "containerPort: 8080", "containerPort: http", 1), false},
		{"bad quantity", strings.Replace(good, "memory: 1Gi", "memory: lots", 1), false},
		{"unknown field in a nested object", strings.Replace(good, "path: /healthz", "path: /healthz, verb: GET", 1), false},
		{"no schema for the kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kubeconform(t, schemas, []byte(tt.manifest))
			if (err == nil) != tt.wantValid {
				t.Errorf("kubeconform(%s) error = %v, want valid %v", tt.name, err, tt.wantValid)
			}
		})
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// TestChartRefusesBadValues: values.schema.json makes a misspelt or
// mistyped value an error instead of a silently ignored key.
func TestChartRefusesBadValues(t *testing.T) {
	helm := tool(t, "helm")
	base := filepath.Join(chartDir, "ci", "default-values.yaml")
	tests := []struct {
		name, set, wantErr string
	}{
		{"valid", "replicaCount=3", ""},
		{"misspelt top-level key", "replicas=3", "additional properties 'replicas' not allowed"},
		{"misspelt nested key", "autoscaling.enable=false", "additional properties 'enable' not allowed"},
		{"unknown image variant", "image.variant=nodejs", "value must be one of"},
		{"port out of range", "service.port=70000", "maximum"},
		{"token hash not a sha256", "auth.tokens[0].name=a,auth.tokens[0].principal=a,auth.tokens[0].tools={*},auth.tokens[0].sha256=secret", "does not match pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, nil, helm, "template", "ci", chartDir, "-f", base, "--set", tt.set)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("--set %s: %v", tt.set, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("--set %s: error %v, want one containing %q", tt.set, err, tt.wantErr)
			}
		})
	}
}
