package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/bench"
	"github.com/mcptrail/mcptrail/proxy/bridge"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// newStdioCmd is the stdio↔streamable-HTTP bridge for clients that can only
// launch a command. stdout carries JSON-RPC only; logs go to stderr.
func newStdioCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stdio --url URL [--header K:V]... [--token T]",
		Short: "Bridge a stdio-only MCP client to a gateway over streamable HTTP",
		Long: `stdio lets clients whose config only takes a command reach a shared gateway:

  {"command": "mcptrail", "args": ["stdio", "--url", "http://gateway:8080/mcp"]}

The token defaults to $MCPTRAIL_TOKEN.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := bridge.ParseArgs(args, os.Stderr)
			if err != nil {
				return flagError(err)
			}
			// The bridge has no config: the default rules, a per-process key.
			red, err := redact.New(redact.Config{}, nil)
			if err != nil {
				return err
			}
			logger := slog.New(red.Handler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
			return bridge.Run(cmd.Context(), cfg, os.Stdin, os.Stdout, logger)
		},
	}
}

// newBenchCmd measures calls/s and latency of tools/call, direct and through
// a gateway, in one run.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bench --url [name=]URL [--url ...] [-c 1,8,64] [-d 15s] [--tool echo] | bench --compare [--rounds 3] [-d 5s] [-c 1,64]",
		Short: "Load-test MCP endpoints with tools/call (calls/s, p50/p90/p99/max)",
		Example: `  mcptrail bench --url direct=http://127.0.0.1:9001/mcp --url gateway=http://127.0.0.1:8080/mcp --tool echo -c 1,64 -d 15s
  (with a gateway, name the tool with its namespace in a second run: --tool ns.echo)
  mcptrail bench --compare --rounds 3 -d 5s -c 1,64
  (starts the echo backend, a gateway recording off, a gateway recording on and a
  local ClickHouse, runs interleaved rounds and prints calls/s, added p50, gateway
  CPU per call, ClickHouse CPU per call and gateway peak RSS)`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && (args[0] == "--compare" || args[0] == "-compare") {
				cfg, err := bench.ParseCompareArgs(args[1:], os.Stderr)
				if err != nil {
					return flagError(err)
				}
				if cfg.Exe, err = os.Executable(); err != nil {
					return fmt.Errorf("bench --compare: finding the mcptrail binary: %w", err)
				}
				_, err = bench.RunCompare(cmd.Context(), cfg, cmd.OutOrStdout())
				return err
			}
			cfg, err := bench.ParseArgs(args, os.Stderr)
			if err != nil {
				return flagError(err)
			}
			_, err = bench.Run(cmd.Context(), cfg, cmd.OutOrStdout())
			return err
		},
	}
}

// flagError maps a flag-parsing error to exit code 2; -h/--help (the usage
// was printed) is not an error.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return &exitError{code: 2, err: err}
}
