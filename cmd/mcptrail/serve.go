package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/console"
	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/telemetry"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

func newServeCmd() *cobra.Command {
	var (
		cfgPath  string
		logLevel string
		listen   string
		admin    string
		noRecord bool
		debugAt  string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Example: `  mcptrail serve --config deploy/demo.yaml
  mcptrail serve --config mcptrail.yaml --listen :8080`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			// The command line's overrides, applied again to every
			// reloaded config.
			overrides := func(cfg *config.Config) {
				if listen != "" {
					cfg.Listen = listen
				}
				if admin != "" {
					cfg.Admin.Listen = admin
				}
				if noRecord {
					off := false
					cfg.Recorder.Enabled = &off
				}
			}
			overrides(cfg)
			if debugAt != "" {
				stop, err := serveDebug(debugAt)
				if err != nil {
					return err
				}
				defer stop()
			}
			return runServe(cmd.Context(), cfg, overrides, logLevel)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "mcptrail.yaml", "config file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug | info | warn | error")
	cmd.Flags().StringVar(&listen, "listen", "", "override the config's listen address")
	cmd.Flags().StringVar(&admin, "admin-listen", "", "override the config's admin.listen address (/statusz, /metrics)")
	cmd.Flags().BoolVar(&noRecord, "no-record", false, "do not record (no ClickHouse)")
	cmd.Flags().StringVar(&debugAt, "debug-addr", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off by default")
	return cmd
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// redactingDefault returns the redacting handler over base and makes it
// slog's default, and so the log package's: libraries that log on their
// own (mcp-go's transports log to slog.Default, with backend URLs in their
// errors) go through the redactor too.
func redactingDefault(base slog.Handler, red *redact.Redactor) slog.Handler {
	h := red.Handler(base)
	slog.SetDefault(slog.New(h))
	return h
}

// runServe wires the gateway: telemetry, recorder (with its ClickHouse),
// gateway, HTTP listener, config reloader. They run as actors of one
// run.Group: the first to return (the HTTP server failing, or ctx ending
// on a signal) stops the others, in order: the reloader, the listener
// (in-flight requests finish), then the gateway and its backends, then
// the recorder, which drains last. overrides are the command line's
// settings, applied to every reloaded config too.
func runServe(ctx context.Context, cfg *config.Config, overrides func(*config.Config), logLevel string) error {
	// Every log line goes through the redactor, with recording on or off,
	// the recorder's own lines included.
	base := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(logLevel)})
	redactor, err := newRedactor(cfg, slog.New(base), cfg.Recorder.IsEnabled())
	if err != nil {
		return err
	}
	handler := redactingDefault(base, redactor)
	rec, err := startRecording(ctx, cfg, handler, redactor)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if !started {
			rec.stop()
		}
	}()
	logger := slog.New(handler)
	for _, w := range cfg.Warnings() {
		logger.Warn("config: " + w)
	}

	telemetry.LogErrors(logger)
	tp, shutdownTP, err := telemetry.NewTracerProvider(ctx, "mcptrail", version, os.Getenv, telemetry.WithRedaction(redactor.String))
	if err != nil {
		return fmt.Errorf("configuring OpenTelemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTP(sctx); err != nil {
			logger.Warn("traces lost at shutdown", "component", "telemetry", "err", err)
		}
	}()

	mt, err := telemetry.NewPrometheusMetrics("mcptrail", version)
	if err != nil {
		return fmt.Errorf("configuring metrics: %w", err)
	}
	defer func() { _ = mt.Shutdown(context.Background()) }()
	opts := proxy.Options{Config: cfg, Version: version, Logger: logger, TracerProvider: tp, Propagator: telemetry.Propagator(),
		MeterProvider: mt.Provider, MetricsHandler: mt.Handler, OutputRedactor: redactor}
	if rec.pipeline != nil {
		opts.Recorder = rec
		opts.PinStore = rec.store
		if cfg.Recorder.Payloads.IsEnabled() {
			opts.Redactor = rec.redactor
			opts.DeferRedactionBytes = deferRedactionBytes
		} else {
			opts.Redactor = noPayloads{rec.redactor}
		}
	}
	var gw *proxy.Gateway
	if rec.store != nil {
		con, err := console.New(console.Config{Store: rec.store, Status: func() proxy.Status { return gw.Status() },
			TraceURL: func() string { return gw.Config().Admin.TraceURL }, Logger: logger, Version: version})
		if err != nil {
			return err
		}
		opts.Console = con
	}
	gw, err = proxy.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			ln.Close()
			return fmt.Errorf("listening on admin.listen %s: %w", cfg.Admin.Listen, err)
		}
	}
	if err := gw.Start(ctx); err != nil {
		ln.Close()
		if adminLn != nil {
			adminLn.Close()
		}
		return fmt.Errorf("starting the gateway: %w", err)
	}
	srv := proxy.NewHTTPServer(gw.Handler(), cfg.Limits)
	srv.RegisterOnShutdown(gw.CloseStreams)
	var adminSrv *http.Server
	if adminLn != nil {
		adminSrv = proxy.NewHTTPServer(gw.AdminHandler(), cfg.Limits)
		logger.Info("mcptrail admin endpoints listening", "addr", adminLn.Addr().String())
		fmt.Fprintf(os.Stderr, "\nmcptrail admin endpoints (/statusz, /metrics) on http://%s\n", adminLn.Addr())
	}
	if opts.Console != nil {
		at := ln.Addr().String()
		if adminLn != nil {
			at = adminLn.Addr().String()
		}
		logger.Info("mcptrail web console", "url", "http://"+at+"/console/")
		fmt.Fprintf(os.Stderr, "\nmcptrail web console: http://%s/console/\n", at)
	}

	addr := ln.Addr().String()
	logger.Info("mcptrail gateway listening", "addr", addr, "config", cfg.Path, "servers", len(cfg.Servers), "recording", rec.pipeline != nil)
	fmt.Fprintf(os.Stderr, `
mcptrail %s is serving MCP on http://%s
  streamable HTTP: http://%s/mcp      legacy SSE: http://%s/sse
  stdio-only clients: mcptrail stdio --url http://%s/mcp
  each answer carries X-Request-Id; explain a call with: mcptrail trace <request-id>

`, version, addr, addr, addr, addr)

	started = true
	// One deadline for the whole stop sequence, set when it begins.
	var (
		stopOnce sync.Once
		stopCtx  context.Context
		cancel   context.CancelFunc = func() {}
	)
	stopping := func() context.Context {
		stopOnce.Do(func() {
			// The config in force: a reload may have changed it.
			timeout := gw.Config().ShutdownTimeout
			logger.Info("shutting down", "timeout", timeout)
			stopCtx, cancel = context.WithTimeout(context.Background(), timeout)
		})
		return stopCtx
	}
	defer func() { cancel() }()

	var g run.Group
	{ // signals: ctx ends on SIGINT/SIGTERM
		sigCtx, stop := context.WithCancel(ctx)
		g.Add(func() error {
			<-sigCtx.Done()
			return nil
		}, func(error) { stop() })
	}
	{ // the config reloader: SIGHUP and changes of the config file
		rctx, stop := context.WithCancel(ctx)
		rl := &configReloader{gw: gw, path: cfg.Path, prepare: overrides, logger: logger.With("component", "reloader"),
			debounce: 100 * time.Millisecond, poll: 2 * time.Second}
		g.Add(func() error { return rl.run(rctx) }, func(error) { stop() })
	}
	{ // the listener
		g.Add(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
				return fmt.Errorf("serving HTTP: %w", err)
			}
			return nil
		}, func(error) {
			if err := srv.Shutdown(stopping()); err != nil {
				logger.Warn("HTTP shutdown", "err", err)
			}
		})
	}
	if adminSrv != nil { // the admin listener (admin.listen)
		g.Add(func() error {
			if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				logger.Error("admin HTTP server failed", "err", err)
				return fmt.Errorf("serving admin.listen: %w", err)
			}
			return nil
		}, func(error) {
			if err := adminSrv.Shutdown(stopping()); err != nil {
				logger.Warn("admin HTTP shutdown", "err", err)
			}
		})
	}
	{ // the gateway and its backends
		done := make(chan struct{})
		g.Add(func() error {
			<-done
			return nil
		}, func(error) {
			if err := gw.Shutdown(stopping()); err != nil {
				logger.Warn("gateway shutdown", "err", err)
			}
			close(done)
		})
	}
	{ // the recorder, its local ClickHouse and retention: drains last
		done := make(chan struct{})
		g.Add(func() error {
			<-done
			return nil
		}, func(error) {
			rec.stop()
			close(done)
		})
	}
	return g.Run()
}

// serveDebug exposes pprof on its own listener, never on the MCP port.
func serveDebug(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for --debug-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
