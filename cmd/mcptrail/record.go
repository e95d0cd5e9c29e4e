package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/chlocal"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// deferRedactionBytes: calls whose payloads total at most this are redacted
// by the recorder's spooler goroutine instead of on the gateway's hot path.
// Larger ones are redacted (and capped) at once, which bounds the memory the
// recorder's queue can hold.
const deferRedactionBytes = 8 << 10

// recording is the recorder side of serve: redactor, pipeline, store and
// (when no address is configured) the local ClickHouse it supervises. The
// store connects lazily: a ClickHouse that is down at start (or later)
// never stops the gateway; events wait in the spool.
type recording struct {
	redactor *redact.Redactor
	pipeline *recorder.Pipeline
	store    *clickhouse.Lazy
	local    *chlocal.Server
	logger   *slog.Logger

	readyWhenDegraded bool

	retentionCtx  context.Context
	stopRetention context.CancelFunc
	retentionDone chan struct{}
}

// Record implements proxy.Recorder.
func (r *recording) Record(ev *recorder.Event) error { return r.pipeline.Record(ev) }

// Stats implements proxy.RecorderStats for /metrics.
func (r *recording) Stats() recorder.Stats { return r.pipeline.Stats() }

var _ proxy.StatusProvider = (*recording)(nil)

// RecorderStatus implements proxy.StatusProvider for /statusz, /readyz and
// mcptrail status.
func (r *recording) RecorderStatus() recorder.Status {
	now := time.Now()
	st := recorder.Status{ReadyWhenDegraded: r.readyWhenDegraded, Pipeline: r.pipeline.Stats()}
	problems := st.Pipeline.Problems(now)
	st.Storage.Addr = strings.Join(r.store.Addr(), ",")
	connected, err := r.store.Connected()
	st.Storage.Connected = connected
	if err != nil {
		st.Storage.LastError = err.Error()
	}
	if r.local != nil {
		ls := r.local.State()
		st.Storage.Local = &recorder.LocalStatus{
			Dir: r.local.Dir(), Running: ls.Running, PID: ls.PID, Restarts: ls.Restarts,
			LastExit: ls.LastExit, LastExitAt: ls.LastExitAt, NextRestart: ls.NextRestart,
		}
		if !ls.Running {
			problems = append(problems, "local ClickHouse is down ("+ls.LastExit+"); the supervisor restarts it")
		}
	}
	if !connected {
		problems = append(problems, "ClickHouse not connected yet: "+st.Storage.LastError)
	}
	st.Problems, st.Healthy = problems, len(problems) == 0
	return st
}

// newRedactor builds the redactor from config; the HMAC key comes from the
// environment variable the config names. Without the key, placeholders use
// a random per-process key; warn says that this matters (recording is on).
func newRedactor(cfg *config.Config, logger *slog.Logger, warn bool) (*redact.Redactor, error) {
	rc := cfg.Recorder.Redaction
	custom := make([]redact.Pattern, 0, len(rc.Custom))
	for _, c := range rc.Custom {
		custom = append(custom, redact.Pattern{Name: c.Name, Regexp: c.Regexp})
	}
	// Configured keys add to the built-in ones: listing api_key must not
	// stop password from being redacted.
	var keys []string
	if len(rc.Keys) > 0 {
		keys = append(slices.Clone(redact.DefaultKeys), rc.Keys...)
	}
	key := []byte(os.Getenv(rc.HMACKeyEnv))
	if len(key) == 0 && warn {
		logger.Warn("redaction key not set: redacted values use a random per-process key and are comparable only within this run; set " + rc.HMACKeyEnv)
	}
	return redact.New(redact.Config{Keys: keys, Patterns: rc.Patterns, Custom: custom, MaxPayloadBytes: cfg.Recorder.Payloads.MaxBytes}, key)
}

// clickhouseConfig maps the gateway config onto the store's.
func clickhouseConfig(cfg *config.Config, addr string) clickhouse.Config {
	ch := cfg.Recorder.ClickHouse
	c := clickhouse.Config{
		Addr: ch.Addr, Database: ch.Database, Username: ch.Username, Password: ch.Password, Cluster: ch.Cluster,
		Retention: clickhouse.Retention{Hops: cfg.Recorder.Retention.Hops, Payloads: cfg.Recorder.Retention.Payloads, Audit: cfg.Recorder.Retention.Audit},
	}
	if addr != "" {
		c.Addr = []string{addr}
	}
	return c
}

// startRecording starts what recording needs, in order: local ClickHouse,
// store (+migrations), spool pipeline. With recording off it returns an
// empty recording whose stop is a no-op.
func startRecording(ctx context.Context, cfg *config.Config, h slog.Handler, redactor *redact.Redactor) (*recording, error) {
	r := &recording{logger: slog.New(h).With("component", "recorder")}
	if !cfg.Recorder.IsEnabled() {
		return r, nil
	}
	r.redactor = redactor
	var err error
	ok := false
	defer func() {
		if !ok {
			r.stop()
		}
	}()
	chCfg := clickhouseConfig(cfg, "")
	if cfg.Recorder.ClickHouse.Local() {
		dir, _ := filepath.Abs(cfg.Recorder.ClickHouse.LocalDir)
		r.logger.Info("starting local ClickHouse", "dir", dir)
		r.local, err = chlocal.Start(ctx, chlocal.Options{
			Dir: dir, Binary: cfg.Recorder.ClickHouse.LocalBinary, Logger: r.logger,
			RequirePassword: true, Supervise: true,
		})
		if err != nil {
			if errors.Is(err, chlocal.ErrNoBinary) {
				return nil, fmt.Errorf("recorder.clickhouse.addr is empty, so mcptrail runs a local ClickHouse, but: %w (or run with --no-record)", err)
			}
			return nil, fmt.Errorf("starting local ClickHouse: %w", err)
		}
		chCfg = clickhouseConfig(cfg, r.local.Addr())
		chCfg.Username, chCfg.Password = "default", r.local.Password()
		r.logger.Info("local ClickHouse ready", "addr", r.local.Addr(), "password_file", filepath.Join(dir, "password"))
	}
	r.store, err = clickhouse.NewLazy(chCfg, cfg.Recorder.ClickHouse.ShouldMigrate(), r.logger)
	if err != nil {
		return nil, err
	}
	// Connect now when possible, but never fail for it: with ClickHouse
	// down the gateway serves, events wait in the spool and the writer
	// connects (and migrates) once ClickHouse is back.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := r.store.Store(cctx); err != nil {
		r.logger.Warn("ClickHouse is unreachable at start; serving anyway, events wait in the spool until it is back",
			"addr", strings.Join(chCfg.Addr, ","), "err", err)
	}
	cancel()
	sp := cfg.Recorder.Spool
	r.pipeline, err = recorder.NewPipeline(recorder.Config{
		Dir: sp.Dir, QueueSize: cfg.Recorder.QueueSize, QueueBytes: cfg.Recorder.QueueBytes, SegmentBytes: sp.SegmentBytes, SegmentAge: cfg.Recorder.FlushInterval,
		Fsync: sp.Fsync, FsyncInterval: sp.FsyncInterval, MaxDiskBytes: sp.MaxBytes, Overflow: cfg.Recorder.Overflow,
		BatchSize: cfg.Recorder.BatchSize,
		Prepare:   proxy.NewEventRedactor(r.redactor).Prepare,
	}, r.store, r.logger)
	if err != nil {
		return nil, fmt.Errorf("configuring the recorder: %w", err)
	}
	r.readyWhenDegraded = cfg.Recorder.IsReadyWhenDegraded()
	st := r.pipeline.Stats()
	r.logger.Info("recorder spool", "dir", sp.Dir, "max_bytes", st.MaxDiskBytes, "overflow", st.Overflow,
		"ready_when_degraded", r.readyWhenDegraded)
	if err := r.pipeline.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the recorder: %w", err)
	}
	r.retentionCtx, r.stopRetention = context.WithCancel(context.WithoutCancel(ctx))
	r.retentionDone = make(chan struct{})
	go r.enforceRetention(time.Hour)
	ok = true
	return r, nil
}

// enforceRetention drops partitions past their retention, at start and then
// every interval. On servers with TTL it usually finds nothing; on 18.16 it
// is the only retention there is.
func (r *recording) enforceRetention(every time.Duration) {
	defer close(r.retentionDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := 0, error(nil)
		if st, serr := r.store.Store(r.retentionCtx); serr == nil {
			n, err = st.DropExpiredPartitions(r.retentionCtx)
		}
		switch {
		case err != nil && r.retentionCtx.Err() == nil:
			r.logger.Warn("enforcing retention failed", "err", err)
		case n > 0:
			r.logger.Info("dropped expired partitions", "partitions", n)
		}
		select {
		case <-r.retentionCtx.Done():
			return
		case <-t.C:
		}
	}
}

// stop drains the pipeline (what cannot be written stays in the spool for
// the next start), then closes the store and the local ClickHouse.
func (r *recording) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if r.pipeline != nil {
		if err := r.pipeline.Shutdown(ctx); err != nil {
			r.logger.Warn("recorder shutdown", "err", err)
		}
		st := r.pipeline.Stats()
		r.logger.Info("recorder stopped", "enqueued", st.Enqueued, "written", st.Written, "dropped", st.Dropped, "spool_bytes", st.SpoolBytes)
	}
	if r.stopRetention != nil {
		r.stopRetention()
		<-r.retentionDone
	}
	if r.store != nil {
		_ = r.store.Close()
	}
	if r.local != nil {
		_ = r.local.Stop(ctx)
	}
}

// noPayloads records metadata only: recorder.payloads.enabled: false.
type noPayloads struct{ r *redact.Redactor }

func (n noPayloads) Payload([]byte) ([]byte, int, bool, string) { return nil, 0, false, "" }
func (n noPayloads) String(s string) (string, int)              { return n.r.String(s) }
func (n noPayloads) Version() string                            { return n.r.Version() }
