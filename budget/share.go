package budget

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reshare recomputes this worker's share from the live workers: lowered at
// once, raised after raiseDelay. While refreshes fail, it keeps to a share
// that leaves room for one more worker it cannot see. It says whether this
// worker should publish its figures now (the others' fast raises wait on
// them) and, when fastRaise would allow a raise at once, the live workers
// it was reckoned among: the caller confirms (unseen) and applies it
// (raiseFast).
func (p *Pacer) reshare() (publish bool, fast []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.Now()
	live := []string{p.o.ID}
	for id, heard := range p.members {
		if id != p.o.ID && now.Sub(heard) < memberTTL {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	for _, id := range p.seen {
		if !slices.Contains(live, id) {
			p.gone = now
		}
	}
	p.seen = live
	p.degraded = now.Sub(p.lastOK) >= memberTTL
	target := p.target()
	old := p.share
	switch {
	case target < p.share:
		p.share, p.pending = target, 0
	case target == p.share:
		p.pending = 0
	case target != p.pending:
		p.pending, p.since = target, now
	case now.Sub(p.since) >= raiseDelay:
		p.share, p.pending = target, 0
	}
	if target > p.share && p.fastRaise(now) {
		fast = live // the slow raise goes on, should the fast one not be confirmed
	}
	if p.share != old {
		p.changedShare("")
	}
	return p.share != p.pub.Share || !slices.Equal(p.seen, p.pub.Seen) ||
		(p.pub.Recent > p.share && p.recent(now) <= p.share), fast
}

// target is this worker's share among p.seen: by rank, or while refreshes
// fail one that leaves room for a worker it cannot see; p.mu held.
func (p *Pacer) target() int {
	n, l := len(p.seen), p.o.Limit
	target := shareOf(l, p.seen, p.o.ID)
	if p.degraded {
		target = min(target, max(1, l/(n+1)))
	}
	return target
}

// changedShare wakes the callers waiting and logs the new share; p.mu held.
func (p *Pacer) changedShare(how string) {
	p.wake()
	msg := "this worker's share of the DingTalk per-second budget changed"
	if how != "" {
		msg += ": " + how
	}
	p.o.Log.Info().Int("workers", len(p.seen)).Int("share", p.share).Int("limit", p.o.Limit).Dur("window", p.w).
		Bool("degraded", p.degraded).Msg(msg)
}

// raiseFast raises this worker's share to its target at once, if the live
// workers are still those it was confirmed among and fastRaise still
// allows it. It says whether the share changed.
func (p *Pacer) raiseFast(live []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	target := p.target()
	if !slices.Equal(p.seen, live) || target <= p.share || !p.fastRaise(p.o.Now()) {
		return false
	}
	p.share, p.pending = target, 0
	p.changedShare("every other worker published it is within its own")
	return true
}

// unseen says whether the bucket holds a live worker other than those
// given, by asking the bucket's stream which member keys it holds and
// reading each key not given, rather than trusting the watch: a watch's
// initial values can end before a key rewritten during them arrives.
func (p *Pacer) unseen(ctx context.Context, known []string) (bool, error) {
	stream, err := p.js.Stream(ctx, "KV_"+p.o.Bucket)
	if err != nil {
		return false, fmt.Errorf("budget: %w", err)
	}
	prefix := "$KV." + p.o.Bucket + ".members."
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return false, fmt.Errorf("budget: listing the workers in %q: %w", p.o.Bucket, err)
	}
	for subject := range info.State.Subjects {
		id := strings.TrimPrefix(subject, prefix)
		if slices.Contains(known, id) {
			continue
		}
		e, err := p.kv.Get(ctx, "members."+id)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			continue // left
		case err != nil:
			return false, fmt.Errorf("budget: reading worker %s in %q: %w", id, p.o.Bucket, err)
		case p.o.Now().Sub(e.Created()) < memberTTL:
			return true, nil
		}
	}
	return false, nil
}

// shareOf is worker id's share of limit among the live workers (sorted):
// by rank, so that the shares add up to limit.
func shareOf(limit int, live []string, id string) int {
	n := len(live)
	share := limit / n
	if slices.Index(live, id) < limit%n {
		share++
	}
	return share
}

// fastRaise says whether this worker may raise its share to what the live
// workers (p.seen) give it without waiting raiseDelay; p.mu held. It may
// when there are other workers (alone, it takes the whole limit at once
// only by the solo claim) and every other live worker last published, for
// exactly these workers, a share and a count of calls in its window
// (Recent) both within its own share among them: such a worker releases no
// more than that share in any window from then on (its calls before count
// in the same windows), so the
// shares, adding up to the limit, bound every window. Not while refreshes
// fail, nor within raiseDelay of a worker leaving, whose last calls no one
// has published.
func (p *Pacer) fastRaise(now time.Time) bool {
	if len(p.seen) < 2 || p.degraded || (!p.gone.IsZero() && now.Sub(p.gone) < raiseDelay) {
		return false
	}
	for _, id := range p.seen {
		if id == p.o.ID {
			continue
		}
		r, ok := p.records[id]
		share := shareOf(p.o.Limit, p.seen, id)
		if !ok || !slices.Equal(r.Seen, p.seen) || r.Share > share || r.Recent > share {
			return false
		}
	}
	return true
}

// recent is the most calls this worker released to one API in that API's
// window up to now; p.mu held.
func (p *Pacer) recent(now time.Time) int {
	k := 0
	for api, win := range p.apis {
		k = max(k, win.count(now, p.window(api)))
	}
	return k
}
