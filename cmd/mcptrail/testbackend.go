package main

import (
	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/testbackend"
)

// newTestBackendCmd runs the small Go MCP server used by tests and demos
// (hidden: it is not part of the product surface).
func newTestBackendCmd() *cobra.Command {
	var (
		variant, httpAddr string
		mutable           bool
	)
	cmd := &cobra.Command{
		Use:    "testbackend",
		Short:  "Run the test MCP server (echo, add, now, fail, slow, write_note, big) over stdio or HTTP",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if httpAddr != "" {
				return testbackend.RunHTTP(cmd.Context(), variant, httpAddr, mutable)
			}
			return testbackend.RunStdio(cmd.Context(), variant, mutable)
		},
	}
	cmd.Flags().StringVar(&variant, "variant", "v1", "v1 (correct) or v2 (add returns a wrong sum)")
	cmd.Flags().StringVar(&httpAddr, "http", "", "serve streamable HTTP on this address instead of stdio")
	cmd.Flags().BoolVar(&mutable, "mutable", false, "add the tool mutate, which redefines another tool at runtime (a rug pull, for tool pinning's tests)")
	return cmd
}
