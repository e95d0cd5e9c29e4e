package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// configReloader is serve's reload actor: SIGHUP, or a change of the config
// file, loads the file again and hands it to the gateway, which validates
// it and swaps it in whole or keeps the config in force (proxy.Gateway.
// ReloadFile).
type configReloader struct {
	gw      reloadTarget
	path    string
	prepare func(*config.Config) // the command line's overrides
	logger  *slog.Logger
	// debounce gathers the burst of events one save makes (write,
	// chmod, rename) into one reload.
	debounce time.Duration
	// poll is how often the file's hash is checked when it cannot be
	// watched (fsnotify unavailable); 0 disables polling.
	poll time.Duration
}

// reloadTarget is what the reloader needs of the gateway.
type reloadTarget interface {
	ReloadFile(ctx context.Context, path string, prepare func(*config.Config), trigger string) (proxy.ReloadResult, error)
}

// run reloads on SIGHUP and on file changes until ctx ends. It fails only
// when it cannot listen for SIGHUP; a file it cannot watch is polled.
func (r *configReloader) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	abs, err := filepath.Abs(r.path)
	if err != nil {
		return fmt.Errorf("watching config %s: %w", r.path, err)
	}
	// The directory is watched, not the file: editors and Kubernetes
	// replace a file by renaming another over it, which ends a watch on
	// the file itself.
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(abs)); err != nil {
			w.Close()
		}
	}
	var ticker <-chan time.Time
	if err != nil {
		r.logger.Warn("cannot watch the config file; polling it instead", "config", r.path, "err", err, "every", r.poll)
		if r.poll > 0 {
			t := time.NewTicker(r.poll)
			defer t.Stop()
			ticker = t.C
		}
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	last := fileHash(abs)
	var (
		settle  <-chan time.Time
		pending string // the hash seen when the last settle period began
	)
	reload := func(trigger string) {
		h := fileHash(abs)
		if trigger != "sighup" && h == last {
			return
		}
		last = h
		// Failures are logged, counted and recorded by the gateway; the
		// config in force stays.
		_, _ = r.gw.ReloadFile(ctx, r.path, r.prepare, trigger)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			reload("sighup")
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if relevant(ev, abs) {
				pending = fileHash(abs)
				settle = time.After(r.debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.logger.Warn("watching the config file", "config", r.path, "err", err)
		case <-settle:
			// A file written in place (not renamed over) is read only
			// once it has stayed the same for a whole settle period, so
			// a half-written file is not what gets loaded.
			if h := fileHash(abs); h != pending {
				pending = h
				settle = time.After(r.debounce)
				continue
			}
			settle = nil
			reload("file")
		case <-ticker:
			reload("file")
		}
	}
}

// relevant reports whether ev may have changed the file at abs: an event
// on the file itself, or a Kubernetes ConfigMap's "..data" symlink swap.
func relevant(ev fsnotify.Event, abs string) bool {
	if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
		return false
	}
	name := filepath.Clean(ev.Name)
	return name == abs || filepath.Base(name) == "..data"
}

// fileHash is the sha256 of the file's bytes, as config.Config.Hash has
// it; "" when it cannot be read (a reload then reports why).
func fileHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "missing"
		}
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
