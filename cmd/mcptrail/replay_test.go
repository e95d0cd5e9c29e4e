package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/replay/cli"
)

func TestReplayExitCodes(t *testing.T) {
	for _, tt := range []struct {
		err      error
		wantCode int // 0: not an exitError
	}{
		{nil, 0},
		{&cli.RegressionError{Count: 2}, 1},
		{fmt.Errorf("wrapped: %w", &cli.RegressionError{Count: 1}), 1},
		{errors.New("cannot reach ClickHouse"), 0},
	} {
		got := replayExit(tt.err)
		var ee *exitError
		code := 0
		if errors.As(got, &ee) {
			code = ee.code
		}
		if code != tt.wantCode {
			t.Errorf("replayExit(%v) code = %d, want %d", tt.err, code, tt.wantCode)
		}
	}
}

func TestAddReplayCommands(t *testing.T) {
	root := &cobra.Command{Use: "mcptrail"}
	addReplayCommands(root)
	for _, path := range [][]string{{"replay", "mock"}, {"replay", "upstream"}, {"replay", "e2e"}, {"export"}, {"mock"}} {
		c, _, err := root.Find(path)
		if err != nil || c.Name() != path[len(path)-1] {
			t.Errorf("command %v not registered (%v)", path, err)
		}
	}
}
