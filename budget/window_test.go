package budget

import (
	"testing"
	"time"
)

func TestWindowReleasesAtMostNPerSpan(t *testing.T) {
	const w, n = time.Second, 3
	var win window
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var released []time.Time
	for len(released) < 10 {
		at := win.next(now, w, n)
		if at.After(now) {
			now = at // wait until then
			continue
		}
		win.sent = append(win.sent, now)
		released = append(released, now)
		now = now.Add(10 * time.Millisecond)
	}
	for i := n; i < len(released); i++ {
		if gap := released[i].Sub(released[i-n]); gap < w {
			t.Fatalf("calls %d and %d are %v apart: %d calls within %v", i-n, i, gap, n+1, w)
		}
	}
	// The first n go at once (10 ms apart), the next n one window later.
	if got := released[n].Sub(released[0]); got != w {
		t.Errorf("call %d released %v after the first, want %v", n, got, w)
	}
	if !win.next(now, w, 0).IsZero() {
		t.Error("a share of 0 must release nothing")
	}
}
