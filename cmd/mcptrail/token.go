package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/auth"
)

func newTokenCmd() *cobra.Command {
	tok := &cobra.Command{Use: "token", Short: "Manage bearer tokens"}
	tok.AddCommand(&cobra.Command{
		Use:   "hash [TOKEN]",
		Short: "Print the sha256 of a bearer token for auth.tokens[].sha256 (reads stdin when no argument)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t string
			if len(args) == 1 {
				t = args[0]
			} else {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("reading token from stdin: %w", err)
				}
				t = strings.TrimSpace(line)
			}
			if t == "" {
				return fmt.Errorf("empty token")
			}
			fmt.Fprintln(cmd.OutOrStdout(), auth.HashToken(t))
			return nil
		},
	})
	tok.AddCommand(&cobra.Command{
		Use:   "new",
		Short: "Generate a random token and print it with its sha256",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var b [32]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			t := "mct_" + base64.RawURLEncoding.EncodeToString(b[:])
			fmt.Fprintf(cmd.OutOrStdout(), "token:  %s\nsha256: %s\n", t, auth.HashToken(t))
			return nil
		},
	})
	return tok
}
