package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/streams"
)

// The pacer's timing. DefaultMargin is added to the one-second window to
// cover the spread of the network's latency (DingTalk counts arrivals, the
// pacer releases): 40 ms keeps the workers at 96% of the budget.
const (
	DefaultMargin = 40 * time.Millisecond
	refreshEvery  = time.Second     // each worker says it is alive, and publishes its figures
	memberTTL     = 3 * time.Second // a worker not heard for this long is gone
	// raiseDelay is how long a larger share waits before it is used, so that
	// every other worker has seen the change and lowered its own (lowering
	// is immediate) and its window has passed.
	raiseDelay = 1200 * time.Millisecond
)

// PacerOptions configures a Pacer.
type PacerOptions struct {
	Bucket string // a bucket of its own for members and holds; created with a short max age
	ID     string // this worker; unique among the workers
	// Limit is the app's calls per second per API (DingTalk's standard
	// edition: 20), shared by every worker using the bucket.
	Limit int
	// Margin is added to the one-second window until the answer times of an
	// API (Observe) say how much its calls' arrivals vary; default DefaultMargin.
	Margin   time.Duration
	Storage  jetstream.StorageType
	Replicas int
	Log      zerolog.Logger
	Now      func() time.Time // default time.Now
}

// Pacer spends the app's per-second budget of each DingTalk API together
// with every other worker: the live workers divide Limit between them (by
// rank, so the shares add up to Limit), each keeps its calls to its share in
// every window of a second plus Margin, and a rate-limit answer holds the API
// for all of them. Membership and holds travel through a key-value bucket:
// one write a second per worker, and a watch. Safe for concurrent use.
type Pacer struct {
	o  PacerOptions
	kv jetstream.KeyValue
	js jetstream.JetStream
	w  time.Duration // the window: a second plus Margin

	mu       sync.Mutex
	apis     map[string]*window
	spreads  map[string]*spread   // per API: recent answer times (Observe)
	holds    map[string]time.Time // per API: no call before this
	members  map[string]time.Time // worker id → when last heard (local clock)
	records  map[string]member    // worker id → what it last published
	seen     []string             // the live workers, this one among them, sorted, as reshare last found them
	gone     time.Time            // when a worker last left or expired (local clock)
	pub      member               // what this worker last published
	share    int                  // calls per window per API this worker may make now
	pending  int                  // a larger share waiting for raiseDelay
	since    time.Time            // when pending was first computed
	lastOK   time.Time            // the last successful refresh
	degraded bool                 // refreshes failing: a safe local share is in force
	changed  chan struct{}        // closed when share or holds change
	soloRev  uint64               // the revision of the solo claim this worker holds; 0: none

	stop context.CancelFunc
	done chan struct{}
}

// StartPacer joins the workers sharing o.Bucket. A worker that finds no
// other takes the whole limit at once (see startAlone); otherwise its share
// starts at 0 and rises once the others have made room. Stop leaves.
func StartPacer(ctx context.Context, js jetstream.JetStream, o PacerOptions) (*Pacer, error) {
	if o.Limit < 1 {
		return nil, fmt.Errorf("budget: the per-second limit must be at least 1, got %d", o.Limit)
	}
	if o.ID == "" || strings.ContainsAny(o.ID, ".*> ") {
		return nil, fmt.Errorf("budget: worker id %q must be non-empty without dots, wildcards or spaces", o.ID)
	}
	if o.Margin == 0 {
		o.Margin = DefaultMargin
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &streams.Ensurer{JS: js, Replicas: o.Replicas, Log: o.Log}
	kv, err := e.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "DingTalk group provisioner: the workers sharing the per-second budget, and rate-limit holds",
		History:     1,
		TTL:         time.Minute,
		Storage:     o.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("budget: %w", err)
	}
	p := &Pacer{o: o, kv: kv, js: js, w: time.Second + o.Margin, apis: map[string]*window{}, spreads: map[string]*spread{}, holds: map[string]time.Time{},
		members: map[string]time.Time{}, records: map[string]member{}, seen: []string{o.ID}, changed: make(chan struct{}), done: make(chan struct{})}
	if err := p.refresh(ctx); err != nil {
		return nil, err
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("budget: watching %q: %w", o.Bucket, err)
	}
	p.startAlone(ctx, watch)
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stop = stop
	go p.run(runCtx, watch)
	return p, nil
}

// Stop leaves: the other workers take over this one's share after raiseDelay.
func (p *Pacer) Stop(ctx context.Context) {
	p.stop()
	<-p.done
	if err := p.kv.Delete(ctx, "members."+p.o.ID); err != nil {
		p.o.Log.Warn().Err(err).Msg("leaving the shared DingTalk budget; the others take over this share when it expires")
	}
	if p.soloRev != 0 { // a claim another has not taken over since
		_ = p.kv.Delete(ctx, soloKey, jetstream.LastRevision(p.soloRev))
	}
}

// soloKey is claimed (created, first writer wins) by a worker that starts
// and finds no other. Of two workers starting together the later one finds
// the earlier one's member key (each writes its own before it looks, and it
// looks in the stream itself as well as the watch: see unseen), so at most
// one finds itself alone; the claim guards that should a look ever miss a
// key, two still cannot both take the whole limit.
const soloKey = "solo"

// startWait bounds how long a starting worker reads the members already
// there before it decides whether it is alone (then the slow start).
const startWait = 2 * time.Second

// leftRecently: a worker that left (Stop deletes its key) less than this
// ago may have calls in DingTalk's last second; a worker starting then
// takes the slow start. Generous, for the clocks of the server (which dates
// the deletion) and of this host.
const leftRecently = 5 * time.Second

// startAlone reads the members already in the bucket (the watch's initial
// values) and, when none is another live worker, takes the whole limit at
// once instead of after raiseDelay, provided no worker left a moment ago
// and it wins the solo claim. A
// claim whose holder is not live is taken over (by revision). Any doubt
// (the initial values not read in time, a claim held by a live worker, a
// request failing) leaves the slow start, which is safe.
func (p *Pacer) startAlone(ctx context.Context, watch jetstream.KeyWatcher) {
	timer := time.NewTimer(startWait)
	defer timer.Stop()
	left := false // a worker left a moment ago: its last calls may still count at DingTalk
	for done := false; !done; {
		select {
		case e, ok := <-watch.Updates():
			switch {
			case !ok:
				return
			case e == nil: // the initial values are all in
				done = true
			default:
				p.heard(e)
				if e.Operation() != jetstream.KeyValuePut && strings.HasPrefix(e.Key(), "members.") && p.o.Now().Sub(e.Created()) < leftRecently {
					left = true
				}
			}
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
	if left || p.others() > 0 {
		return
	}
	if others, err := p.unseen(ctx, []string{p.o.ID}); err != nil || others {
		return
	}
	rev, err := p.kv.Create(ctx, soloKey, []byte(p.o.ID))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := p.kv.Get(ctx, soloKey)
		if gerr != nil || p.live(string(e.Value())) { // (unseen already found no other live worker)
			return
		}
		rev, err = p.kv.Update(ctx, soloKey, []byte(p.o.ID), e.Revision())
	}
	if err != nil {
		return
	}
	p.mu.Lock()
	p.soloRev, p.share, p.pending = rev, p.o.Limit, 0
	p.wake()
	p.mu.Unlock()
	p.o.Log.Info().Int("workers", 1).Int("share", p.o.Limit).Int("limit", p.o.Limit).Dur("window", p.w).
		Msg("this worker's share of the DingTalk per-second budget changed: alone, it takes the whole limit at once")
	if err := p.refresh(ctx); err != nil {
		p.o.Log.Debug().Err(err).Msg("publishing this worker's share")
	}
}

// others is how many other workers are live.
func (p *Pacer) others() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, now := 0, p.o.Now()
	for id, heard := range p.members {
		if id != p.o.ID && now.Sub(heard) < memberTTL {
			n++
		}
	}
	return n
}

// live says whether worker id is live, as this one knows.
func (p *Pacer) live(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	heard, ok := p.members[id]
	return ok && p.o.Now().Sub(heard) < memberTTL
}

// refresh says this worker is alive, with its figures.
func (p *Pacer) refresh(ctx context.Context) error {
	p.mu.Lock()
	m := member{Share: p.share, Calls: map[string]int{}, Seen: slices.Clone(p.seen)}
	now := p.o.Now()
	for api, win := range p.apis {
		m.Calls[api] = win.count(now, time.Second)
	}
	m.Recent = p.recent(now)
	p.mu.Unlock()
	data, _ := json.Marshal(m)
	if _, err := p.kv.Put(ctx, "members."+p.o.ID, data); err != nil {
		return fmt.Errorf("budget: joining the shared DingTalk budget: %w", err)
	}
	p.mu.Lock()
	p.lastOK, p.pub = p.o.Now(), m
	p.mu.Unlock()
	return nil
}

func (p *Pacer) run(ctx context.Context, watch jetstream.KeyWatcher) {
	defer close(p.done)
	defer func() {
		if watch != nil {
			_ = watch.Stop()
		}
	}()
	tick := time.NewTicker(refreshEvery / 4)
	defer tick.Stop()
	lastRefresh := p.o.Now()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if watch != nil {
			updates = watch.Updates()
		}
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			switch {
			case !ok: // the watch ended (the connection closed): the ticks try again
				watch = nil
			case e != nil:
				p.heard(e)
			}
		case <-tick.C:
			if p.o.Now().Sub(lastRefresh) >= refreshEvery {
				lastRefresh = p.o.Now()
				watch = p.tend(ctx, watch)
			}
		}
		publish, fast := p.reshare()
		if fast != nil {
			if others, err := p.unseen(ctx, fast); err == nil && !others {
				publish = p.raiseFast(fast) || publish
			}
		}
		if publish {
			lastRefresh = p.o.Now()
			watch = p.tend(ctx, watch)
		}
	}
}

// tend refreshes this worker's key, and watches again if the watch ended.
func (p *Pacer) tend(ctx context.Context, watch jetstream.KeyWatcher) jetstream.KeyWatcher {
	rctx, cancel := context.WithTimeout(ctx, refreshEvery)
	defer cancel()
	if err := p.refresh(rctx); err != nil {
		if ctx.Err() == nil {
			p.o.Log.Debug().Err(err).Msg("refreshing this worker's place in the shared DingTalk budget")
		}
		return watch
	}
	if watch == nil {
		w, err := p.kv.WatchAll(ctx)
		if err != nil {
			return nil
		}
		return w
	}
	return watch
}

// heard takes in one change from the bucket.
func (p *Pacer) heard(e jetstream.KeyValueEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gone := e.Operation() != jetstream.KeyValuePut
	switch key := e.Key(); {
	case strings.HasPrefix(key, "members."):
		id := strings.TrimPrefix(key, "members.")
		if gone {
			delete(p.members, id)
			delete(p.records, id)
		} else {
			p.members[id] = p.o.Now()
			var m member
			if json.Unmarshal(e.Value(), &m) == nil {
				p.records[id] = m
			} else {
				delete(p.records, id)
			}
		}
	case strings.HasPrefix(key, "hold.") && !gone:
		var until time.Time
		if err := until.UnmarshalText(e.Value()); err == nil {
			p.holdLocked(strings.TrimPrefix(key, "hold."), until)
		}
	}
}

// wake tells waiting callers that the share or a hold changed; p.mu held.
func (p *Pacer) wake() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Wait blocks until this worker may send one call to api, and counts it.
func (p *Pacer) Wait(ctx context.Context, api string) error {
	for {
		p.mu.Lock()
		now := p.o.Now()
		win, ok := p.apis[api]
		if !ok {
			win = &window{}
			p.apis[api] = win
		}
		at := p.holds[api]
		if all := p.holds[AllAPIs]; all.After(at) {
			at = all
		}
		if !at.After(now) {
			at = win.next(now, p.window(api), p.share)
		}
		if !at.IsZero() && !at.After(now) {
			win.sent = append(win.sent, now)
			p.mu.Unlock()
			return nil
		}
		changed := p.changed
		p.mu.Unlock()
		if err := sleep(ctx, at, now, changed); err != nil {
			return err
		}
	}
}

// Changed is closed when this worker's share or a hold next changes.
func (p *Pacer) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// sleep waits until at (for ever if it is zero), a change, or ctx's end.
func sleep(ctx context.Context, at, now time.Time, changed <-chan struct{}) error {
	var timer <-chan time.Time
	if !at.IsZero() {
		t := time.NewTimer(at.Sub(now))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
	case <-changed:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// AllAPIs held stops every call: what an IP ban asks for. (Not "*": a
// key-value key cannot hold a wildcard.)
const AllAPIs = "_all"

// Hold stops every worker's calls to api (AllAPIs: to any API) until until
// (DingTalk's penalty for a rate-limit answer or an IP ban): here at once,
// elsewhere as soon as they see it.
func (p *Pacer) Hold(ctx context.Context, api string, until time.Time) error {
	p.mu.Lock()
	p.holdLocked(api, until)
	p.mu.Unlock()
	data, _ := until.MarshalText()
	if _, err := p.kv.Put(ctx, "hold."+api, data); err != nil {
		return fmt.Errorf("budget: holding %s for every worker: %w", api, err)
	}
	return nil
}

func (p *Pacer) holdLocked(api string, until time.Time) {
	if until.After(p.holds[api]) {
		p.holds[api] = until
		p.wake()
	}
}

// PenaltyEnd is when a rate-limit answer's penalty is over: what the answer
// named, or else the start of the next second (DingTalk's docs: wait a second
// and retry; its counting windows are probably wall-clock seconds), plus margin.
func PenaltyEnd(now time.Time, named time.Duration, margin time.Duration) time.Time {
	end := now.Truncate(time.Second).Add(time.Second)
	if named > 0 && now.Add(named).After(end) {
		end = now.Add(named)
	}
	return end.Add(margin)
}

// PacerStatus is one worker's view of the shared per-second budget.
type PacerStatus struct {
	Workers  int                  // live workers sharing the budget
	Share    int                  // this worker's calls per window per API
	Window   time.Duration        // a second plus the margin (the largest of the APIs')
	Degraded bool                 // NATS unreachable: a safe local share in force
	Holds    map[string]time.Time // APIs held by a rate-limit answer, until when
	Used     map[string]int       // per API: calls this worker released in the last second
}

// Share is this worker's share of the per-second budget now: Status's
// Share, without the rest (the pull loop reads it for every event). Safe
// for concurrent use.
func (p *Pacer) Share() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.share
}

// Status says how the budget is shared now, as this worker sees it.
func (p *Pacer) Status() PacerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.Now()
	st := PacerStatus{Workers: 1, Share: p.share, Window: p.w, Degraded: p.degraded,
		Holds: map[string]time.Time{}, Used: make(map[string]int, len(p.apis))}
	for api, win := range p.apis {
		st.Used[api] = win.count(now, time.Second)
		st.Window = max(st.Window, p.window(api))
	}
	for id, heard := range p.members {
		if id != p.o.ID && now.Sub(heard) < memberTTL {
			st.Workers++
		}
	}
	for api, until := range p.holds {
		if until.After(now) {
			st.Holds[api] = until
		}
	}
	return st
}
