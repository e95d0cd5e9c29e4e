package cli

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/diff"
)

// acceptList is what a run does not hold against the target: differences at
// paths (ignore rules) and whole requests (exclusions).
type acceptList struct {
	rules    []string // --ignore-path syntax
	excludes []string // tool globs or request ids
}

// readAccept reads an --accept file: one entry per line, '#' starts a
// comment. An entry is an ignore rule in --ignore-path syntax
// ("everything.get-sum:/content/0/text", "everything::/tools/*/annotations",
// "everything.echo:/**" for a whole answer), or "exclude GLOB|REQUEST-ID".
func readAccept(file string) (acceptList, error) {
	var a acceptList
	if file == "" {
		return a, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return a, fmt.Errorf("reading --accept: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "exclude "):
			a.excludes = append(a.excludes, strings.TrimSpace(strings.TrimPrefix(line, "exclude ")))
		default:
			if _, err := diff.ParseIgnoreRule(line); err != nil {
				return a, fmt.Errorf("%s:%d: %w", file, n, err)
			}
			a.rules = append(a.rules, line)
		}
	}
	if err := sc.Err(); err != nil {
		return a, fmt.Errorf("reading --accept %s: %w", file, err)
	}
	return a, nil
}

// exclude drops the requests named by request id or whose target (tool,
// prompt or resource as the client named it) matches a glob; it returns
// what is left and how many were dropped.
func exclude(reqs []replay.Request, patterns []string) ([]replay.Request, int, error) {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, 0, fmt.Errorf("--exclude %q: %w", p, err)
		}
	}
	if len(patterns) == 0 {
		return reqs, 0, nil
	}
	out := reqs[:0:0]
	for _, r := range reqs {
		drop := false
		for _, p := range patterns {
			if p == r.RequestID {
				drop = true
			} else if r.Target != "" {
				ok, _ := path.Match(p, r.Target)
				drop = drop || ok
			}
		}
		if !drop {
			out = append(out, r)
		}
	}
	return out, len(reqs) - len(out), nil
}
