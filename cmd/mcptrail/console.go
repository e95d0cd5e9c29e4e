package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcptrail/mcptrail/cmd/mcptrail/internal/console"
	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/recorder/clickhouse"
)

func newConsoleCmd() *cobra.Command {
	var (
		sf           storeFlags
		listen       string
		tokenSHA256  string
		traceURL     string
		queryTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the read-only web console over recordings in ClickHouse, without a gateway",
		Long: `Serve the web console (calls, traces, audit, replay runs) over the recordings
in ClickHouse, without running a gateway; ` + "`mcptrail serve`" + ` serves the same console
under /console/ on its admin listener. The admin token guards it as it guards
the gateway's admin endpoints: --admin-token-sha256, else admin.token_sha256
of --config, else MCPTRAIL_ADMIN_TOKEN_SHA256. Without a token it only
listens on a loopback address.`,
		Example: `  mcptrail console --clickhouse 127.0.0.1:9000
  mcptrail console --config mcptrail.yaml --listen 127.0.0.1:9091`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := sf.resolve()
			if err != nil {
				return err
			}
			cfg, _ := sf.loadConfig()
			if cfg != nil {
				tokenSHA256 = cmp.Or(tokenSHA256, cfg.Admin.TokenSHA256)
				traceURL = cmp.Or(traceURL, cfg.Admin.TraceURL)
			}
			tokenSHA256 = strings.ToLower(cmp.Or(tokenSHA256, os.Getenv("MCPTRAIL_ADMIN_TOKEN_SHA256")))
			if err := checkConsoleListen(listen, tokenSHA256); err != nil {
				return err
			}
			return runConsole(cmd.Context(), t, listen, tokenSHA256, traceURL, queryTimeout)
		},
	}
	sf.register(cmd)
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", "127.0.0.1:9091", "host:port to serve the console on")
	fs.StringVar(&tokenSHA256, "admin-token-sha256", "", "hex sha256 of the admin token the console requires (mcptrail token hash)")
	fs.StringVar(&traceURL, "trace-url", "", "link OTel trace IDs here; {trace_id} is replaced (e.g. http://jaeger:16686/trace/{trace_id})")
	fs.DurationVar(&queryTimeout, "query-timeout", 10*time.Second, "deadline of each page's ClickHouse queries")
	return cmd
}

// checkConsoleListen refuses to serve the recordings beyond loopback
// without the admin token.
func checkConsoleListen(listen, tokenSHA256 string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	if tokenSHA256 != "" {
		if b, err := hex.DecodeString(tokenSHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("--admin-token-sha256: want 64 hex digits (mcptrail token hash), got %d characters", len(tokenSHA256))
		}
		return nil
	}
	ip := net.ParseIP(host)
	if host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %s is not a loopback address: the console shows every recorded call, so it needs an admin token there (--admin-token-sha256 or admin.token_sha256)", listen)
}

func runConsole(ctx context.Context, t target, listen, tokenSHA256, traceURL string, queryTimeout time.Duration) error {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	t.cfg.DialTimeout = 3 * time.Second
	store, err := clickhouse.NewLazy(t.cfg, false, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	con, err := console.New(console.Config{Store: store, TraceURL: func() string { return traceURL }, QueryTimeout: queryTimeout, Logger: logger, Version: version})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", console.RequireToken(tokenSHA256, con))
	mux.Handle("/{$}", http.RedirectHandler("/console/", http.StatusSeeOther))
	srv := proxy.NewHTTPServer(mux, config.Limits{})
	fmt.Fprintf(os.Stderr, "mcptrail web console: http://%s/console/ (recordings in database %s at %s, from %s)\n",
		ln.Addr(), t.cfg.Database, strings.Join(t.cfg.Addr, ","), t.source)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the console: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stopping the console: %w", err)
	}
	return nil
}
