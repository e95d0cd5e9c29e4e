package config

import (
	"math"
	"testing"
)

// FuzzRatePerSecond: any rate string either fails or gives a positive,
// finite rate and a burst of at least 1.
func FuzzRatePerSecond(f *testing.F) {
	for _, s := range []string{"10/s", "120/m", "0.5/s", "36/h", "10", "0/s", "-1/s", "1/d", "1e308/s", "NaN/s", "Inf/m", " 3 / s "} {
		f.Add(s, 0)
	}
	for _, s := range []string{"1e-320/h", "2e9/s"} {
		f.Add(s, 0)
	}
	f.Add("5/s", -1)
	f.Add("5/s", 7)
	f.Fuzz(func(t *testing.T, rate string, burst int) {
		perSec, b, err := Rate{Rate: rate, Burst: burst}.PerSecond()
		if err != nil {
			return
		}
		if !(perSec > 0) || math.IsInf(perSec, 0) || b < 1 {
			t.Fatalf("Rate{%q, %d}.PerSecond() = %v, %d, nil", rate, burst, perSec, b)
		}
	})
}
