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

// Asking the flag-parsing subcommands for help is not an error (exit 0, no
// "mcptrail: flag: help requested"); a bad flag still is (exit 2).
func TestHelpIsNotAnError(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"bench", "-h"}, false},
		{[]string{"bench", "--help"}, false},
		{[]string{"stdio", "-h"}, false},
		{[]string{"bench", "--no-such-flag"}, true},
		{[]string{"stdio", "--no-such-flag"}, true},
	} {
		root := newRootCmd()
		root.SetArgs(tt.args)
		err := root.Execute()
		if (err != nil) != tt.wantErr {
			t.Errorf("mcptrail %v: err = %v, want error %v", tt.args, err, tt.wantErr)
		}
		var ee *exitError
		if tt.wantErr && (!errors.As(err, &ee) || ee.code != 2) {
			t.Errorf("mcptrail %v: err = %v, want exit code 2", tt.args, err)
		}
	}
}
