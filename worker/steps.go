package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/messages"
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
	if pr := projectOf(j); pr.UUID != "" || pr.CreateUnanswered {
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

// flag adds to a log line whether the event's group may be a duplicate, and
// why, so that whoever checks it knows what to look for.
func flag(line *zerolog.Event, rec *record) *zerolog.Event {
	line = line.Bool("possible_duplicate", rec.PossibleDuplicate)
	if rec.PossibleDuplicate {
		line = line.Str("possible_duplicate_why", rec.UnansweredWhy)
	}
	return line
}
