package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/proxy/toolpin"
	"github.com/mcptrail/mcptrail/recorder"
)

// newToolsCmd groups the commands of tool pinning: approve and drift.
func newToolsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tools",
		Short: "Tool pinning: approve a changed tool definition, list what changed",
		Long: `Every tool's description, schemas, annotations and title are pinned the first time a
gateway sees them (pinning in the config). A later change is recorded and, per
pinning.on_change, warned about, hidden until approved, or refused for the whole server.`,
	}
	cmd.AddCommand(newToolsApproveCmd(), newToolsDriftCmd())
	return cmd
}

func newToolsApproveCmd() *cobra.Command {
	var (
		sf       storeFlags
		hash, by string
	)
	cmd := &cobra.Command{
		Use:   "approve <server><separator><tool>",
		Short: "Pin a tool's new definition (default: its newest change), so that gateways serve it again",
		Long: `The tool is named as clients see it: the server's name as in the config, the
config's namespace_separator (default "."), and the tool's own name (crm.search, or
crm__search with namespace_separator "__"), as the refusal and tools drift print it.`,
		Example: `  mcptrail tools approve crm.search
  mcptrail tools approve crm.search --hash 5e6f0a1b2c3d`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sep := sf.separator()
			server, tool, ok := strings.Cut(args[0], sep)
			if !ok || server == "" || tool == "" {
				return fmt.Errorf("%q: want <server>%s<tool>, the server's name as in the config and the tool's own name (crm%ssearch; namespace_separator of --config)", args[0], sep, sep)
			}
			ctx := cmd.Context()
			st, t, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			hist, err := st.PinHistory(ctx, time.Time{}, server)
			if err != nil {
				return explainQueryErr(err, t)
			}
			ev, err := approval(hist, server, tool, sep, hash, cmp.Or(by, approver()))
			if err != nil {
				return err
			}
			if ev == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s%s is already pinned at that version; nothing to approve\n", server, sep, tool)
				return nil
			}
			if err := st.AppendPins(ctx, []recorder.PinEvent{*ev}); err != nil {
				return explainQueryErr(err, t)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s%s%s sha256 %s (was %s) by %s at %s\n"+
				"running gateways serve it within pinning.poll_interval (default 10s)\n",
				server, sep, tool, ev.Hash, ev.PrevHash, ev.Actor, time.Unix(0, ev.TimeNs).UTC().Format(time.RFC3339))
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&hash, "hash", "", "the sha256 (or a unique prefix of at least 8 hex digits) of the version to pin, as `tools drift` and the refusal show it (default: the newest change)")
	cmd.Flags().StringVar(&by, "by", "", "who approves, recorded with the approval (default: user@host)")
	return cmd
}

// approval is the approved event for server.tool: the version named by hash
// (a prefix will do), or the newest change. It returns nil when that
// version is the pin already. sep is the namespace separator, for messages.
func approval(hist []recorder.PinEvent, server, tool, sep, hash, actor string) (*recorder.PinEvent, error) {
	var pin, newest *recorder.PinEvent
	byHash := map[string]*recorder.PinEvent{}
	for i := range hist {
		e := &hist[i]
		if e.Tool != tool {
			continue
		}
		switch e.Kind {
		case recorder.PinPinned, recorder.PinApproved:
			pin = e
		case recorder.PinChanged:
			newest = e
		}
		byHash[e.Hash] = e
	}
	name := server + sep + tool
	if pin == nil && newest == nil {
		return nil, fmt.Errorf("no gateway recording to this ClickHouse has seen tool %s (check the name: <server>%s<tool> with the tool's own name; `mcptrail tools drift` lists the changes)", name, sep)
	}
	var target *recorder.PinEvent
	switch {
	case hash != "":
		h := strings.ToLower(hash)
		if len(h) < 8 {
			return nil, fmt.Errorf("--hash %q: give at least 8 hex digits", hash)
		}
		for full, e := range byHash {
			if strings.HasPrefix(full, h) {
				if target != nil && target.Hash != full {
					return nil, fmt.Errorf("--hash %q matches more than one version of %s; give more digits", hash, name)
				}
				target = e
			}
		}
		if target == nil {
			return nil, fmt.Errorf("--hash %q: no version of %s with that sha256 was seen", hash, name)
		}
	case newest == nil || pin != nil && pin.TimeNs > newest.TimeNs && pin.Hash == newest.Hash:
		return nil, fmt.Errorf("%s has no unapproved change: it is pinned at sha256 %s", name, pin.Hash)
	default:
		target = newest
	}
	prev := ""
	if pin != nil {
		if pin.Hash == target.Hash {
			return nil, nil
		}
		prev = pin.Hash
	}
	return &recorder.PinEvent{TimeNs: time.Now().UnixNano(), Server: server, Tool: tool, Kind: recorder.PinApproved,
		Hash: target.Hash, PrevHash: prev, Definition: target.Definition, Actor: actor}, nil
}

// approver is user@host of whoever runs the command.
func approver() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return cmp.Or(name, "unknown") + "@" + cmp.Or(host, "unknown")
}

func newToolsDriftCmd() *cobra.Command {
	var (
		sf                    storeFlags
		since, server, format string
	)
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "List the tools whose definition changed since they were pinned, with a diff",
		Example: `  mcptrail tools drift --since 30d
  mcptrail tools drift --server crm --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseWhen("since", since, time.Now())
			if err != nil {
				return err
			}
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			ctx := cmd.Context()
			st, t, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			hist, err := st.PinHistory(ctx, from, server)
			if err != nil {
				return explainQueryErr(err, t)
			}
			drifts := driftOf(hist)
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(drifts)
			}
			return renderDrift(cmd.OutOrStdout(), drifts, sf.separator())
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&since, "since", "30d", "start of the window: a duration back from now (30d) or a time (2026-11-01)")
	cmd.Flags().StringVar(&server, "server", "", "only this server's tools")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

// drift is one change of a tool and what became of it.
type drift struct {
	Time    time.Time `json:"time"`
	Server  string    `json:"server"`
	Tool    string    `json:"tool"`
	OldHash string    `json:"old_sha256"`
	NewHash string    `json:"new_sha256"`
	// Action is what the gateway did: warn, hide or deny.
	Action string `json:"action"`
	// Status is pending (not approved), approved, or superseded (a later
	// change or approval replaced it).
	Status     string           `json:"status"`
	ApprovedBy string           `json:"approved_by,omitempty"`
	ApprovedAt *time.Time       `json:"approved_at,omitempty"`
	Changes    []toolpin.Change `json:"changes"`
}

// driftOf lists the changed rows of hist (ordered per tool by time) with
// their fate.
func driftOf(hist []recorder.PinEvent) []drift {
	out := []drift{}
	for i, e := range hist {
		if e.Kind != recorder.PinChanged {
			continue
		}
		d := drift{Time: time.Unix(0, e.TimeNs).UTC(), Server: e.Server, Tool: e.Tool, OldHash: e.PrevHash, NewHash: e.Hash,
			Action: e.Action, Status: "pending"}
		_ = json.Unmarshal([]byte(e.Diff), &d.Changes)
		for _, l := range hist[i+1:] {
			if l.Server != e.Server || l.Tool != e.Tool {
				continue
			}
			if l.Kind == recorder.PinApproved && l.Hash == e.Hash {
				at := time.Unix(0, l.TimeNs).UTC()
				d.Status, d.ApprovedBy, d.ApprovedAt = "approved", l.Actor, &at
				break
			}
			if l.Kind == recorder.PinApproved || l.Kind == recorder.PinChanged && l.Hash != e.Hash {
				d.Status = "superseded"
			}
		}
		out = append(out, d)
	}
	return out
}

// renderDrift writes ds as a table; sep is the namespace separator, which
// joins the names as clients see them (and as tools approve takes them).
func renderDrift(w io.Writer, ds []drift, sep string) error {
	ew := &errWriter{w: w}
	if len(ds) == 0 {
		ew.printf("no tool changed in this window\n")
		return ew.err
	}
	for i, d := range ds {
		if i > 0 {
			ew.printf("\n")
		}
		status := d.Status
		if d.ApprovedAt != nil {
			status += " by " + d.ApprovedBy + " at " + d.ApprovedAt.Format(time.RFC3339)
		}
		ew.printf("%s  %s%s%s  %s  sha256 %s → %s  %s\n", d.Time.Format(time.RFC3339), d.Server, sep, d.Tool, d.Action,
			toolpin.Short(d.OldHash), toolpin.Short(d.NewHash), status)
		for _, c := range d.Changes {
			ew.printf("    %s\n", c)
		}
		if d.Status == "pending" {
			ew.printf("    approve: mcptrail tools approve %s%s%s --hash %s\n", d.Server, sep, d.Tool, d.NewHash)
		}
	}
	return ew.err
}
