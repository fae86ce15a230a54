package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"provisioner/batch"
)

// batchProgress shows a batch's progress on stderr: a bar redrawn in place
// on a terminal, otherwise a JSON line every few seconds; and a last one
// when it stops.
type batchProgress struct {
	w       io.Writer
	tty     bool
	log     zerolog.Logger
	t       *batch.Tracker
	stopped chan struct{} // closed when the last report is out
	quit    chan struct{}
	once    sync.Once

	mu         sync.Mutex // guards what follows
	phase      string
	read, scan uint64 // events read of those in the stream, while finding published rows
	before     int    // rows whose events an earlier run published
	fresh      int    // rows this run publishes
	sent       int    // of which the stream has stored
	since      time.Time
	sinceDone  int // rows with a result when waiting began
}

func newBatchProgress(w io.Writer, t *batch.Tracker, file string, every time.Duration) *batchProgress {
	p := &batchProgress{w: w, tty: isTerminal(w), t: t, stopped: make(chan struct{}), quit: make(chan struct{}), phase: "starting",
		log: zerolog.New(w).With().Timestamp().Str("service", "provisioner").Str("command", "batch").Str("file", file).Logger()}
	if p.tty {
		every = 200 * time.Millisecond
	}
	go p.loop(every)
	return p
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *batchProgress) loop(every time.Duration) {
	defer close(p.stopped)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			p.report(false)
		case <-p.quit:
			p.report(true)
			return
		}
	}
}

// stop prints the last report and returns once it is out. It may be called
// more than once.
func (p *batchProgress) stop() {
	p.once.Do(func() { close(p.quit) })
	<-p.stopped
}

func (p *batchProgress) setPhase(phase string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase = phase
	if phase == "waiting for results" {
		c := p.t.Counts()
		p.since, p.sinceDone = time.Now(), c.Provisioned+c.Updated+c.Failed
	}
}

func (p *batchProgress) scanned(read, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.read, p.scan = read, total
}

func (p *batchProgress) publishing(before, fresh int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.before, p.fresh = "publishing", before, fresh
}

func (p *batchProgress) published() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
}

// report prints the state of the batch once.
func (p *batchProgress) report(final bool) {
	c := p.t.Counts()
	p.mu.Lock()
	defer p.mu.Unlock()
	var rate float64
	var eta time.Duration
	if !p.since.IsZero() {
		if elapsed := time.Since(p.since); elapsed > time.Second {
			rate = float64(c.Provisioned+c.Updated+c.Failed-p.sinceDone) / elapsed.Seconds()
		}
		if rate > 0 {
			eta = time.Duration(float64(c.Pending) / rate * float64(time.Second)).Round(time.Second)
		}
	}
	if !p.tty {
		e := p.log.Info().Str("phase", p.phase).Int("rows", c.Rows).Int("provisioned", c.Provisioned).Int("updated", c.Updated).
			Int("failed", c.Failed).Int("invalid", c.Invalid).Int("pending", c.Pending).
			Int("published", p.sent).Int("to_publish", p.fresh).Int("published_before", p.before).
			Float64("results_per_s", math.Round(rate*10)/10)
		if eta > 0 {
			e = e.Float64("eta_s", eta.Seconds())
		}
		if p.phase == "finding published rows" {
			e = e.Uint64("events_read", p.read).Uint64("events_in_stream", p.scan)
		}
		e.Bool("final", final).Msg("batch progress")
		return
	}
	const width = 24
	filled := 0
	if c.Rows > 0 {
		filled = width * (c.Rows - c.Pending) / c.Rows
	}
	line := fmt.Sprintf("[%s%s] %d/%d  provisioned %d  updated %d  failed %d  invalid %d  pending %d",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), c.Rows-c.Pending, c.Rows, c.Provisioned, c.Updated, c.Failed, c.Invalid, c.Pending)
	switch {
	case p.phase == "publishing":
		line += fmt.Sprintf("  publishing %d/%d", p.sent, p.fresh)
	case p.phase == "finding published rows":
		line += fmt.Sprintf("  reading events %d/%d", p.read, p.scan)
	case rate > 0:
		line += fmt.Sprintf("  %.1f/s  ETA %v", rate, eta)
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r\033[K%s%s", line, end)
}
