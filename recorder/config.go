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

// Defaults of Config, the single definition of the recorder's defaults
// (proxy/config refers to these for the recorder.* keys).
const (
	DefaultQueueSize = 65536
	// DefaultQueueBytes bounds the in-memory queue by the events' size
	// (payloads, strings and the Event itself): 64 MiB, a few seconds of
	// recorded traffic at the largest payloads, while QueueSize bounds the
	// count of small events.
	DefaultQueueBytes = 64 << 20
	// DefaultSegmentBytes is where the spooler rolls a segment before its
	// age does. The writer reads a segment a piece at a time (at most
	// BatchSize events and, for storage that streams a segment as one
	// batch, 256 KiB; a writer that takes chunks, or a segment refused as
	// one batch, gets whole chunks of BatchSize events), and storage that
	// streams (ClickHouse) makes one part of a segment: at high rates,
	// larger segments mean fewer, larger parts, which cost ClickHouse much
	// less CPU per event than many small ones.
	DefaultSegmentBytes  = 64 << 20
	DefaultSegmentAge    = time.Second
	DefaultFsync         = FsyncInterval
	DefaultFsyncInterval = time.Second
	// DefaultMaxDiskBytes is the spool's disk budget: at ~1 KiB per event
	// and 5 events per call it holds about 200,000 calls, a bit over an
	// hour at 50 calls/s with ClickHouse down (mcptrail status shows the
	// estimate for the actual rate).
	DefaultMaxDiskBytes = 1 << 30
	DefaultOverflow     = OverflowDrop
	DefaultBatchSize    = 10000
	DefaultRetryMin     = 100 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
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
	// QueueBytes bounds the same queue by the approximate memory its
	// events hold (payloads, strings and the Event struct), so that large
	// payloads cannot grow the gateway's memory by QueueSize times their
	// size. An event that would pass it is treated like one that finds the
	// queue full (Overflow applies), except that an empty queue always
	// takes one event. Default 64 MiB.
	QueueBytes int64
	// SegmentBytes rolls the active spool segment once it reaches this
	// size in bytes. Default 64 MiB.
	SegmentBytes int64
	// SegmentAge seals the active segment after this age even if it is
	// small, so that events reach storage within about this delay: it is
	// the flush interval. Default 1s.
	SegmentAge time.Duration
	// Fsync is when spooled events are fsynced: "always", "interval"
	// (default) or "never". An event counts as acknowledged (Stats.Spooled)
	// once it is durable under this policy.
	Fsync string
	// FsyncInterval is the fsync period under Fsync "interval". Default 1s.
	FsyncInterval time.Duration
	// MaxDiskBytes is the spool's disk budget in bytes; past it the
	// Overflow policy applies. Default 1 GiB.
	MaxDiskBytes int64
	// Overflow is what happens when the queue is full or the disk budget is
	// used up: "drop" (default: the event is counted and dropped, Record
	// returns nil) or "fail_closed" (Record refuses the event that would
	// admit a new call; the hops of calls already admitted are kept, see
	// Pipeline.Record). From 80% of MaxDiskBytes the pipeline logs a
	// warning once a minute.
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
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	def(&c.QueueBytes, DefaultQueueBytes)
	def(&c.SegmentBytes, DefaultSegmentBytes)
	def(&c.MaxDiskBytes, DefaultMaxDiskBytes)
	c.SegmentBytes = min(c.SegmentBytes, c.MaxDiskBytes)
	if c.SegmentAge == 0 {
		c.SegmentAge = DefaultSegmentAge
	}
	if c.Fsync == "" {
		c.Fsync = DefaultFsync
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = DefaultFsyncInterval
	}
	if c.Overflow == "" {
		c.Overflow = DefaultOverflow
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
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
	if c.QueueBytes < 0 {
		errs = append(errs, fmt.Errorf("recorder.queue_bytes: %d is negative", c.QueueBytes))
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
