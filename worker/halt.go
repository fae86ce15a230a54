package worker

import (
	"sync"
	"time"

	"provisioner/dingtalk"
)

// Halt says why this worker stopped taking events: DingTalk refused its
// configuration (its app secret, a permission the app lacks, its egress IP
// missing from the app's allowlist), which no event can get past. Workers
// configured correctly go on; this one retries with a single event about
// once per Config.ProbeInterval and resumes when that gets through.
type Halt struct {
	Reason string    // dingtalk.MisconfiguredCredentials, …Permission or …IPAllowlist
	Detail string    // what DingTalk said, for people
	Since  time.Time // when it stopped
}

// halt is this worker's own stop, shared by the pull loop and the handlers.
// Safe for concurrent use.
type halt struct {
	mu      sync.Mutex
	cur     *Halt
	api     string        // the API refused; for a permission, only its success resumes
	probeAt time.Time     // when the pull loop may take one event to try again
	probing bool          // that event is out
	changed chan struct{} // closed at each change
}

func newHalt() *halt { return &halt{changed: make(chan struct{})} }

// stop records a refusal of the configuration and reports whether this
// worker was taking events until now (so that it is logged once).
func (h *halt) stop(de *dingtalk.Error, now time.Time, every time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.cur == nil
	if first {
		h.cur, h.api = &Halt{Reason: de.Misconfiguration(), Detail: de.Error(), Since: now}, de.API
	}
	h.probeAt, h.probing = now.Add(every), false
	h.signal()
	return first
}

// resume clears the stop after a call to api got through, and reports
// whether there was one. Any call proves credentials and the IP allowlist
// mended; a permission is mended only when its own API answers.
func (h *halt) resume(api string) (Halt, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil || (h.cur.Reason == dingtalk.MisconfiguredPermission && api != h.api) {
		return Halt{}, false
	}
	was := *h.cur
	h.cur, h.probing = nil, false
	h.signal()
	return was, true
}

// status is the stop in force, if any.
func (h *halt) status() (Halt, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return Halt{}, false
	}
	return *h.cur, true
}

// allowance is how many events the pull loop may take now: all it has room
// for while not stopped; while stopped, one when a probe is due (and none
// while that one is out); wake is when to ask again.
func (h *halt) allowance(now time.Time, room int) (n int, wake time.Duration, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case room <= 0:
		return 0, 0, h.changed // asked again when a slot frees
	case h.cur == nil:
		return room, 0, h.changed
	case h.probing:
		return 0, 0, h.changed
	case !now.Before(h.probeAt):
		h.probing = true
		return min(room, 1), 0, h.changed
	}
	return 0, h.probeAt.Sub(now), h.changed
}

// probeEnded lets another probe go out later if the last one settled
// without a DingTalk answer either way (it was held, say).
func (h *halt) probeEnded(now time.Time, every time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil && h.probing {
		h.probing, h.probeAt = false, now.Add(every)
		h.signal()
	}
}

func (h *halt) signal() {
	close(h.changed)
	h.changed = make(chan struct{})
}
