package recorder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// QuarantineDir is the sub-directory of the spool directory where batches
// the storage rejected for good (a Permanent error) are kept, one segment
// file per batch, named <segment>-<chunk>.seg. Nothing deletes them:
// Requeue (`mcptrail recorder requeue`) hands them back to the writer once
// the cause is fixed, or an operator removes them.
const QuarantineDir = "quarantine"

// extRequeued marks a quarantined batch handed back by Requeue; the writer
// adopts it (renaming it to .seg) when idle, or Start does.
const extRequeued = ".requeued"

// requeueScan is how often an idle writer looks for requeued batches.
const requeueScan = 2 * time.Second

// quarantineBatch writes chunk i of segment id, which the storage rejected
// with cause, to the quarantine directory as a segment of its own, durably.
func (p *Pipeline) quarantineBatch(id string, i, batchSize int, chunk []Event, cause error) error {
	dir := filepath.Join(p.cfg.Dir, QuarantineDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating quarantine directory %s: %w", dir, err)
	}
	b := segmentHeader(max(batchSize, len(chunk)))
	for k := range chunk {
		b = AppendRecord(b, &chunk[k])
	}
	name := id + "-" + strconv.Itoa(i) + extSealed
	final := filepath.Join(dir, name)
	tmp := final + ".tmp"
	if err := writeFileSync(tmp, b, p.syncFile); err != nil {
		return fmt.Errorf("writing quarantined batch %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("renaming quarantined batch %s: %w", final, err)
	}
	if err := syncDir(dir); err != nil {
		p.logger.Warn("quarantine directory fsync failed", "err", err)
	}
	p.quarantineFiles.Add(1)
	p.quarantineBytes.Add(int64(len(b)))
	p.logger.Error("storage REJECTED a batch for good; it is kept in quarantine and later batches go on. "+
		"Fix the cause, then run `mcptrail recorder requeue` to write it",
		"batch", name, "events", len(chunk), "file", final, "cause", cause)
	return nil
}

func writeFileSync(path string, b []byte, sync func(*os.File) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := sync(f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// scanQuarantine refreshes the quarantine counters from the directory (an
// operator or Requeue may change it behind the pipeline's back).
func (p *Pipeline) scanQuarantine() {
	files, bytes, err := quarantineUsage(p.cfg.Dir)
	if err != nil {
		return
	}
	p.quarantineFiles.Store(int64(files))
	p.quarantineBytes.Store(bytes)
}

func quarantineUsage(spoolDir string) (files int, bytes int64, err error) {
	entries, err := os.ReadDir(filepath.Join(spoolDir, QuarantineDir))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != extSealed {
			continue
		}
		if info, err := e.Info(); err == nil {
			files++
			bytes += info.Size()
		}
	}
	return files, bytes, nil
}

// adoptRequeued queues requeued batches for the writer; it reports whether
// it found any.
func (p *Pipeline) adoptRequeued() bool {
	entries, err := os.ReadDir(p.cfg.Dir)
	if err != nil {
		return false
	}
	found := false
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || filepath.Ext(name) != extRequeued {
			continue
		}
		id := strings.TrimSuffix(name, extRequeued)
		if err := os.Rename(p.path(id, extRequeued), p.path(id, extSealed)); err != nil {
			p.setError(fmt.Errorf("adopting requeued batch %s: %w", name, err))
			continue
		}
		info, err := os.Stat(p.path(id, extSealed))
		if err != nil {
			continue
		}
		p.spoolBytes.Add(info.Size())
		p.spoolSegments.Add(1)
		p.replayPending.Add(1)
		p.mu.Lock()
		p.sealed = append(p.sealed, &segment{id: id, size: info.Size()})
		p.mu.Unlock()
		p.logger.Info("writing a requeued batch", "batch", id)
		found = true
	}
	return found
}

// Requeue hands every quarantined batch of the spool directory dir back to
// the writer: a running pipeline picks them up within seconds, a stopped
// one at its next Start. It returns how many batches it requeued. It is
// safe to run while the gateway runs.
func Requeue(dir string) (int, error) {
	qdir := filepath.Join(dir, QuarantineDir)
	entries, err := os.ReadDir(qdir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("listing quarantine %s: %w", qdir, err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || filepath.Ext(name) != extSealed {
			continue
		}
		to := filepath.Join(dir, strings.TrimSuffix(name, extSealed)+extRequeued)
		if err := os.Rename(filepath.Join(qdir, name), to); err != nil {
			return n, fmt.Errorf("requeueing %s: %w", name, err)
		}
		n++
	}
	if n > 0 {
		if err := syncDir(dir); err != nil {
			return n, fmt.Errorf("syncing spool directory %s: %w", dir, err)
		}
	}
	return n, nil
}

// QuarantineUsage reports what the quarantine of spool directory dir holds.
func QuarantineUsage(dir string) (files int, bytes int64, err error) { return quarantineUsage(dir) }
