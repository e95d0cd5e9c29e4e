package testbackend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// RunStdio serves a backend of the given variant ("v1" or "v2") on the
// process's stdin and stdout until stdin closes or ctx is cancelled. It is
// what the hidden `mcptrail testbackend --variant v2` subcommand runs.
// mutable adds the mutate tool (Options.Mutable).
func RunStdio(ctx context.Context, variant string, mutable bool) error {
	if err := validVariant(variant); err != nil {
		return err
	}
	return New(Options{Variant: variant, Mutable: mutable}).ServeStdio(ctx, os.Stdin, os.Stdout)
}

// RunHTTP serves a backend of the given variant as streamable HTTP on addr
// (for example ":9001"; any path answers) until ctx is cancelled, then
// shuts down within 5 seconds. It backs `mcptrail testbackend --http :PORT`.
func RunHTTP(ctx context.Context, variant, addr string, mutable bool) error {
	if err := validVariant(variant); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for testbackend on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: New(Options{Variant: variant, Mutable: mutable}).HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving testbackend on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down testbackend on %s: %w", addr, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving testbackend on %s: %w", addr, err)
	}
	return nil
}

func validVariant(v string) error {
	switch v {
	case "", "v1", "v2":
		return nil
	}
	return fmt.Errorf("testbackend: unknown variant %q (want v1 or v2)", v)
}
