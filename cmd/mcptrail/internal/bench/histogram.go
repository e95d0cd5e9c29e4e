package bench

import (
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram in the spirit of HDR
// histograms: 32 linear sub-buckets per power of two, so any recorded value
// is reported within 1/32 (~3%) of its true value, in a fixed 15 KiB no
// matter how many samples are recorded. Not safe for concurrent use; each
// worker owns one and they are merged at the end.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	subBits     = 6 // 2^subBits values below which buckets are exact
	subHalf     = 1 << (subBits - 1)
	histBuckets = (64-subBits+1)*subHalf + subHalf
)

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < 1<<subBits {
		return int(u)
	}
	shift := bits.Len64(u) - subBits
	return shift*subHalf + int(u>>shift)
}

// bucketUpper is the largest value that falls into bucket i.
func bucketUpper(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	shift := i/subHalf - 1
	low := uint64(i-shift*subHalf) << shift
	return int64(low + (1 << shift) - 1)
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the upper bound of the bucket holding the q-th sample
// (0 < q <= 1), capped at the exact maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++ // ceil
	}
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketUpper(i), h.max))
		}
	}
	return time.Duration(h.max)
}
