package budget

import "time"

// window caps one API's calls from one worker: at most n released in any
// span of length w. Calls that stay within it at every worker, with the
// workers' n adding up to the app's limit, stay within the limit in every
// one-second window DingTalk can see, whatever way it counts (per
// wall-clock second, sliding, half-second buckets, token bucket), as long
// as w exceeds a second by more than the spread of the network's latency.
type window struct {
	sent []time.Time // release times within the last w, oldest first
}

// next says when a call may be released: now, or later; the zero time if n is 0.
func (win *window) next(now time.Time, w time.Duration, n int) time.Time {
	cut := 0
	for cut < len(win.sent) && !win.sent[cut].After(now.Add(-w)) {
		cut++
	}
	win.sent = win.sent[cut:]
	switch {
	case n <= 0:
		return time.Time{}
	case len(win.sent) < n:
		return now
	default:
		return win.sent[len(win.sent)-n].Add(w)
	}
}

// count is how many calls were released in the last d (d ≤ the window).
func (win *window) count(now time.Time, d time.Duration) int {
	k := 0
	for _, t := range win.sent {
		if t.After(now.Add(-d)) {
			k++
		}
	}
	return k
}
