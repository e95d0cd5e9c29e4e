package dashboards

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// loadProject loads a compose file the way `docker compose` does
// (compose-spec/compose-go: the Compose JSON schema, interpolation,
// consistency of depends_on, volumes and profiles), with every profile on.
func loadProject(t *testing.T, file string) (*types.Project, error) {
	t.Helper()
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithProfiles([]string{"*"}),
		cli.WithEnv([]string{}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// TestComposeSpec: docker-compose.yml is a valid Compose project and its
// observability pieces point at each other: the gateways send OTLP to the
// collector, the collector sends traces to Jaeger, Prometheus scrapes the
// gateways' listen ports, Grafana has the Prometheus data source the
// metrics dashboard queries, and the Node gateway runs an npx server.
func TestComposeSpec(t *testing.T) {
	p, err := loadProject(t, filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("docker-compose.yml is not a valid Compose project: %v", err)
	}
	for _, name := range []string{"clickhouse", "mcptrail", "mcptrail-node", "grafana", "redis", "otel-collector", "jaeger", "prometheus"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if t.Failed() {
		return
	}
	if got := p.Services["mcptrail-node"].Profiles; len(got) != 1 || got[0] != "node" {
		t.Errorf("mcptrail-node profiles = %v, want [node] (built only on request)", got)
	}

	var collector struct {
		Receivers struct {
			OTLP struct {
				Protocols map[string]struct{ Endpoint string } `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
		Exporters map[string]struct{ Endpoint string } `yaml:"exporters"`
		Service   struct {
			Pipelines map[string]struct{ Receivers, Exporters []string } `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/compose/otel-collector.yaml"), &collector)
	httpRecv := collector.Receivers.OTLP.Protocols["http"].Endpoint
	_, recvPort, _ := net.SplitHostPort(httpRecv)
	traces := collector.Service.Pipelines["traces"]
	if len(traces.Exporters) != 1 || !strings.HasPrefix(collector.Exporters[traces.Exporters[0]].Endpoint, "jaeger:4317") {
		t.Errorf("collector traces pipeline exports to %v (%+v), want Jaeger's OTLP gRPC port jaeger:4317", traces.Exporters, collector.Exporters)
	}
	for _, gw := range []string{"mcptrail", "mcptrail-node"} {
		s := p.Services[gw]
		ep := s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
		if ep == nil || *ep != "http://otel-collector:"+recvPort {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %v, want http://otel-collector:%s (the collector's OTLP/HTTP receiver)", gw, ep, recvPort)
		}
		if r := s.Environment["MCPTRAIL_REDIS_ADDR"]; r == nil || *r != "redis:6379" {
			t.Errorf("%s: MCPTRAIL_REDIS_ADDR = %v, want redis:6379", gw, r)
		}
	}

	var prom struct {
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/compose/prometheus.yml"), &prom)
	scraped := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("scrape metrics_path = %q, want /metrics", sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				scraped[tg] = true
			}
		}
	}
	configs := map[string]string{"mcptrail": "deploy/compose/mcptrail.yaml", "mcptrail-node": "deploy/compose/mcptrail-node.yaml"}
	for gw, file := range configs {
		raw, err := os.ReadFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for k, v := range p.Services[gw].Environment {
			if v != nil {
				env[k] = *v
			}
		}
		cfg, err := config.ParseEnv(raw, file, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("%s fails mcptrail's validation: %v", file, err)
		}
		_, port, _ := net.SplitHostPort(cfg.Listen)
		if !scraped[gw+":"+port] {
			t.Errorf("Prometheus does not scrape %s:%s (targets %v)", gw, port, scraped)
		}
		if gw == "mcptrail-node" {
			checkNpxServers(t, file, cfg.Servers)
		}
	}
	df, err := os.ReadFile(filepath.Join(repoRoot, p.Services["mcptrail-node"].Build.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "\nFROM node:") {
		t.Errorf("%s: the Node variant is not based on a node image", p.Services["mcptrail-node"].Build.Dockerfile)
	}

	var ds struct {
		Datasources []struct{ UID, Type, URL string } `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(repoRoot, "deploy/grafana/provisioning/datasources/prometheus.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].UID != DefaultPrometheusUID || ds.Datasources[0].Type != PrometheusType ||
		ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("Prometheus data source = %+v, want uid %s type %s at http://prometheus:9090", ds.Datasources, DefaultPrometheusUID, PrometheusType)
	}
}

// TestComposeSpecRefusesMistakes: the loader used above has teeth: it loads
// a valid file and refuses the same with one mistake.
func TestComposeSpecRefusesMistakes(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    bool
	}{
		{"valid", "services:\n  a:\n    image: redis\n    depends_on: [b]\n  b:\n    image: redis\n", false},
		{"unknown key", "services:\n  a:\n    imagee: redis\n", true},
		{"unknown dependency", "services:\n  a:\n    image: redis\n    depends_on: [b]\n", true},
		{"undeclared volume", "services:\n  a:\n    image: redis\n    volumes: [\"data:/data\"]\n", true},
		{"port of the wrong type", "services:\n  a:\n    image: redis\n    ports: [{target: web}]\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "compose.yml")
			if err := os.WriteFile(f, []byte("name: x\n"+tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := loadProject(t, f); (err != nil) != tt.wantErr {
				t.Errorf("%s: load error = %v, want error %v", tt.name, err, tt.wantErr)
			}
		})
	}
}

// checkNpxServers: the config runs a server with npx, pinned to the version
// of the package the tests run (testdata/npm/package.json).
func checkNpxServers(t *testing.T, file string, servers []config.Server) {
	t.Helper()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "testdata/npm/package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatal(err)
	}
	npx := 0
	for _, s := range servers {
		if s.Command != "npx" {
			continue
		}
		npx++
		for _, a := range s.Args {
			if !strings.HasPrefix(a, "@") {
				continue
			}
			name, version, ok := strings.Cut(a[1:], "@")
			if !ok {
				t.Errorf("%s: server %s runs %s unpinned", file, s.Name, a)
			} else if want := pkg.Dependencies["@"+name]; version != want {
				t.Errorf("%s: server %s runs %s, want version %s (testdata/npm/package.json)", file, s.Name, a, want)
			}
		}
	}
	if npx == 0 {
		t.Errorf("%s runs no server with npx", file)
	}
}
