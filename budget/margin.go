package budget

import "time"

// Observe takes how long a call to api took to be answered, from just
// before it left. How much those times vary bounds how much the calls'
// arrivals at DingTalk vary after their release (the network's and this
// process's delays), which is what the window's margin must cover: once
// an API has minSamples answers, its margin is their spread (the longest
// less the shortest of the last spreadSamples) plus marginSlack, instead
// of Margin. Safe for concurrent use.
func (p *Pacer) Observe(api string, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.spreads[api]
	if !ok {
		s = &spread{}
		p.spreads[api] = s
	}
	learnt := s.n >= minSamples
	s.add(took)
	if !learnt && s.n >= minSamples {
		p.o.Log.Info().Str("api", api).Dur("window", p.window(api)).Dur("spread", s.width()).
			Msg("the window of this API's calls now follows how much DingTalk's answer times vary")
	}
}

// window is api's window: a second plus its margin; p.mu held.
func (p *Pacer) window(api string) time.Duration {
	s, ok := p.spreads[api]
	if !ok || s.n < minSamples {
		return p.w
	}
	return time.Second + min(max(s.width()+marginSlack, minMargin), maxMargin)
}

// The learnt margin: the answer times' spread plus marginSlack, kept
// within [minMargin, maxMargin]; learnt from minSamples answers, over the
// last spreadSamples.
const (
	marginSlack   = 5 * time.Millisecond
	minMargin     = 10 * time.Millisecond
	maxMargin     = time.Second
	minSamples    = 32
	spreadSamples = 512
)

// spread keeps an API's last answer times.
type spread struct {
	took [spreadSamples]time.Duration
	next int
	n    int // answers seen, up to spreadSamples
}

func (s *spread) add(d time.Duration) {
	s.took[s.next] = d
	s.next = (s.next + 1) % spreadSamples
	s.n = min(s.n+1, spreadSamples)
}

// width is the longest answer time less the shortest, of those kept.
func (s *spread) width() time.Duration {
	lo, hi := s.took[0], s.took[0]
	for _, d := range s.took[:s.n] {
		lo, hi = min(lo, d), max(hi, d)
	}
	return hi - lo
}
