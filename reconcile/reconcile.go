// Package reconcile finds what people changed in DingTalk that nobody
// reported: it reads each open group the project records know, compares it
// with its record, and (unless asked only to look) publishes a result for
// each difference and folds it into the record by the same rules as the
// events DingTalk pushes (projects.Record.Follow). It is what `provisioner
// reconcile` runs: for the events missed while DINGTALK_EVENTS was off,
// before this release, or in an outage.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"provisioner/dingtalk"
	"provisioner/messages"
	"provisioner/projects"
)

// Target is an open project whose group is read.
type Target struct {
	Key    string
	Record projects.Record
}

// Targets lists the open projects that have a group, or await one that
// replaces a group disbanded by hand (asked for again, once, by
// Reconciler.Recreate), or the one whose project_id or event_id is refID
// (both families are searched).
func Targets(ctx context.Context, store *projects.Store, refID string) ([]Target, error) {
	var out []Target
	err := store.Scan(ctx, func(st projects.Stored) error {
		r := st.Record
		awaiting := r.Replaced != "" && !r.HasGroup()
		if r.Closed == nil && (r.HasGroup() || awaiting) && !r.Creating() && (refID == "" || r.RefID == refID) {
			out = append(out, Target{Key: st.Key, Record: r})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return out, nil
}

// Calls is how many DingTalk calls reading the targets' groups costs: one
// chat/get per plain group; a scene group's query and a members page per
// thousand members.
func Calls(targets []Target) int {
	n := 0
	for _, t := range targets {
		switch {
		case !t.Record.HasGroup(): // awaiting its replacement: nothing to read
		case t.Record.Kind == projects.KindScene:
			n += 1 + 1 + (len(t.Record.Managed)+len(t.Record.Others))/1000
		default:
			n++
		}
	}
	return n
}

// Finding is one difference between a group and its record.
type Finding struct {
	Target
	Group  string        // the chatid or open conversation id
	Hand   projects.Hand // the change, as Follow folds it
	Detail string        // in words, for the table
}

// Failure is a target whose group could not be read.
type Failure struct {
	Target
	Err error
}

// Reconciler reads groups and follows what changed. Safe for one run at a
// time.
type Reconciler struct {
	Store  *projects.Store
	Groups dingtalk.Groups
	// Spend runs before each DingTalk request: the month's quota and the
	// workers' shared per-second budget.
	Spend func(ctx context.Context, api string) error
	// Publish sends a result with its message id (a run repeated after a
	// crash publishes the same ids, which JetStream drops).
	Publish                       func(ctx context.Context, subject, msgID string, data []byte) error
	ChangedSubject, ClosedSubject string
	Holder                        string // names this run in the records' leases
	Now                           func() time.Time
	// Recreate, when set (ON_HAND_DISBAND=recreate, with the workers
	// following DingTalk's events), answers a dissolved group as the events
	// do: the record is replaced and a new group asked for (worker.AskRecreate).
	// Unset, a dissolved group closes its record.
	Recreate func(ctx context.Context, key string, rec *projects.Record, id string) error
	// Retries is how many times a transient failure to read one group is
	// tried again before the group is reported unread; 5.
	Retries int
}

// Run reads each target's group and returns what differs; unless dryRun it
// publishes group.changed (source reconcile) for each difference, or
// group.closed (closed_by dingtalk) for a dissolved group, and the record
// then follows. done is called after each target. A DingTalk refusal of one
// group is reported in failed and the run goes on; the monthly quota
// running out, or the budget paused, stops it.
func (r *Reconciler) Run(ctx context.Context, targets []Target, dryRun bool, done func()) (found []Finding, failed []Failure, err error) {
	for _, t := range targets {
		f, err := r.one(ctx, t, dryRun)
		if done != nil {
			done()
		}
		var de *dingtalk.Error
		switch {
		case err == nil:
			found = append(found, f...)
		case ctx.Err() != nil:
			return found, failed, ctx.Err()
		case errors.As(err, &de) && de.Class == dingtalk.QuotaExhausted:
			return found, failed, fmt.Errorf("reconcile: the month's DingTalk quota is used up: %w", err)
		case errors.As(err, &de) || errors.As(err, new(*projects.HeldError)):
			failed = append(failed, Failure{Target: t, Err: err})
		default:
			return found, failed, err
		}
	}
	return found, failed, nil
}

// one reconciles one project under its lock: nothing changes it while its
// group is read and compared.
func (r *Reconciler) one(ctx context.Context, t Target, dryRun bool) ([]Finding, error) {
	lock, err := r.lock(ctx, t)
	if err != nil {
		return nil, err
	}
	defer func() {
		if lock != nil {
			_ = lock.Unlock(context.WithoutCancel(ctx), nil)
		}
	}()
	rec := lock.Record()
	switch {
	case rec.Closed != nil:
		return nil, nil // closed since it was listed
	case !rec.HasGroup() && rec.Replaced != "" && !rec.Creating() && r.Recreate != nil && !dryRun:
		// A replacement asked for and lost (a crash between): ask again, once.
		return nil, r.Recreate(ctx, t.Key, &rec, messages.Key("reconcile", t.Key+"|replace|"+rec.Replaced))
	case !rec.HasGroup():
		return nil, nil // forgotten, or still awaiting its replacement
	}
	st, err := r.read(ctx, &rec)
	if err != nil {
		return nil, err
	}
	now := r.Now().UTC()
	var out []Finding
	next := rec
	for _, h := range projects.Drift(&rec, st, now) {
		h.Event = messages.Key("reconcile", t.Key+"|"+h.Change+"|"+h.Owner+"|"+h.Name+"|"+strings.Join(h.Members, ","))
		out = append(out, Finding{Target: t, Group: projects.GroupID(&rec), Hand: h, Detail: detail(h)})
		if dryRun {
			continue
		}
		if err := r.publish(ctx, t.Key, &rec, h); err != nil {
			return out, err
		}
		if h.Change == projects.HandDisband && r.Recreate != nil {
			next.Replace(h)
		} else {
			next.Follow(h)
		}
	}
	if dryRun || len(out) == 0 {
		return out, nil
	}
	err = lock.Unlock(ctx, func(p *projects.Record) { *p = next })
	lock = nil
	if err == nil && r.Recreate != nil && next.Replaced != "" && !next.HasGroup() {
		err = r.Recreate(ctx, t.Key, &next, messages.Key("reconcile", t.Key+"|replace|"+next.Replaced))
	}
	return out, err
}

// lock takes the project, waiting a little for an event that holds it.
func (r *Reconciler) lock(ctx context.Context, t Target) (*projects.Lock, error) {
	for try := 0; ; try++ {
		l, err := r.Store.Lock(ctx, t.Key, t.Record.RefID, "reconcile:"+t.Key, r.Holder, projects.Take{})
		var held *projects.HeldError
		if !errors.As(err, &held) || try >= 5 {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(held.For, 2*time.Second)):
		}
	}
}

// read reads a group through the budget, trying a transient failure again.
func (r *Reconciler) read(ctx context.Context, rec *projects.Record) (*dingtalk.GroupState, error) {
	ctx = dingtalk.WithBeforeSend(ctx, r.Spend)
	b := backoff.WithMaxRetries(backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond)), uint64(max(r.Retries, 5)))
	var st *dingtalk.GroupState
	err := backoff.Retry(func() error {
		var err error
		st, err = r.Groups.Read(ctx, dingtalk.Group{ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID})
		var de *dingtalk.Error
		if errors.As(err, &de) && (de.Class == dingtalk.Transient || de.Class == dingtalk.RateLimited) {
			return err
		}
		if err != nil {
			return backoff.Permanent(err)
		}
		return nil
	}, backoff.WithContext(b, ctx))
	return st, err
}

// publish sends the result of one difference.
func (r *Reconciler) publish(ctx context.Context, key string, rec *projects.Record, h projects.Hand) error {
	events := projects.EventsKey(key)
	var subject string
	var res any
	if h.Change == projects.HandDisband {
		c := messages.Closed{ID: h.Event, SourceSubject: "reconcile", ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID,
			Action: messages.ActionDisbanded, Name: rec.Name, Version: rec.Version, ClosedAt: h.At, ClosedBy: messages.SourceDingTalk}
		if events {
			c.EventID = rec.RefID
		} else {
			c.ProjectID = rec.RefID
		}
		subject, res = r.ClosedSubject, c
	} else {
		c := messages.Changed{ID: h.Event, Change: h.Change, Source: messages.SourceReconcile,
			ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, Owner: h.Owner, Name: h.Name, Members: h.Members, ChangedAt: h.At}
		c.SetRef(events, rec.RefID)
		subject, res = r.ChangedSubject, c
	}
	data, err := messages.Encode(res)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	return r.Publish(ctx, subject, subject+"-"+h.Event, data)
}

// detail says a difference in words.
func detail(h projects.Hand) string {
	switch h.Change {
	case projects.HandDisband:
		return "the group was disbanded"
	case messages.ChangeOwner:
		return "owner is now " + h.Owner
	case messages.ChangeName:
		return fmt.Sprintf("name is now %q", h.Name)
	case messages.ChangeMembersRemoved:
		return "no longer in the group: " + strings.Join(h.Members, ", ")
	default:
		return "in the group, not known to the record: " + strings.Join(h.Members, ", ")
	}
}
