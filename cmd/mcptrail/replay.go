package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/recorder/chlocal"
	"github.com/mcptrail/mcptrail/replay/cli"
)

// addReplayCommands registers `replay mock|upstream|e2e`, `export` and
// `mock`. A replay that found regressions exits 1; other failures exit 2.
func addReplayCommands(root *cobra.Command) {
	env := cli.DefaultEnv(version)
	env.LocalAddr = localAddr
	env.LocalPassword = chlocal.ReadPassword
	for _, c := range cli.Commands(env) {
		wrapExit(c)
		root.AddCommand(c)
	}
}

// wrapExit maps *cli.RegressionError (and a what-if's
// *cli.PolicyChangedError) to exit code 1 on c and its children.
func wrapExit(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error { return replayExit(run(cmd, args)) }
	}
	for _, sub := range c.Commands() {
		wrapExit(sub)
	}
}

func replayExit(err error) error {
	var (
		re *cli.RegressionError
		pc *cli.PolicyChangedError
	)
	if errors.As(err, &re) || errors.As(err, &pc) {
		return &exitError{code: 1, err: err}
	}
	return err
}
