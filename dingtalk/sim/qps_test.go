package sim

import (
	"testing"
	"time"
)

// Each model admits 2 calls a second; the calls below tell them apart.
func TestQPSModels(t *testing.T) {
	at := func(ms ...int) []time.Time {
		base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
		out := make([]time.Time, len(ms))
		for i, m := range ms {
			out[i] = base.Add(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	// 900 ms, 950 ms: the first second's two. 1000, 1100: a new wall-clock
	// second, but within one second of the first two. 1951: one second after 950.
	// 3000, 3001, 3510: a burst after a rest, then one call half a second later.
	calls := at(900, 950, 1000, 1100, 1901, 1951, 3000, 3001, 3510)
	tests := []struct {
		model QPSModel
		want  []bool
	}{
		{PerSecond, []bool{true, true, true, true, false, false, true, true, false}},
		{Sliding, []bool{true, true, false, false, true, true, true, true, false}},
		// Halves: 900 and 950 in half 1; 1000 and 1100 in half 2 (half 1 holds 2): refused;
		// 1901 and 1951 in half 3, with half 2 empty.
		{HalfSeconds, []bool{true, true, false, false, true, true, true, true, false}},
		// Bucket: 2 tokens, 2 a second: 1000 has 0.1 token, 1100 0.3, 1901 1.9,
		// 1951 1.1; 3000 is full again, and 3510 has refilled one.
		{TokenBucket, []bool{true, true, false, false, true, true, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(string(tt.model), func(t *testing.T) {
			c := newQPSCounter(tt.model, 2)
			for i, when := range calls {
				if got := c.allow(when); got != tt.want[i] {
					t.Errorf("call %d at %s: allowed %v, want %v", i, when.Format("05.000"), got, tt.want[i])
				}
			}
		})
	}
}
