package recorder

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports pins the dependency arrow: the recorder and its redaction
// imports nothing else of mcptrail, and no storage driver.
func TestImports(t *testing.T) {
	for _, dir := range []string{".", "redact", "recordertest"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				ours := strings.HasPrefix(path, "github.com/mcptrail/mcptrail/")
				if (ours && path != "github.com/mcptrail/mcptrail/recorder") || strings.Contains(path, "clickhouse") {
					t.Errorf("%s imports %s; the recorder root must stay free of other mcptrail packages and drivers", f, path)
				}
			}
		}
	}
}
