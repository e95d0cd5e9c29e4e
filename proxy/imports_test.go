package proxy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportArrows pins the dependency direction cmd → replay, dashboards →
// proxy → recorder: nothing under proxy/ (tests included) depends on
// replay, dashboards or cmd, nor on a storage driver.
func TestImportArrows(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "github.com/mcptrail/mcptrail/proxy/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/mcptrail/mcptrail/replay",
		"github.com/mcptrail/mcptrail/dashboards",
		"github.com/mcptrail/mcptrail/cmd",
		"github.com/mcptrail/mcptrail/recorder/clickhouse",
		"github.com/ClickHouse/",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("proxy/... depends on %s; imports must point cmd → replay, dashboards → proxy → recorder", dep)
			}
		}
	}
}
