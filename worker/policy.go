package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"provisioner/budget"
	"provisioner/dingtalk"
	"provisioner/messages"
)

// call runs one DingTalk step, retrying transient failures with exponential
// backoff and jitter until the event's retry budget (counted from its first
// attempt, across deliveries) runs out. A permanent refusal is a failure at
// once. Shutdown during a backoff wait hands the event back. An error that
// did not come from DingTalk (the step record could not be written) is
// returned as it is: settle hands the event back.
func (w *Worker) call(ctx context.Context, stopping <-chan struct{}, j *job, what string, fn func(context.Context) error) error {
	c := j.held()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.InitialBackoff),
		backoff.WithMaxInterval(w.cfg.MaxBackoff),
		backoff.WithMaxElapsedTime(0), // the budget below spans deliveries; backoff's own clock would not
	)
	deadline := c.snapshot().FirstAttemptAt.Add(w.cfg.RetryBudget)
	ctx = dingtalk.WithBeforeSend(ctx, w.spend) // outermost: a call the budget refuses is never on the wire
	if w.pacer != nil {
		ctx = dingtalk.WithAnswered(ctx, w.pacer.Observe) // the window's margin follows how much answers vary
	}
	var sent string // the last API called, for the halt
	ctx = dingtalk.WithBeforeSend(ctx, func(_ context.Context, api string) error { sent = api; return nil })
	for {
		err := fn(ctx)
		var de *dingtalk.Error
		var paused *budget.PausedError
		fromDingTalk := errors.As(err, &de)
		if w.pacer != nil && fromDingTalk && de.Class == dingtalk.RateLimited {
			// Not the event's fault: neither an attempt nor a backoff step
			// nor its retry budget; the next try waits for the hold.
			w.holdForEveryone(ctx, j, de)
			continue
		}
		if err == nil || fromDingTalk {
			c.addAttempts(1)
		}
		switch {
		case err == nil:
			if was, ok := w.halt.resume(sent); ok {
				w.log.Info().Str("reason", was.Reason).Dur("halted_for", w.cfg.Now().Sub(was.Since)).
					Msg("DingTalk accepts this worker's configuration again: taking events")
			}
			return nil
		case ctx.Err() != nil:
			return &retryLater{why: handBackInterrupted, reason: "interrupted at the end of the shutdown grace period"}
		case errors.As(err, &paused):
			return w.handBackPaused(paused.Pause)
		case !fromDingTalk:
			return err
		}
		said := strings.TrimPrefix(err.Error(), "dingtalk: ")
		switch de.Class {
		case dingtalk.QuotaExhausted:
			now := w.cfg.Now()
			p := budget.Pause{Reason: budget.ReasonQuotaExhausted, Since: now, Until: budget.NextMonth(now),
				Detail: "DingTalk refused to " + what + ": " + said}
			if err := w.budget.Pause(ctx, p); err != nil {
				return err
			}
			return w.handBackPaused(p)
		case dingtalk.Misconfigured:
			return w.haltFor(j, de)
		case dingtalk.Permanent:
			return &failure{reason: messages.ReasonDingTalkRejected, dingtalk: de, cause: err,
				message: fmt.Sprintf("DingTalk refused to %s: %s", what, said)}
		}
		delay := b.NextBackOff()
		if de.RetryAfter > delay {
			delay = de.RetryAfter
		}
		if w.cfg.Now().Add(delay).After(deadline) {
			return &failure{reason: messages.ReasonRetriesExhausted, dingtalk: de, cause: err,
				message: fmt.Sprintf("DingTalk kept failing to %s for the whole retry budget of %v (%d calls); last error: %s",
					what, w.cfg.RetryBudget, c.snapshot().Attempts, said)}
		}
		j.log.Debug().Str("event_id", j.eventID).Str("class", de.Class.String()).Err(err).Dur("retry_in", delay).Msg("DingTalk call failed; retrying")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stopping:
			t.Stop()
			return &retryLater{delay: delay, why: handBackStopping, reason: "shutting down while waiting to retry"}
		case <-ctx.Done():
			t.Stop()
			return &retryLater{why: handBackInterrupted, reason: "interrupted at the end of the shutdown grace period"}
		}
	}
}

// haltFor answers a refusal of this worker's configuration: the worker
// stops taking events (logged once, not once per event) and the event goes
// back unfailed, for a worker configured correctly to take at once.
func (w *Worker) haltFor(j *job, de *dingtalk.Error) *retryLater {
	if w.halt.stop(de, w.cfg.Now(), w.cfg.ProbeInterval) {
		h, _ := w.halt.status()
		j.log.Error().Str("event_id", j.eventID).Str("reason", h.Reason).Str("dingtalk", h.Detail).Dur("retry_every", w.cfg.ProbeInterval).
			Msg("DingTalk refused this worker's configuration: it takes no events until that is mended (it tries again with one event now and then); the event is handed back, not failed")
	}
	return &retryLater{delay: time.Second, paused: true, why: handBackMisconfigured, reason: "DingTalk refused this worker's configuration (" + de.Misconfiguration() + ")"}
}

// handBackPaused hands an event back while work is paused: JetStream holds
// it until the pause ends (or an operator resumes), and its retry budget
// starts again then. The delay is short so that a resume takes effect soon.
func (w *Worker) handBackPaused(p budget.Pause) *retryLater {
	delay := min(max(p.Until.Sub(w.cfg.Now()), time.Second), w.cfg.AckWait)
	return &retryLater{delay: delay, paused: true, why: handBackPaused, reason: "work is paused: " + p.String()}
}

// holdForEveryone answers a rate-limit answer: the whole app is over
// DingTalk's limit, so the API (every API, for an IP ban) is held for every
// worker until the penalty ends.
func (w *Worker) holdForEveryone(ctx context.Context, j *job, de *dingtalk.Error) {
	until := budget.PenaltyEnd(w.cfg.Now(), de.RetryAfter, budget.DefaultMargin)
	api := de.API
	if de.IPBanned {
		api = budget.AllAPIs
		j.log.Warn().Str("event_id", j.eventID).Err(de).Time("until", until).Msg("DingTalk banned the calling IP: every worker's calls wait")
	}
	if err := w.pacer.Hold(ctx, api, until); err != nil {
		j.log.Debug().Str("event_id", j.eventID).Err(err).Msg("could not tell the other workers about a rate-limit answer")
	}
}

// spend runs before each DingTalk request leaves: the month's quota first
// (a paused or spent budget refuses at once), then this worker's share of
// the app's per-second budget.
func (w *Worker) spend(ctx context.Context, api string) error {
	start := w.cfg.Now()
	defer func() { w.cfg.Telemetry.BudgetWait(api, w.cfg.Now().Sub(start)) }()
	if err := w.budget.Spend(ctx); err != nil {
		return err
	}
	if w.pacer == nil {
		return nil
	}
	return w.pacer.Wait(ctx, api)
}
