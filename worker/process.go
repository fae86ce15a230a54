package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/messages"
	"provisioner/projects"
	"provisioner/telemetry"
)

// job is one delivery of one message.
type job struct {
	msg       jetstream.Msg
	stream    string // the stream it came from
	seq       uint64 // stream sequence
	delivered uint64 // 1 on the first delivery
	start     time.Time
	log       zerolog.Logger

	ev       *messages.Event // set once decoded
	eventID  string          // the id, when one could be read
	key      string          // idempotency key: the step record's key and the results' id
	tel      *telemetry.Event
	repeated bool // the event already had a result: it was published again

	mu    sync.Mutex
	claim *claim // guarded by mu: set once this delivery holds the record
	hold  *hold  // guarded by mu: set while this delivery holds its project
}

func (j *job) setClaim(c *claim) {
	j.mu.Lock()
	j.claim = c
	j.mu.Unlock()
}

// renewer is a lease the heartbeat keeps alive.
type renewer interface {
	renew(ctx context.Context) error
	what() string // for the log
}

// leases are the leases this delivery holds now.
func (j *job) leases() []renewer {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []renewer
	if j.claim != nil {
		out = append(out, j.claim)
	}
	if j.hold != nil {
		out = append(out, j.hold)
	}
	return out
}

func (j *job) held() *claim {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.claim
}

// process works one message and settles it.
func (w *Worker) process(ctx context.Context, stopping <-chan struct{}, msg jetstream.Msg) {
	j := &job{msg: msg, start: w.cfg.Now(), delivered: 1, stream: w.topo.eventsStream}
	if meta, err := msg.Metadata(); err == nil {
		j.seq, j.delivered, j.stream = meta.Sequence.Stream, meta.NumDelivered, meta.Stream
	}
	j.log = w.log.With().Str("subject", msg.Subject()).Uint64("stream_seq", j.seq).Uint64("delivery", j.delivered).Logger()
	ctx, j.tel = w.cfg.Telemetry.StartEvent(ctx, msg.Subject(), msg.Headers(), msg.Data())
	defer j.tel.End()
	stopBeat := w.heartbeat(ctx, j)
	err := w.work(ctx, stopping, j)
	stopBeat()
	w.settle(ctx, j, err)
}

// heartbeat keeps the message's JetStream lease and the job's leases (its
// step record, its project) alive while the event is worked, however long
// retries take.
func (w *Worker) heartbeat(ctx context.Context, j *job) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := j.msg.InProgress(); err != nil {
					j.log.Warn().Err(err).Str("event_id", j.eventID).Msg("renewing the message's lease")
				}
				for _, l := range j.leases() {
					if err := l.renew(ctx); err != nil && !errors.Is(err, errClaimLost) && !errors.Is(err, projects.ErrLockLost) {
						j.log.Warn().Err(err).Str("event_id", j.eventID).Str("lease", l.what()).Msg("renewing a lease")
					}
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// work decodes the event, claims its step record and applies it to its
// project's group (creates, changes or closes it). Its error decides the
// message's fate in settle.
func (w *Worker) work(ctx context.Context, stopping <-chan struct{}, j *job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			j.log.Error().Str("event_id", j.eventID).Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("worker panicked")
			err = &failure{reason: messages.ReasonInternal, message: "the worker failed on this event; its logs say why", cause: fmt.Errorf("panic: %v", r)}
		}
	}()
	if _, known := w.kinds[j.msg.Subject()]; !known {
		if v := w.newerContract(); v > 0 {
			return leaveToNewer(fmt.Sprintf("subject %q is not one this release (contract %d) knows, and the consumer was configured by contract %d", j.msg.Subject(), messages.Contract, v))
		}
	}
	ev, err := messages.Decode(j.msg.Subject(), w.kinds, j.msg.Data())
	if err != nil {
		var inv *messages.InvalidError
		if !errors.As(err, &inv) {
			return err
		}
		j.eventID = inv.ID
		j.tel.Identify(j.eventID, j.delivered)
		if j.eventID != "" {
			j.key = messages.Key(j.msg.Subject(), inv.ID)
		} else {
			j.key = messages.Key(j.msg.Subject(), "stream-seq:"+strconv.FormatUint(j.seq, 10))
		}
		return invalidFailure(inv)
	}
	j.ev, j.eventID, j.key = ev, ev.ID, messages.Key(ev.Subject, ev.ID)
	j.tel.Identify(j.eventID, j.delivered)

	if ev.Kind.Op() == messages.OpCreate {
		if handled, err := w.createFirst(ctx, stopping, j); handled {
			return err
		}
	}
	if handled, err := w.unwrittenUpdate(ctx, stopping, j); handled {
		return err
	}
	res, err := acquire(ctx, w.topo.kv, j.key, w.freshStep(j), w.cfg.AckWait, w.cfg.Now)
	switch {
	case err != nil:
		return err
	case res.done != nil:
		// Seen before: the same result again, with the same message id.
		return w.republish(ctx, j, res.done)
	case res.heldFor > 0:
		return &retryLater{delay: res.heldFor, why: handBackHeld, reason: "another delivery is working this event"}
	case res.newer > 0:
		return leaveToNewer(fmt.Sprintf("its step record has schema %d, newer than this release's %d", res.newer, recordSchema))
	}
	w.takeClaim(j, res)
	return w.apply(ctx, stopping, j)
}

// takeClaim makes the step record acquire took the job's, saying so when it
// resumes one another delivery left unfinished.
func (w *Worker) takeClaim(j *job, res claimResult) {
	j.setClaim(res.claim)
	if res.tookOver {
		rec := res.claim.snapshot()
		flag(j.log.Info().Str("event_id", j.eventID).Str("step", string(rec.Step)).Str("chatid", rec.ChatID), &rec).
			Msg("resuming an event another delivery left unfinished")
	}
}

// settle is the one place that decides what happens to a message:
// Ack (done), NakWithDelay (retry later), or a group.failed result and Term (give up).
func (w *Worker) settle(ctx context.Context, j *job, err error) {
	log := j.log.With().Str("event_id", j.eventID).Logger()
	// Settling must finish even when the grace period has run out.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()

	var later *retryLater
	var fail *failure
	switch {
	case err == nil:
		w.countDone(j)
		if err := j.msg.Ack(); err != nil {
			log.Warn().Err(err).Msg("ack failed; the event will be redelivered and its result published again")
		}
	case errors.As(err, &later):
		j.tel.HandedBack(later.why.String(), later.reason)
		w.releaseClaim(sctx, j, log, later.paused)
		if err := j.msg.NakWithDelay(later.delay); err != nil {
			log.Warn().Err(err).Msg("handing back failed; JetStream redelivers after the ack wait")
		}
		line := log.Info()
		if later.why == handBackMisconfigured {
			line = log.Debug() // the halt is logged once, not once per event
		}
		line.Dur("retry_in", later.delay).Str("why", later.reason).Msg("event handed back")
	case errors.As(err, &fail):
		if perr := w.fail(sctx, j, fail); perr != nil {
			delay := w.redeliveryDelay(j.delivered)
			log.Error().Err(perr).Dur("retry_in", delay).Msg("could not publish the failure result; will try again")
			w.releaseClaim(sctx, j, log, false)
			j.tel.HandedBack(handBackError.String(), perr.Error())
			_ = j.msg.NakWithDelay(delay)
			return
		}
		j.tel.Failed(fail.reason, fail)
		if err := j.msg.TermWithReason(fail.reason); err != nil {
			log.Warn().Err(err).Msg("terminating the message failed")
		}
		ev := log.Warn()
		if fail.reason == messages.ReasonInternal || fail.reason == messages.ReasonRetriesExhausted {
			ev = log.Error()
		}
		ev.Str("reason", fail.reason).Err(fail).Msg("event failed")
	default:
		delay := w.redeliveryDelay(j.delivered)
		if errors.Is(err, errClaimLost) {
			delay = w.cfg.AckWait
			log.Warn().Msg("another delivery took this event over; it finishes it")
		} else {
			w.releaseClaim(sctx, j, log, false)
			log.Error().Err(err).Dur("retry_in", delay).Msg("event interrupted; will try again")
		}
		j.tel.HandedBack(handBackError.String(), err.Error())
		_ = j.msg.NakWithDelay(delay)
	}
}

// countDone counts a delivery that ended with its result published.
func (w *Worker) countDone(j *job) {
	if j.repeated {
		j.tel.Repeated()
		return
	}
	switch rec := j.held().snapshot(); rec.ResultSubject {
	case w.cfg.UpdatedSubject:
		j.tel.Changed(telemetry.OutcomeUpdated)
	case w.cfg.ClosedSubject:
		j.tel.Changed(telemetry.OutcomeClosed)
	default:
		j.tel.Provisioned(rec.PossibleDuplicate)
	}
}

func (w *Worker) releaseClaim(ctx context.Context, j *job, log zerolog.Logger, freshBudget bool) {
	if c := j.held(); c != nil && c.in != nil {
		if err := w.releaseInRecord(ctx, j, c.in, freshBudget); err != nil {
			log.Warn().Err(err).Msg("letting the project go; its next event waits out the lease")
		}
		return
	}
	if c := j.held(); c != nil && c.mem != nil {
		if err := w.releaseUnwritten(ctx, j, c.mem, freshBudget); err != nil {
			log.Warn().Err(err).Msg("handing the update back; its next delivery waits out the project's lease")
		}
		return
	}
	if err := w.releaseProject(ctx, j, false); err != nil {
		log.Warn().Err(err).Msg("letting the project go; its next event waits out the lease")
	}
	c := j.held()
	if c == nil {
		return
	}
	if err := c.release(ctx, freshBudget); err != nil && !errors.Is(err, errClaimLost) {
		log.Warn().Err(err).Msg("releasing the step record; the next delivery waits out its lease")
	}
}

// fail publishes group.failed (after keeping the original as a dead letter)
// and records it, so the same event yields the same failure again.
func (w *Worker) fail(ctx context.Context, j *job, f *failure) error {
	res := messages.Failed{
		ID: j.key, SourceSubject: j.msg.Subject(), SourceID: j.eventID,
		Error:    f.result(),
		FailedAt: w.cfg.Now().UTC(),
	}
	if j.ev != nil {
		res.SetRef(j.ev)
		res.Metadata = j.ev.Metadata
	}
	if err := w.detachStep(ctx, j); err != nil {
		return err
	}
	c := j.held()
	replays := headerReplays(j.msg)
	if c != nil {
		rec := c.snapshot()
		res.Attempts, res.ChatID, replays = rec.Attempts, rec.ChatID, rec.Replays
	}
	if h := j.projectHold(); h != nil && res.ChatID == "" {
		res.ChatID = h.lock.Record().ChatID // an update's or a close's group
	}
	data, err := encodeJSON(res)
	if err != nil {
		return err
	}
	if err := w.releaseProject(ctx, j, true); err != nil {
		return err
	}
	if err := w.deadLetter(ctx, j.msg, j.stream, j.seq, f); err != nil {
		return err
	}
	w.cfg.Telemetry.DeadLetter(j.msg.Subject(), f.reason)
	if err := w.publish(ctx, w.cfg.FailedSubject, w.resultID(w.cfg.FailedSubject, j.key, replays), data); err != nil {
		return err
	}
	if c != nil {
		err := c.update(ctx, func(r *record) {
			r.Step, r.ResultSubject, r.Result = stepDone, w.cfg.FailedSubject, data
		})
		if err != nil && !errors.Is(err, errClaimLost) {
			return err
		}
	}
	return nil
}

// headerReplays is how many times an operator replayed this event, as the
// replay wrote it on the message; 0 when it never was.
func headerReplays(msg jetstream.Msg) int {
	n, _ := strconv.Atoi(msg.Headers().Get(messages.HeaderReplays))
	return max(n, 0)
}

// msgID is a result's Nats-Msg-Id: one per event and result subject.
func msgID(subject, key string) string { return subject + "-" + key }

// resultID is msgID, told apart for each replay of a failed event, so that
// the failure of a replay is not dropped as a duplicate of the first.
func (w *Worker) resultID(subject, key string, replays int) string {
	if subject == w.cfg.FailedSubject && replays > 0 {
		return msgID(subject, key) + "-replay-" + strconv.Itoa(replays)
	}
	return msgID(subject, key)
}

// redeliveryDelay backs off redeliveries after infrastructure errors:
// exponential in the delivery count, with jitter, capped at MaxBackoff.
func (w *Worker) redeliveryDelay(delivered uint64) time.Duration {
	d := w.cfg.InitialBackoff << min(delivered, 16)
	if d <= 0 || d > w.cfg.MaxBackoff {
		d = w.cfg.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}
