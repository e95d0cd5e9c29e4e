package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/internal/recordtest"
	"github.com/mcptrail/mcptrail/replay/match"
	"github.com/mcptrail/mcptrail/replay/mockserver"
	"github.com/mcptrail/mcptrail/replay/report"
	"github.com/mcptrail/mcptrail/replay/runner"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/mark3labs/mcp-go/client/transport.(*Stdio).readResponses"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/mark3labs/mcp-go/server.(*StreamableHTTPServer).startListeningPump.func1"),
	)
}

var (
	startBackend      = recordtest.StartBackend
	recordingGateway  = recordtest.RecordingGateway
	newPeer           = recordtest.NewPeer
	recordTestbackend = recordtest.RecordTestbackend
)

const (
	secretToken   = recordtest.SecretToken
	secretMessage = recordtest.SecretMessage
)

// mockGateway serves the recording through the mock and a gateway built from
// cfg (nil: the recorded servers), as `mcptrail replay mock` does.
func mockGateway(t testing.TB, events []recorder.Event, cfg *config.Config, extraTools map[string]json.RawMessage) (*runner.Gateway, *match.Store) {
	t.Helper()
	store, err := replay.NewMockStore(events, match.Config{}, ".", extraTools)
	if err != nil {
		t.Fatal(err)
	}
	mock, err := runner.StartMock(store, mockserver.Config{}, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	gw, err := runner.StartGateway(context.Background(), runner.WithTimeouts(runner.MockConfig(cfg, replay.CatalogOrder(events, ".", store.Servers()), mock.URL), runner.RecordedTimeouts(events)), 20*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	return gw, store
}

// summary renders cases as "tool status [paths]" lines for failure messages
// and exact assertions.
func summary(cs []report.Case) string {
	var sb strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&sb, "%s %s", c.Tool(), c.Status)
		for _, ch := range c.Diff.Changes {
			fmt.Fprintf(&sb, " %s%s", ch.Kind, ch.Path)
		}
		if c.Reason != "" {
			fmt.Fprintf(&sb, " (%s)", c.Reason)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

// byStatus counts cases per status.
func byStatus(cs []report.Case) map[report.Status]int {
	m := map[report.Status]int{}
	for _, c := range cs {
		m[c.Status]++
	}
	return m
}

func find(t testing.TB, cs []report.Case, tool string, nth int) report.Case {
	t.Helper()
	n := 0
	for _, c := range cs {
		if c.Tool() == tool {
			if n == nth {
				return c
			}
			n++
		}
	}
	t.Fatalf("no case %d for %s in\n%s", nth, tool, summary(cs))
	return report.Case{}
}
