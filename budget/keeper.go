// Package budget keeps what the app may spend at DingTalk, shared by every
// worker through NATS: the month's call count against the quota, and the
// pause that stops all work when the quota runs out (the durable consumer is
// paused in JetStream, so workers started later stay paused too).
package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/internal/kvlease"
	"provisioner/streams"
)

// pauseKey holds the current Pause in the bucket; month counts are under "calls.<month>".
const pauseKey = "pause"

// Options configures a Keeper.
type Options struct {
	Bucket   string // the key-value bucket holding the count and the pause
	Consumer string // the durable consumer the workers share
	Subject  string // an input subject; its stream holds the consumer
	// MonthlyQuota caps the calls the workers together make in a natural
	// month (Asia/Shanghai); 0: no cap of our own.
	MonthlyQuota int
	Storage      jetstream.StorageType
	Replicas     int              // the bucket's, raised to this but never lowered; 0 means 1
	Log          zerolog.Logger   // pauses, resumes and the 80% warning, once each
	Now          func() time.Time // default time.Now
}

// Keeper counts the workers' DingTalk calls and pauses and resumes their
// work. Every worker, and the pause/resume/budget commands, open their own;
// they agree through NATS. Safe for concurrent use.
type Keeper struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	opts Options

	mu       sync.Mutex // held while counting, so reservations are not raced within a process
	month    string     // the month reserved is for
	reserved int        // calls counted in NATS and not yet made
	pause    Pause      // the pause last read
	paused   bool       // whether pause was in force when read
	checked  time.Time  // when the pause was last read
	warned   string     // the month whose 80% warning was logged
}

// Open creates the bucket if needed and returns a Keeper.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Keeper, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MonthlyQuota < 0 {
		return nil, fmt.Errorf("budget: the monthly quota must not be negative, got %d", o.MonthlyQuota)
	}
	e := &streams.Ensurer{JS: js, Replicas: o.Replicas, Log: o.Log}
	kv, err := e.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "DingTalk group provisioner: the month's DingTalk calls and the pause",
		History:     1,
		Storage:     o.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("budget: %w", err)
	}
	return &Keeper{js: js, kv: kv, opts: o}, nil
}

// Spend counts one DingTalk call about to be made. It refuses with a
// *PausedError while work is paused, and when the month's count has reached
// MonthlyQuota (and then pauses work until the next month). Calls are
// counted in NATS in blocks of reserveBlock, reserved ahead, and the pause is
// read at most once per pauseCheck: most calls cost no NATS round trip, and
// none more than three. A count that cannot be written refuses the call (an
// error, not a pause), so the quota is never overrun unseen.
func (k *Keeper) Spend(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.opts.Now()
	if now.Sub(k.checked) >= pauseCheck {
		p, ok, err := k.current(ctx)
		if err != nil {
			return err
		}
		k.pause, k.paused, k.checked = p, ok, now
	}
	if k.paused && now.Before(k.pause.Until) {
		return &PausedError{Pause: k.pause}
	}
	month := Month(now)
	if k.month != month {
		k.month, k.reserved = month, 0
	}
	if k.reserved == 0 {
		n, err := k.reserve(ctx, month)
		if err != nil {
			return err
		}
		if n == 0 {
			q := k.opts.MonthlyQuota
			p := Pause{Reason: ReasonQuotaReached, Since: now, Until: NextMonth(now),
				Detail: fmt.Sprintf("the workers made %d DingTalk calls in %s: DINGTALK_MONTHLY_QUOTA", q, month)}
			if err := k.pauseLocked(ctx, p); err != nil {
				return err
			}
			return &PausedError{Pause: p}
		}
		k.reserved = n
	}
	k.reserved--
	return nil
}

// Unspend gives back one call Spend counted that was not made after all
// (whatever stopped it found it was not needed): the next Spend takes it
// from what this worker reserved. Given back in another month, it is
// dropped.
func (k *Keeper) Unspend() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.month == Month(k.opts.Now()) {
		k.reserved++
	}
}

// Spend's tuning: a crashed worker loses at most reserveBlock-1 counted but
// unmade calls; a pause or resume reaches every worker within pauseCheck.
const (
	reserveBlock = 10
	pauseCheck   = time.Second
)

// reserve adds up to reserveBlock calls to the month's count, no more than
// the quota leaves, and says how many it added (0: the quota is reached).
func (k *Keeper) reserve(ctx context.Context, month string) (int, error) {
	key := "calls." + month
	var take, total int
	_, err := kvlease.Swap(ctx, k.kv, key, 20, nil, func(cur []byte) ([]byte, error) {
		n := 0
		if cur != nil {
			var err error
			if n, err = parseCount(cur); err != nil {
				return nil, err
			}
		}
		take = reserveBlock
		if q := k.opts.MonthlyQuota; q > 0 {
			take = max(0, min(take, q-n))
		}
		if take == 0 {
			return nil, nil
		}
		total = n + take
		return []byte(fmt.Sprint(total)), nil
	})
	if err != nil {
		return 0, fmt.Errorf("budget: counting calls: %w", err)
	}
	if take > 0 {
		k.warn(month, total)
	}
	return take, nil
}

// count reads a month's count (0 when there is none yet).
func (k *Keeper) count(ctx context.Context, key string) (int, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("budget: reading the month's count: %w", err)
	}
	return parseCount(e.Value())
}

// parseCount reads a stored count.
func parseCount(data []byte) (int, error) {
	var n int
	if _, err := fmt.Sscan(string(data), &n); err != nil {
		return 0, fmt.Errorf("budget: the month's count %q is unreadable: %w", data, err)
	}
	return n, nil
}

// warn logs once per month per process when the count passes 80% of the
// quota; k.mu must be held.
func (k *Keeper) warn(month string, n int) {
	q := k.opts.MonthlyQuota
	if q == 0 || n*5 < q*4 || k.warned == month {
		return
	}
	k.warned = month
	k.opts.Log.Warn().Int("calls", n).Int("quota", q).Str("month", month).
		Msg("80% of DINGTALK_MONTHLY_QUOTA spent this month; work pauses when it is reached")
}

// Pause stops every worker taking events until p.Until: the reason is
// recorded in the bucket, then the durable consumer is paused in JetStream.
// A pause already in place that lasts as long is left as it is.
func (k *Keeper) Pause(ctx context.Context, p Pause) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pauseLocked(ctx, p)
}

func (k *Keeper) pauseLocked(ctx context.Context, p Pause) error {
	if cur, ok, err := k.current(ctx); err != nil {
		return err
	} else if ok && !cur.Until.Before(p.Until) {
		k.pause, k.paused, k.checked = cur, true, k.opts.Now()
		return nil
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	if _, err := k.kv.Put(ctx, pauseKey, data); err != nil {
		return fmt.Errorf("budget: recording the pause: %w", err)
	}
	k.pause, k.paused, k.checked = p, true, k.opts.Now()
	stream, err := k.js.StreamNameBySubject(ctx, k.opts.Subject)
	if err != nil {
		return fmt.Errorf("budget: finding the stream of %q: %w", k.opts.Subject, err)
	}
	if _, err := k.js.PauseConsumer(ctx, stream, k.opts.Consumer, p.Until); err != nil {
		return fmt.Errorf("budget: pausing consumer %q: %w", k.opts.Consumer, err)
	}
	k.opts.Log.Warn().Str("reason", p.Reason).Str("detail", p.Detail).Time("until", p.Until).
		Msg("work paused: no worker takes events until then, or until provisioner resume")
	return nil
}

// Resume lets the workers take events again at once.
func (k *Keeper) Resume(ctx context.Context) error {
	stream, err := k.js.StreamNameBySubject(ctx, k.opts.Subject)
	if err != nil {
		return fmt.Errorf("budget: finding the stream of %q: %w", k.opts.Subject, err)
	}
	if _, err := k.js.ResumeConsumer(ctx, stream, k.opts.Consumer); err != nil {
		return fmt.Errorf("budget: resuming consumer %q: %w", k.opts.Consumer, err)
	}
	if err := k.kv.Delete(ctx, pauseKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("budget: clearing the pause: %w", err)
	}
	k.mu.Lock()
	k.paused, k.checked = false, k.opts.Now()
	k.mu.Unlock()
	k.opts.Log.Info().Msg("work resumed")
	return nil
}

// current is the pause in force, if any (one that has run out is not).
func (k *Keeper) current(ctx context.Context) (Pause, bool, error) {
	e, err := k.kv.Get(ctx, pauseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Pause{}, false, nil
	}
	if err != nil {
		return Pause{}, false, fmt.Errorf("budget: reading the pause: %w", err)
	}
	var p Pause
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return Pause{}, false, fmt.Errorf("budget: the pause record is unreadable: %w", err)
	}
	return p, k.opts.Now().Before(p.Until), nil
}

// Status is what provisioner budget shows.
type Status struct {
	Month        string `json:"month"`
	Calls        int    `json:"calls"`         // DingTalk calls the workers made this month, and reserved (up to 10 a worker)
	MonthlyQuota int    `json:"monthly_quota"` // 0: no cap of our own
	Paused       *Pause `json:"paused,omitempty"`
	// ConsumerPaused is JetStream's own view; it can differ from Paused
	// only while a pause or resume is half done.
	ConsumerPaused bool `json:"consumer_paused"`
}

// Status reads the month's count and the pause.
func (k *Keeper) Status(ctx context.Context) (Status, error) {
	month := Month(k.opts.Now())
	n, err := k.count(ctx, "calls."+month)
	if err != nil {
		return Status{}, err
	}
	st := Status{Month: month, Calls: n, MonthlyQuota: k.opts.MonthlyQuota}
	if p, ok, err := k.current(ctx); err != nil {
		return Status{}, err
	} else if ok {
		st.Paused = &p
	}
	stream, err := k.js.StreamNameBySubject(ctx, k.opts.Subject)
	if err != nil {
		return Status{}, fmt.Errorf("budget: finding the stream of %q: %w", k.opts.Subject, err)
	}
	c, err := k.js.Consumer(ctx, stream, k.opts.Consumer)
	if err != nil {
		return Status{}, fmt.Errorf("budget: consumer %q: %w", k.opts.Consumer, err)
	}
	st.ConsumerPaused = c.CachedInfo().Paused
	return st, nil
}
