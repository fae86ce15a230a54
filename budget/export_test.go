package budget

import "time"

// WindowOf is p's window for api, for tests.
func WindowOf(p *Pacer, api string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.window(api)
}
