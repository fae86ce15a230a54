package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"provisioner/budget"
	"provisioner/dingtalk"
	"provisioner/messages"
	"provisioner/projects"
)

// provision runs the steps this event still lacks, recording each before the
// next: create (with as many members as one call takes) → add the rest in
// batches → fetch the join link → record it with the result → publish. A
// resumed event skips what its record already holds, so a group is never
// created for an event with a chatid.
func (w *Worker) provision(ctx context.Context, stopping <-chan struct{}, j *job) error {
	if err := w.createGroup(ctx, stopping, j); err != nil {
		return err
	}
	if err := w.addMembers(ctx, stopping, j); err != nil {
		return err
	}
	link, err := w.fetchLink(ctx, stopping, j)
	if err != nil {
		return err
	}
	return w.publishProvisioned(ctx, j, link)
}

// createGroup creates the group unless the record holds one. The record says
// when a create is on the wire (written after the rate limiter let it go)
// and when DingTalk refused it, so that only a create that may really have
// reached DingTalk unanswered makes a later one a possible duplicate.
func (w *Worker) createGroup(ctx context.Context, stopping <-chan struct{}, j *job) error {
	ev, c, lim := j.ev, j.held(), w.groups.Limits()
	if c.snapshot().ChatID != "" {
		return nil
	}
	first := ev.Members[:min(len(ev.Members), lim.MembersAtCreate)]
	uuid := j.key // records of schema 1 created scene groups under the event's key
	if pr := j.projectHold().lock.Record(); pr.UUID != "" || pr.CreateUnanswered {
		uuid = cmp.Or(pr.UUID, uuid)
		if pr.CreateUnanswered && !c.snapshot().CreateUnanswered {
			// An earlier event's create for this project may have landed.
			if err := c.update(ctx, func(r *record) { r.unanswered(pr.UnansweredWhy) }); err != nil {
				return err
			}
		}
	}
	req := &dingtalk.NewGroup{Name: messages.GroupName(ev.Name, lim.NameRunes), Owner: ev.Owner, Members: first, Settings: chatSettings(ev.Group), Key: uuid}
	onWire := func(ctx context.Context, _ string) error {
		return c.update(ctx, func(r *record) { r.CreateInFlight = true })
	}
	var g *dingtalk.Group
	err := w.call(ctx, stopping, j, "create the group", func(ctx context.Context) error {
		var err error
		g, err = w.groups.CreateGroup(dingtalk.WithBeforeSend(ctx, onWire), req)
		if err == nil || !c.snapshot().CreateInFlight {
			return err
		}
		unknown := dingtalk.Classify(err) == dingtalk.OutcomeUnknown
		if werr := c.update(ctx, func(r *record) {
			r.CreateInFlight = false
			if unknown {
				r.unanswered("a create was answered without a DingTalk code: " + strings.TrimPrefix(err.Error(), "dingtalk: "))
			}
		}); werr != nil {
			return werr
		}
		return err
	})
	var f *failure
	if errors.As(err, &f) && f.reason == messages.ReasonDingTalkRejected && lim.Deduplicated && c.snapshot().CreateUnanswered {
		// DingTalk refuses a repeated uuid (rather than answering the first
		// group): the group most likely exists. Creating none is the safe side.
		f.reason = messages.ReasonOutcomeUnknown
		f.message = fmt.Sprintf("an earlier create of this scene group (uuid %s) went unanswered and DingTalk refused to repeat it: "+
			"the group %q owned by %s probably exists, but its id is not known; check before creating it by hand (DingTalk said: %s)",
			uuid, req.Name, ev.Owner, strings.TrimPrefix(f.cause.Error(), "dingtalk: "))
		return f
	}
	if err != nil {
		return err
	}
	return c.update(ctx, func(r *record) {
		r.Step, r.ChatID, r.OpenConversationID, r.Added = stepCreated, g.ChatID, g.OpenConversationID, len(first)
		r.CreateInFlight = false
		r.PossibleDuplicate = r.CreateUnanswered && !lim.Deduplicated
	})
}

// chatSettings is the contract's group settings in the client's terms.
func chatSettings(g messages.GroupSettings) dingtalk.ChatSettings {
	return dingtalk.ChatSettings{Icon: g.Icon, ShowHistoryType: g.ShowHistoryType, Searchable: g.Searchable,
		ValidationType: g.ValidationType, MentionAllAuthority: g.MentionAllAuthority,
		ManagementType: g.ManagementType, ChatBannedType: g.ChatBannedType}
}

// addMembers adds the members beyond the create's in batches. A batch that
// may have landed unseen (its holder died with it on the wire, or its answer
// proved nothing) is resumed by reading the group and adding only the
// missing, whatever DingTalk answers to adding an existing member.
func (w *Worker) addMembers(ctx context.Context, stopping <-chan struct{}, j *job) error {
	ev, c, lim := j.ev, j.held(), w.groups.Limits()
	var present map[string]bool
	sync := c.snapshot().AddInFlight
	onWire := func(ctx context.Context, _ string) error {
		return c.update(ctx, func(r *record) { r.AddInFlight = true })
	}
	for rec := c.snapshot(); rec.Added < len(ev.Members); rec = c.snapshot() {
		grp := dingtalk.Group{ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID}
		var end int
		err := w.call(ctx, stopping, j, "add members", func(ctx context.Context) error {
			if sync {
				ids, err := w.groups.Members(ctx, grp)
				if err != nil {
					return err
				}
				present, sync = make(map[string]bool, len(ids)), false
				for _, id := range ids {
					present[id] = true
				}
				c.addAttempts(1)
			}
			var batch []string
			batch, end = nextBatch(ev.Members, rec.Added, present, lim.MembersPerAdd)
			if len(batch) == 0 {
				return nil
			}
			err := w.groups.AddMembers(dingtalk.WithBeforeSend(ctx, onWire), grp, batch)
			switch {
			case err == nil:
			case dingtalk.Classify(err) == dingtalk.OutcomeUnknown:
				sync = true // the record keeps AddInFlight: a successor syncs too
			case c.snapshot().AddInFlight:
				if werr := c.update(ctx, func(r *record) { r.AddInFlight = false }); werr != nil {
					return werr
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		err = c.update(ctx, func(r *record) {
			r.Added, r.AddInFlight = end, false
			if r.Added >= len(ev.Members) {
				r.Step = stepMembersAdded
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// nextBatch returns up to n members from members[from:] that are not present,
// and the index just after the last one it took (or len(members)).
func nextBatch(members []string, from int, present map[string]bool, n int) ([]string, int) {
	var batch []string
	i := from
	for ; i < len(members) && len(batch) < n; i++ {
		if !present[members[i]] {
			batch = append(batch, members[i])
		}
	}
	return batch, i
}

// fetchLink returns the group's join link, shared by the owner: the one the
// record holds, or a new one from DingTalk. It is recorded with the result,
// in one write (see publishProvisioned).
func (w *Worker) fetchLink(ctx context.Context, stopping <-chan struct{}, j *job) (string, error) {
	rec := j.held().snapshot()
	if rec.InviteURL != "" {
		return rec.InviteURL, nil
	}
	grp := dingtalk.Group{ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID}
	var link string
	err := w.call(ctx, stopping, j, "fetch the join link", func(ctx context.Context) (err error) {
		link, err = w.groups.JoinLink(ctx, grp, j.ev.Owner)
		return err
	})
	return link, err
}

// publishProvisioned records the group in its project and the result in the
// step record, then publishes the result (see finish). A worker that dies
// between leaves records that say done: the next delivery publishes the same
// result, with the same message id, and calls DingTalk no more.
func (w *Worker) publishProvisioned(ctx context.Context, j *job, link string) error {
	ev, c := j.ev, j.held()
	rec, lim := c.snapshot(), w.groups.Limits()
	res := messages.Provisioned{
		ID: j.key, SourceSubject: ev.Subject, SourceID: ev.ID,
		ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, InviteURL: link,
		Name: messages.GroupName(ev.Name, lim.NameRunes), Owner: ev.Owner, MemberCount: len(ev.Members), Attempts: rec.Attempts,
		Metadata: ev.Metadata, ProvisionedAt: w.cfg.Now().UTC(), PossibleDuplicate: rec.PossibleDuplicate,
	}
	res.SetRef(ev)
	data, err := encodeJSON(res)
	if err != nil {
		return err
	}
	next := j.projectHold().lock.Record()
	next.MarkCreated(projects.Creation{ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, InviteURL: link,
		Name: res.Name, Owner: ev.Owner, Listed: ev.Listed, Managed: ev.Members})
	next.Applied(ev.Version, j.seq)
	if err := w.finish(ctx, j, w.cfg.ProvisionedSubject, data, &next, func(r *record) { r.InviteURL = link }); err != nil {
		return err
	}
	flag(j.log.Info().Str("event_id", ev.ID).Str("chatid", rec.ChatID).Int("members", len(ev.Members)).
		Int("attempts", rec.Attempts), &rec).Dur("took", w.cfg.Now().Sub(j.start)).Msg("group provisioned")
	return nil
}

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
	var sent string                             // the last API called, for the halt
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
			return &retryLater{why: "interrupted", reason: "interrupted at the end of the shutdown grace period"}
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
			return &retryLater{delay: delay, why: "stopping", reason: "shutting down while waiting to retry"}
		case <-ctx.Done():
			t.Stop()
			return &retryLater{why: "interrupted", reason: "interrupted at the end of the shutdown grace period"}
		}
	}
}

// flag adds to a log line whether the event's group may be a duplicate, and
// why, so that whoever checks it knows what to look for.
func flag(line *zerolog.Event, rec *record) *zerolog.Event {
	line = line.Bool("possible_duplicate", rec.PossibleDuplicate)
	if rec.PossibleDuplicate {
		line = line.Str("possible_duplicate_why", rec.UnansweredWhy)
	}
	return line
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
	return &retryLater{delay: time.Second, paused: true, why: "misconfigured", reason: "DingTalk refused this worker's configuration (" + de.Misconfiguration() + ")"}
}

// handBackPaused hands an event back while work is paused: JetStream holds
// it until the pause ends (or an operator resumes), and its retry budget
// starts again then. The delay is short so that a resume takes effect soon.
func (w *Worker) handBackPaused(p budget.Pause) *retryLater {
	delay := min(max(p.Until.Sub(w.cfg.Now()), time.Second), w.cfg.AckWait)
	return &retryLater{delay: delay, paused: true, why: "paused", reason: "work is paused: " + p.String()}
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
