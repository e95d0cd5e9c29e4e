package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
	"github.com/mcptrail/mcptrail/proxy/jsonrpc"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/replay/match"
	"github.com/mcptrail/mcptrail/replay/mockserver"
)

// Listener serves an http.Handler on a TCP address until Close.
type Listener struct {
	// URL is http://host:port of the listener.
	URL  string
	srv  *http.Server
	done chan struct{}
}

// Listen serves h on addr ("127.0.0.1:0" for a free loopback port).
func Listen(addr string, h http.Handler) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	l := &Listener{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(ln)
	}()
	return l, nil
}

// Close stops the listener and closes open connections.
func (l *Listener) Close() error {
	err := l.srv.Close()
	<-l.done
	return err
}

// Mock is the replay mock listening on a port.
type Mock struct {
	*Listener
	Server *mockserver.Server
	Store  *match.Store
}

// StartMock serves store at addr; backend S is at URL + "/S/mcp".
func StartMock(store *match.Store, cfg mockserver.Config, addr string, log *slog.Logger) (*Mock, error) {
	ms, err := mockserver.New(store, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("starting the replay mock: %w", err)
	}
	l, err := Listen(addr, ms)
	if err != nil {
		return nil, fmt.Errorf("starting the replay mock: %w", err)
	}
	return &Mock{Listener: l, Server: ms, Store: store}, nil
}

// MockConfig returns a copy of base (or of a minimal config when base is
// nil) whose backends all point at the mock: every server of base keeps its
// name, timeouts and concurrency but is reached over streamable HTTP at
// mockURL/{name}/mcp; servers recorded but absent from base are added.
func MockConfig(base *config.Config, recorded []string, mockURL string) *config.Config {
	cfg := &config.Config{}
	if base != nil {
		c := *base
		cfg = &c
		cfg.Servers = slices.Clone(base.Servers)
	}
	if cfg.NamespaceSeparator == "" {
		cfg.NamespaceSeparator = config.DefaultNamespaceSeparator
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = config.DefaultMaxBodyBytes
	}
	for _, name := range recorded {
		if !slices.ContainsFunc(cfg.Servers, func(s config.Server) bool { return s.Name == name }) {
			cfg.Servers = append(cfg.Servers, config.Server{Name: name})
		}
	}
	for i := range cfg.Servers {
		// The mock changes how a backend is reached and nothing else: every
		// policy the server carries (argument validation and rules, output
		// filters, limits, namespace) replays as configured.
		s := &cfg.Servers[i]
		s.Transport, s.URL = config.TransportHTTP, strings.TrimRight(mockURL, "/")+"/"+s.Name+"/mcp"
		s.Command, s.Args, s.Env, s.EnvPassthrough, s.Dir = "", nil, nil, nil, ""
		s.Headers, s.HeaderFiles = nil, nil
	}
	return cfg
}

// RecordedTimeouts returns, per backend, the timeout the recording shows
// the gateway applied: an upstream hop that timed out (-32004) says
// "… within <duration>". MockConfig without a base config uses it, so that
// a recorded timeout replays as the same timeout.
func RecordedTimeouts(events []recorder.Event) map[string]time.Duration {
	out := map[string]time.Duration{}
	for i := range events {
		e := &events[i]
		if e.Hop != recorder.HopUpstream || e.Outcome != recorder.OutcomeTransportError || e.ErrorCode != jsonrpc.CodeRequestTimeout {
			continue
		}
		i := strings.LastIndex(e.ErrorMessage, " within ")
		if i < 0 {
			continue
		}
		if d, err := time.ParseDuration(strings.TrimSpace(e.ErrorMessage[i+len(" within "):])); err == nil && d > 0 {
			out[e.Server] = d
		}
	}
	return out
}

// WithNoNamespace mounts each server of cfg named in set without a
// namespace.
func WithNoNamespace(cfg *config.Config, set map[string]bool) *config.Config {
	for i := range cfg.Servers {
		if set[cfg.Servers[i].Name] {
			cfg.Servers[i].NoNamespace = true
		}
	}
	return cfg
}

// WithTimeouts sets the timeout of each server of cfg that has none.
func WithTimeouts(cfg *config.Config, timeouts map[string]time.Duration) *config.Config {
	for i := range cfg.Servers {
		if s := &cfg.Servers[i]; s.Timeout <= 0 && timeouts[s.Name] > 0 {
			s.Timeout = timeouts[s.Name]
		}
	}
	return cfg
}

// Gateway is this build's gateway running in-process for a replay.
type Gateway struct {
	*Listener
	// MCPURL is the gateway's streamable HTTP endpoint.
	MCPURL string
	gw     *proxy.Gateway
}

// GatewayOption sets an option of the replay gateway.
type GatewayOption func(*proxy.Options)

// WithVersion names the gateway's version (its serverInfo); the command
// that runs the replay passes its own, as `mcptrail serve` does.
func WithVersion(v string) GatewayOption { return func(o *proxy.Options) { o.Version = v } }

// StartGateway runs a gateway for cfg on a loopback port and waits up to
// readyTimeout until every backend is connected (a backend that does not
// come up is named in the error). Nothing is recorded.
func StartGateway(ctx context.Context, cfg *config.Config, readyTimeout time.Duration, log *slog.Logger, opts ...GatewayOption) (*Gateway, error) {
	if cfg.NamespaceSeparator == "" {
		cfg.NamespaceSeparator = config.DefaultNamespaceSeparator
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = config.DefaultMaxBodyBytes
	}
	if readyTimeout <= 0 {
		readyTimeout = 30 * time.Second
	}
	o := proxy.Options{Config: cfg, Logger: log, HealthInterval: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	gw, err := proxy.New(o)
	if err != nil {
		return nil, fmt.Errorf("building the replay gateway: %w", err)
	}
	if err := gw.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the replay gateway: %w", err)
	}
	l, err := Listen("127.0.0.1:0", gw.Handler())
	if err != nil {
		_ = gw.Shutdown(ctx)
		return nil, err
	}
	g := &Gateway{Listener: l, MCPURL: l.URL + "/mcp", gw: gw}
	deadline := time.Now().Add(readyTimeout)
	for {
		down := ""
		for _, s := range cfg.Servers {
			if b := gw.Backend(s.Name); b == nil || !b.Ready() {
				down = s.Name
				if b != nil && b.LastError() != nil {
					down += ": " + b.LastError().Error()
				}
				break
			}
		}
		if down == "" {
			return g, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = g.Close()
			return nil, fmt.Errorf("starting the replay gateway: backend %s not ready after %s", down, readyTimeout)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the listener, then the gateway and its backends.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(g.Listener.Close(), g.gw.Shutdown(ctx))
}
