package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/sessionseal"
)

func newSessionKeyCmd() *cobra.Command {
	var id uint8
	cmd := &cobra.Command{
		Use:   "session-key",
		Short: "Print a new key line for sessions.keys_file (sealed sessions shared by replicas)",
		Long: "Prints \"<id> <base64 key>\". Put it first in the file every replica reads " +
			"(sessions.keys_file) to seal new sessions with it; keep older keys below it " +
			"until sessions.lifetime has passed so their sessions still open.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), sessionseal.NewKey(id))
			return nil
		},
	}
	cmd.Flags().Uint8Var(&id, "id", 1, "key id (0-255), different from the ids of the keys it rotates with")
	return cmd
}
