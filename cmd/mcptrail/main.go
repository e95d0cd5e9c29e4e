// Command mcptrail is the audit and replay proxy for MCP. main only wires:
// each subcommand loads its config, builds its components and runs them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a specific exit code (for example: a replay that found
// regressions exits 1 without being a failure of the tool).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil {
				fmt.Fprintln(os.Stderr, "mcptrail:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "mcptrail:", err)
		os.Exit(2)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mcptrail",
		Short:         "Audit and replay proxy for MCP",
		Long:          "mcptrail is a routing gateway between MCP clients and many MCP servers that records every hop of every call to ClickHouse and replays recorded traffic hop by hop.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newStdioCmd(),
		newTokenCmd(),
		newSessionKeyCmd(),
		newBenchCmd(),
		newTestBackendCmd(),
		newDashboardsCmd(),
		newConsoleCmd(),
		newToolsCmd(),
	)
	addRecorderCommands(root)
	addReplayCommands(root)
	return root
}
