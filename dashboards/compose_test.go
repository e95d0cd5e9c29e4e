package dashboards

import (
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mcptrail/mcptrail/proxy/config"
)

// Docker is not available on the machines that run the tests, so the
// compose file is checked statically: it parses, every file it mounts or
// builds from exists, the pieces point at each other (Grafana's data source
// uid is the dashboards' default, the dashboards mount is the provider's
// path, the gateway config records to the compose ClickHouse and passes
// mcptrail's own config validation).

const repoRoot = ".."

type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Command     []string                  `yaml:"command"`
		Environment map[string]string         `yaml:"environment"`
		Volumes     []string                  `yaml:"volumes"`
		Ports       []string                  `yaml:"ports"`
		DependsOn   map[string]map[string]any `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

var composeVarRe = regexp.MustCompile(`\$\{(\w+)(?::-([^}]*))?\}`)

// composeDefault resolves compose interpolation as with an empty .env.
func composeDefault(s string) string {
	return composeVarRe.ReplaceAllString(s, "$2")
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatalf("reading docker-compose.yml: %v", err)
	}
	var c composeFile
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &top); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for k := range top {
		if k != "name" && k != "services" && k != "volumes" {
			t.Errorf("docker-compose.yml: unexpected top-level key %q", k)
		}
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// mounts maps container path to host path (relative to the repo root) of
// bind mounts, and lists named volumes.
func mounts(vols []string) (binds map[string]string, named []string) {
	binds = map[string]string{}
	for _, v := range vols {
		parts := strings.Split(v, ":")
		if strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/") {
			binds[parts[1]] = parts[0]
		} else {
			named = append(named, parts[0])
		}
	}
	return binds, named
}

func TestDockerCompose(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"clickhouse", "mcptrail", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml: no service %q", name)
		}
	}
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == nil) {
			t.Errorf("service %s: want exactly one of image and build", name)
		}
		binds, named := mounts(s.Volumes)
		for dst, src := range binds {
			if !strings.HasPrefix(dst, "/") {
				t.Errorf("service %s: mount target %q is not absolute", name, dst)
			}
			if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
				t.Errorf("service %s: mounted %s does not exist: %v", name, src, err)
			}
		}
		for _, v := range named {
			if _, ok := c.Volumes[v]; !ok {
				t.Errorf("service %s: volume %q is not declared under volumes", name, v)
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			} else if s.DependsOn[dep]["condition"] == "service_healthy" && c.Services[dep].Healthcheck == nil {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q beyond loopback", name, p)
			}
		}
		if b := s.Build; b != nil {
			df := filepath.Join(repoRoot, b.Context, b.Dockerfile)
			raw, err := os.ReadFile(df)
			if err != nil {
				t.Errorf("service %s: Dockerfile: %v", name, err)
				continue
			}
			if !strings.Contains(string(raw), "./cmd/mcptrail") {
				t.Errorf("%s does not build ./cmd/mcptrail", df)
			}
			if _, err := os.Stat(df + ".dockerignore"); err != nil {
				t.Errorf("%s has no .dockerignore (the context would include node_modules): %v", df, err)
			}
		}
	}

	ch := c.Services["clickhouse"]
	if !strings.HasPrefix(ch.Image, "clickhouse/clickhouse-server:25.") {
		t.Errorf("clickhouse image = %q, want clickhouse/clickhouse-server:25.x", ch.Image)
	}

	t.Run("grafana", func(t *testing.T) {
		g := c.Services["grafana"]
		if !strings.Contains(g.Environment["GF_INSTALL_PLUGINS"], PluginID) {
			t.Errorf("GF_INSTALL_PLUGINS = %q, want it to install %s", g.Environment["GF_INSTALL_PLUGINS"], PluginID)
		}
		binds, _ := mounts(g.Volumes)
		hostFor := func(dst string) string {
			src, ok := binds[dst]
			if !ok {
				t.Fatalf("grafana: nothing mounted at %s", dst)
			}
			return filepath.Join(repoRoot, src)
		}

		var ds struct {
			Datasources []struct {
				UID, Type string
				JSONData  map[string]any `yaml:"jsonData"`
			} `yaml:"datasources"`
		}
		readYAML(t, filepath.Join(hostFor("/etc/grafana/provisioning/datasources"), "clickhouse.yaml"), &ds)
		if len(ds.Datasources) != 1 {
			t.Fatalf("datasource provisioning: %d data sources, want 1", len(ds.Datasources))
		}
		d := ds.Datasources[0]
		if d.UID != DefaultDatasourceUID || d.Type != PluginID {
			t.Errorf("provisioned data source %s/%s, want %s/%s (what the dashboards query)", d.Type, d.UID, PluginID, DefaultDatasourceUID)
		}
		if d.JSONData["host"] != "clickhouse" || d.JSONData["port"] != 9000 || d.JSONData["protocol"] != "native" || d.JSONData["defaultDatabase"] != DefaultDatabase {
			t.Errorf("data source jsonData = %v, want host clickhouse, port 9000, native, database %s", d.JSONData, DefaultDatabase)
		}

		var prov struct {
			Providers []struct {
				Type    string
				Options struct{ Path string }
			} `yaml:"providers"`
		}
		readYAML(t, filepath.Join(hostFor("/etc/grafana/provisioning/dashboards"), "mcptrail.yaml"), &prov)
		if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
			t.Fatalf("dashboard providers = %+v, want one file provider", prov.Providers)
		}
		dir := hostFor(prov.Providers[0].Options.Path)
		if filepath.Clean(dir) != filepath.Join(repoRoot, "dashboards", goldenDir) {
			t.Errorf("dashboard provider path %s is mounted from %s, want dashboards/%s", prov.Providers[0].Options.Path, dir, goldenDir)
		}
		gen, err := Generate(Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gen {
			if _, err := os.Stat(filepath.Join(dir, g.Filename)); err != nil {
				t.Errorf("dashboard %s is not provisioned: %v", g.UID, err)
			}
		}
		home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
		if home != "" && path.Dir(home) != prov.Providers[0].Options.Path {
			t.Errorf("home dashboard %s is outside the provisioned directory %s", home, prov.Providers[0].Options.Path)
		}
	})

	t.Run("gateway", func(t *testing.T) {
		m := c.Services["mcptrail"]
		cfgPath := ""
		for i, a := range m.Command {
			if a == "--config" && i+1 < len(m.Command) {
				cfgPath = m.Command[i+1]
			}
		}
		binds, _ := mounts(m.Volumes)
		src, ok := binds[cfgPath]
		if cfgPath == "" || !ok {
			t.Fatalf("mcptrail: --config %q is not a mounted file (mounts %v)", cfgPath, binds)
		}
		raw, err := os.ReadFile(filepath.Join(repoRoot, src))
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for k, v := range m.Environment {
			env[k] = composeDefault(v)
		}
		cfg, err := config.ParseEnv(raw, src, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("the gateway config fails mcptrail's validation: %v", err)
		}
		chc := cfg.Recorder.ClickHouse
		if len(chc.Addr) != 1 {
			t.Fatalf("recorder.clickhouse.addr = %v, want the compose ClickHouse", chc.Addr)
		}
		host, port, err := net.SplitHostPort(chc.Addr[0])
		if err != nil || host != "clickhouse" || port != "9000" {
			t.Errorf("recorder.clickhouse.addr = %v, want clickhouse:9000", chc.Addr)
		}
		if chc.Database != DefaultDatabase || chc.Database != c.Services["clickhouse"].Environment["CLICKHOUSE_DB"] {
			t.Errorf("recorder.clickhouse.database = %q, want %q as in the dashboards and CLICKHOUSE_DB", chc.Database, DefaultDatabase)
		}
		chEnv := c.Services["clickhouse"].Environment
		if chc.Username != composeDefault(chEnv["CLICKHOUSE_USER"]) || chc.Password != composeDefault(chEnv["CLICKHOUSE_PASSWORD"]) {
			t.Errorf("gateway ClickHouse credentials %q/%q do not match the server's", chc.Username, chc.Password)
		}
		if !regexp.MustCompile(`(?m)^\s+password:\s*\$\{\w+\}\s*$`).Match(raw) {
			t.Errorf("%s: recorder.clickhouse.password is not taken from the environment (${NAME})", src)
		}
		_, portStr, _ := net.SplitHostPort(cfg.Listen)
		published := false
		for _, p := range m.Ports {
			if strings.HasSuffix(p, ":"+portStr) {
				published = true
			}
		}
		if !published {
			t.Errorf("listen %s is not published by the mcptrail service (ports %v)", cfg.Listen, m.Ports)
		}
	})
}

func readYAML(t *testing.T, file string, into any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
}
