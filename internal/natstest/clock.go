package natstest

import (
	"sync"
	"time"
)

// Clock is a clock a test moves by hand: pass its Now where a component
// takes a time source. The zero value runs with the real time, moved by
// every Advance; FrozenClock stands still but for Advance. Safe for
// concurrent use.
type Clock struct {
	mu     sync.Mutex
	frozen bool
	at     time.Time     // guarded by mu: a frozen clock's time
	offset time.Duration // guarded by mu
}

// FrozenClock is a clock that shows at until moved.
func FrozenClock(at time.Time) *Clock { return &Clock{frozen: true, at: at} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		return c.at.Add(c.offset)
	}
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}
