package runner

import (
	"context"
	"fmt"
	"sync"

	"github.com/mcptrail/mcptrail/replay"
	"github.com/mcptrail/mcptrail/replay/report"
)

// RunOptions add whole-run behaviour to Options.
type RunOptions struct {
	Options
	// BaselineTwice replays everything twice; paths whose changes differ
	// between the two passes are non-deterministic output (noise) and are
	// removed from the report instead of counting as regressions. The
	// second pass sends each request at least 1.1 s after the first pass
	// did, so that a clock with second resolution reads differently.
	BaselineTwice bool
	// BeforePass is called before each pass (for example to rewind the mock
	// store); may be nil.
	BeforePass func(pass int)
	// TopN bounds the report's top differences. Default 10.
	TopN int
}

// Run replays reqs (twice with BaselineTwice) and builds the report.
func Run(ctx context.Context, reqs []replay.Request, o RunOptions) (*report.Report, error) {
	passes := 1
	if o.BaselineTwice {
		passes = 2
	}
	var runs [][]report.Case
	var sent *sync.Map
	o.against = &against{}
	for pass := range passes {
		if o.BeforePass != nil {
			o.BeforePass(pass)
		}
		po := o.Options
		po.notBefore, po.sent = sent, &sync.Map{}
		sent = po.sent
		cs, err := Replay(ctx, reqs, po)
		if err != nil {
			return nil, fmt.Errorf("replay pass %d of %d: %w", pass+1, passes, err)
		}
		runs = append(runs, cs)
	}
	cases := runs[0]
	if o.BaselineTwice {
		cases = report.Noise(runs[0], runs[1]).Apply(cases)
	}
	rep := report.Build(string(o.Mode), cases, o.TopN)
	rep.Against = o.against.list()
	return rep, nil
}
