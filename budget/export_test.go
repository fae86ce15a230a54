package budget

import "time"

// WindowOf is p's window for api, for tests.
func WindowOf(p *Pacer, api string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.window(api)
}

// FastRaise builds a pacer for worker id among live (sorted), having heard
// records (worker id → its published seen, share and recent calls), and
// says whether fastRaise lets it raise its share now.
func FastRaise(id string, limit int, live []string, records map[string]Record, gone time.Duration) bool {
	now := time.Now()
	p := &Pacer{o: PacerOptions{ID: id, Limit: limit}, seen: live, records: map[string]member{}}
	if gone > 0 {
		p.gone = now.Add(-gone)
	}
	for rid, r := range records {
		p.records[rid] = member{Seen: r.Seen, Share: r.Share, Recent: r.Recent}
	}
	return p.fastRaise(now)
}

// Record is what a worker published, for FastRaise.
type Record struct {
	Seen          []string
	Share, Recent int
}
