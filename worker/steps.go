package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"provisioner/dingtalk"
	"provisioner/messages"
)

// provision runs the steps this event still lacks, recording each before the
// next: create (with the first 40 members) → add the rest in batches of 40 →
// fetch the join link → publish the result. A resumed event skips what its
// record already holds, so chat/create is never sent for an event with a chatid.
func (w *Worker) provision(ctx context.Context, stopping <-chan struct{}, j *job) error {
	ev, c := j.ev, j.held()
	if rec := c.snapshot(); rec.ChatID == "" {
		first := ev.Members[:min(len(ev.Members), dingtalk.MaxUsersPerCall)]
		req := &dingtalk.CreateChatRequest{Name: ev.Name, Owner: ev.Owner, UserIDs: first, ChatSettings: ev.Group}
		var chat *dingtalk.CreatedChat
		err := w.call(ctx, stopping, j, "create the group", func(ctx context.Context) (err error) {
			chat, err = w.chats.CreateChat(ctx, req)
			return err
		})
		if err != nil {
			return err
		}
		err = c.update(ctx, func(r *record) {
			r.Step, r.ChatID, r.OpenConversationID, r.Added = stepCreated, chat.ChatID, chat.OpenConversationID, len(first)
		})
		if err != nil {
			return err
		}
	}
	for rec := c.snapshot(); rec.Added < len(ev.Members); rec = c.snapshot() {
		batch := ev.Members[rec.Added:min(len(ev.Members), rec.Added+dingtalk.MaxUsersPerCall)]
		req := &dingtalk.UpdateChatRequest{ChatID: rec.ChatID, AddUserIDs: batch}
		err := w.call(ctx, stopping, j, "add members", func(ctx context.Context) error {
			return w.chats.UpdateChat(ctx, req)
		})
		if err != nil {
			return err
		}
		err = c.update(ctx, func(r *record) {
			r.Added += len(batch)
			if r.Added == len(ev.Members) {
				r.Step = stepMembersAdded
			}
		})
		if err != nil {
			return err
		}
	}
	if rec := c.snapshot(); rec.InviteURL == "" {
		var link string
		err := w.call(ctx, stopping, j, "fetch the join link", func(ctx context.Context) (err error) {
			link, err = w.chats.QRCodeLink(ctx, rec.ChatID, ev.Owner)
			return err
		})
		if err != nil {
			return err
		}
		if err := c.update(ctx, func(r *record) { r.Step, r.InviteURL = stepLinked, link }); err != nil {
			return err
		}
	}
	return w.publishProvisioned(ctx, j)
}

func (w *Worker) publishProvisioned(ctx context.Context, j *job) error {
	ev, c := j.ev, j.held()
	rec := c.snapshot()
	res := messages.Provisioned{
		ID: j.key, SourceSubject: ev.Subject, SourceID: ev.ID,
		ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, InviteURL: rec.InviteURL,
		Name: ev.Name, Owner: ev.Owner, MemberCount: len(ev.Members), Attempts: rec.Attempts,
		Metadata: ev.Metadata, ProvisionedAt: w.cfg.Now().UTC(), PossibleDuplicate: rec.PossibleDuplicate,
	}
	res.SetRef(ev)
	data, err := encodeJSON(res)
	if err != nil {
		return err
	}
	if err := w.publish(ctx, w.cfg.ProvisionedSubject, msgID(w.cfg.ProvisionedSubject, j.key), data); err != nil {
		return err
	}
	err = c.update(ctx, func(r *record) { r.Step, r.ResultSubject, r.Result = stepDone, w.cfg.ProvisionedSubject, data })
	if err != nil && !errors.Is(err, errClaimLost) {
		return err
	}
	j.log.Info().Str("event_id", ev.ID).Str("chatid", rec.ChatID).Int("members", len(ev.Members)).
		Int("attempts", rec.Attempts).Bool("possible_duplicate", rec.PossibleDuplicate).
		Dur("took", w.cfg.Now().Sub(j.start)).Msg("group provisioned")
	return nil
}

// call runs one DingTalk call, retrying transient failures with exponential
// backoff and jitter until the event's retry budget (counted from its first
// attempt, across deliveries) runs out. A permanent refusal is a failure at
// once. Shutdown during a backoff wait hands the event back.
func (w *Worker) call(ctx context.Context, stopping <-chan struct{}, j *job, what string, fn func(context.Context) error) error {
	c := j.held()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.InitialBackoff),
		backoff.WithMaxInterval(w.cfg.MaxBackoff),
		backoff.WithMaxElapsedTime(0), // the budget below spans deliveries; backoff's own clock would not
	)
	deadline := c.snapshot().FirstAttemptAt.Add(w.cfg.RetryBudget)
	for {
		err := fn(ctx)
		c.addAttempts(1)
		if err == nil {
			return nil
		}
		class := dingtalk.Classify(err)
		if class == dingtalk.OutcomeUnknown {
			c.markPossibleDuplicate()
		}
		if ctx.Err() != nil {
			return &retryLater{reason: "interrupted at the end of the shutdown grace period"}
		}
		var de *dingtalk.Error
		errors.As(err, &de)
		if class == dingtalk.Permanent {
			return &failure{reason: messages.ReasonDingTalkRejected, errcode: errcode(de), cause: err,
				message: fmt.Sprintf("DingTalk refused to %s: %s", what, strings.TrimPrefix(err.Error(), "dingtalk: "))}
		}
		delay := b.NextBackOff()
		if de != nil && de.RetryAfter > delay {
			delay = de.RetryAfter
		}
		if w.cfg.Now().Add(delay).After(deadline) {
			return &failure{reason: messages.ReasonRetriesExhausted, errcode: errcode(de), cause: err,
				message: fmt.Sprintf("DingTalk kept failing to %s for the whole retry budget of %v (%d calls); last error: %s",
					what, w.cfg.RetryBudget, c.snapshot().Attempts, strings.TrimPrefix(err.Error(), "dingtalk: "))}
		}
		j.log.Debug().Str("event_id", j.eventID).Str("class", class.String()).Err(err).Dur("retry_in", delay).Msg("DingTalk call failed; retrying")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stopping:
			t.Stop()
			return &retryLater{delay: delay, reason: "shutting down while waiting to retry"}
		case <-ctx.Done():
			t.Stop()
			return &retryLater{reason: "interrupted at the end of the shutdown grace period"}
		}
	}
}

// errcode is DingTalk's errcode when DingTalk answered with one.
func errcode(e *dingtalk.Error) *int {
	if e == nil || e.ErrCode == 0 {
		return nil
	}
	n := e.ErrCode
	return &n
}
