package recorder

import (
	"errors"
	"fmt"
	"time"
)

// Fsync policies for Config.Fsync.
const (
	FsyncAlways   = "always"   // fsync after every group of records the spooler writes
	FsyncInterval = "interval" // fsync every FsyncInterval and when a segment is sealed
	FsyncNever    = "never"    // leave flushing to the OS; a crash can lose acknowledged events
)

// Overflow policies for Config.Overflow.
const (
	OverflowDrop       = "drop"        // keep accepting calls; count and log every dropped event
	OverflowFailClosed = "fail_closed" // Record returns ErrOverflow; the caller should refuse the call
)

// Config configures a Pipeline (the recorder.* keys). Zero values take the
// defaults given on each field.
type Config struct {
	// Dir is the spool directory; it is created if missing. Required.
	// Segments left there by a previous run are written at Start.
	Dir string
	// QueueSize is the in-memory queue capacity in events between Record
	// and the spooler. Default 65536.
	QueueSize int
	// SegmentBytes rolls the active spool segment once it reaches this
	// size in bytes. Default 16 MiB.
	SegmentBytes int64
	// SegmentAge seals the active segment after this age even if it is
	// small, so that events reach storage within about this delay: it is
	// the flush interval. Default 1s.
	SegmentAge time.Duration
	// Fsync is when spooled events are fsynced: "always", "interval"
	// (default) or "never". An event counts as acknowledged (Stats.Spooled)
	// once it is durable under this policy.
	Fsync string
	// FsyncInterval is the fsync period under Fsync "interval". Default 200ms.
	FsyncInterval time.Duration
	// MaxDiskBytes is the spool's disk budget in bytes; past it the
	// Overflow policy applies. Default 1 GiB.
	MaxDiskBytes int64
	// Overflow is what happens when the queue is full or the disk budget is
	// used up: "drop" (default) or "fail_closed".
	Overflow string
	// BatchSize is the maximum number of events per Writer.WriteBatch.
	// Default 10000.
	BatchSize int
	// RetryMin and RetryMax bound the exponential backoff (with jitter)
	// between failed WriteBatch attempts. Defaults 100ms and 30s.
	RetryMin, RetryMax time.Duration
	// Prepare, when set, is called by the spooler goroutine on every event
	// marked Unredacted, before it is written to disk; it must redact the
	// event's payloads and error message in place. Events marked
	// Unredacted lose those fields when Prepare is nil: raw payloads never
	// reach the spool.
	Prepare func(*Event)
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = 65536
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 16 << 20
	}
	if c.SegmentAge == 0 {
		c.SegmentAge = time.Second
	}
	if c.Fsync == "" {
		c.Fsync = FsyncInterval
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = 200 * time.Millisecond
	}
	if c.MaxDiskBytes == 0 {
		c.MaxDiskBytes = 1 << 30
	}
	if c.Overflow == "" {
		c.Overflow = OverflowDrop
	}
	if c.BatchSize == 0 {
		c.BatchSize = 10000
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	return c
}

// Validate reports the first invalid key, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("recorder.dir: required"))
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("recorder.queue_size: %d is negative", c.QueueSize))
	}
	if c.SegmentBytes < segmentHeaderLen {
		errs = append(errs, fmt.Errorf("recorder.segment_bytes: %d is too small", c.SegmentBytes))
	}
	if c.SegmentAge < 0 {
		errs = append(errs, fmt.Errorf("recorder.segment_age: %s is negative", c.SegmentAge))
	}
	switch c.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		errs = append(errs, fmt.Errorf("recorder.fsync: %q is not always, interval or never", c.Fsync))
	}
	if c.FsyncInterval < 0 {
		errs = append(errs, fmt.Errorf("recorder.fsync_interval: %s is negative", c.FsyncInterval))
	}
	if c.MaxDiskBytes < 0 {
		errs = append(errs, fmt.Errorf("recorder.max_disk_bytes: %d is negative", c.MaxDiskBytes))
	}
	switch c.Overflow {
	case OverflowDrop, OverflowFailClosed:
	default:
		errs = append(errs, fmt.Errorf("recorder.overflow: %q is not drop or fail_closed", c.Overflow))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("recorder.batch_size: %d is negative", c.BatchSize))
	}
	if c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("recorder.retry_min/retry_max: need 0 <= %s <= %s", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}
