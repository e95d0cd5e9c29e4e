package recorder

import "time"

// Status is the recorder's part of the gateway's /statusz (the recorder
// field of proxy.Status), read back by `mcptrail status` through this same
// type.
type Status struct {
	// Healthy is false when Problems is not empty: events may be lost or
	// calls refused soon, or storage is behind.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
	// ReadyWhenDegraded is recorder.ready_when_degraded: whether /readyz
	// stays ready while the recorder is not healthy.
	ReadyWhenDegraded bool          `json:"ready_when_degraded"`
	Storage           StorageStatus `json:"storage"`
	Pipeline          Stats         `json:"pipeline"`
}

// StorageStatus is where events are written and whether that works.
type StorageStatus struct {
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"` // a connection was made (and the schema migrated)
	LastError string `json:"last_error,omitempty"`
	// Local is set when the gateway supervises its own ClickHouse.
	Local *LocalStatus `json:"local,omitempty"`
}

// LocalStatus is the supervised local ClickHouse.
type LocalStatus struct {
	Dir         string    `json:"dir"`
	Running     bool      `json:"running"`
	PID         int       `json:"pid,omitempty"`
	Restarts    int       `json:"restarts"`
	LastExit    string    `json:"last_exit,omitempty"`
	LastExitAt  time.Time `json:"last_exit_at,omitzero"`
	NextRestart time.Time `json:"next_restart,omitzero"`
}

// Problems lists what is wrong with the pipeline itself, from its Stats:
// the spool failing or nearly full, storage failing for a while.
func (s Stats) Problems(now time.Time) []string {
	var out []string
	if s.SpoolFailed {
		out = append(out, "spool fsync failed: events are not durable")
	}
	if s.MaxDiskBytes > 0 && float64(s.SpoolBytes) >= spoolWarnRatio*float64(s.MaxDiskBytes) {
		p := "spool nearly full: "
		if s.Overflow == OverflowFailClosed {
			p += "calls will be refused"
		} else {
			p += "events will be dropped"
		}
		out = append(out, p)
	}
	if s.StorageFailing && now.Sub(s.StorageFailingSince) >= storageGrace {
		out = append(out, "storage writes failing since "+s.StorageFailingSince.UTC().Format(time.RFC3339)+": "+s.LastError)
	}
	return out
}

// storageGrace is how long writes may fail before the recorder counts as
// degraded: a retry or two is normal.
const storageGrace = 5 * time.Second
