package natstest

import (
	"sync"
	"time"
)

// Clock is a clock a test moves by hand, starting at the real time: pass
// its Now where a component takes a time source. Safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration // guarded by mu
}

// Now is the real time moved by every Advance so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}
