package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/internal/kvlease"
	"provisioner/messages"
	"provisioner/projects"
	"provisioner/telemetry"
)

// unknownGroupTries is how many deliveries an event about a group no
// project record holds gets before it is taken for a group the provisioner
// does not manage: the first ones may come while the group's creation is
// finishing (its record learns the group at the end).
const unknownGroupTries = 4

// followOne works one stored DingTalk event and settles it, in this one
// place: Ack once its result is published (or it needs none), NakWithDelay
// when its project is busy or not yet known, Term with a dead letter when
// it cannot be read.
func (w *Worker) followOne(ctx context.Context, msg jetstream.Msg) {
	typ, id := w.handType(msg), msg.Headers().Get(messages.HeaderDingTalkEventID)
	meta, err := msg.Metadata()
	if err != nil {
		meta = &jetstream.MsgMetadata{NumDelivered: 1, Timestamp: w.cfg.Now()}
	}
	log := w.log.With().Str("event_id", id).Str("event_type", typ).Uint64("stream_seq", meta.Sequence.Stream).Logger()
	outcome, err := w.follow(ctx, msg, typ, id, meta, log)
	var later *retryLater
	var fail *failure
	switch {
	case err == nil:
		w.cfg.Telemetry.DingTalkEvent(typ, outcome)
		if err := msg.Ack(); err != nil {
			log.Warn().Err(err).Msg("ack failed; the DingTalk event will be worked again and its result published again")
		}
		log.Debug().Str("outcome", outcome).Msg("DingTalk event followed")
	case errors.As(err, &later):
		_ = msg.NakWithDelay(later.delay)
		log.Info().Dur("retry_in", later.delay).Str("why", later.reason).Msg("DingTalk event handed back")
	case errors.As(err, &fail):
		if derr := w.deadLetter(ctx, msg, cmp.Or(meta.Stream, w.cfg.HandStream), meta.Sequence.Stream, fail); derr != nil {
			log.Error().Err(derr).Msg("could not keep the unreadable DingTalk event as a dead letter; will try again")
			_ = msg.NakWithDelay(w.redeliveryDelay(meta.NumDelivered))
			return
		}
		w.cfg.Telemetry.DingTalkEvent(typ, telemetry.DingTalkInvalid)
		_ = msg.TermWithReason(fail.reason)
		log.Warn().Str("reason", fail.reason).Err(fail).Msg("DingTalk event unreadable: kept as a dead letter")
	default:
		delay := w.redeliveryDelay(meta.NumDelivered)
		log.Error().Err(err).Dur("retry_in", delay).Msg("DingTalk event interrupted; will try again")
		_ = msg.NakWithDelay(delay)
	}
}

// handDone is what the step bucket keeps of a DingTalk event whose result
// was published: a repeat publishes it again.
type handDone struct {
	Subject string          `json:"dingtalk_result_subject"`
	Result  json.RawMessage `json:"dingtalk_result"`
}

// follow folds one DingTalk event into its project's record and publishes
// its result; it returns the outcome for the metrics.
func (w *Worker) follow(ctx context.Context, msg jetstream.Msg, typ, id string, meta *jetstream.MsgMetadata, log zerolog.Logger) (string, error) {
	gev, err := dingtalk.ParseGroupEvent(typ, msg.Data())
	if err == nil && id == "" {
		err = errors.New("worker: the stored DingTalk event has no " + messages.HeaderDingTalkEventID + " header")
	}
	if err != nil {
		return "", &failure{reason: messages.ReasonInvalidEvent, message: err.Error(), cause: err}
	}
	key := messages.Key(w.cfg.HandSubject, id)
	if e, err := w.topo.kv.Get(ctx, key); err == nil {
		var done handDone
		if json.Unmarshal(e.Value(), &done) == nil && done.Subject != "" {
			return telemetry.DingTalkRepeated, w.publish(ctx, done.Subject, msgID(done.Subject, key), done.Result)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("worker: reading what became of DingTalk event %s: %w", id, err)
	}
	pkey, found, err := w.findGroup(ctx, gev)
	if err != nil {
		return "", err
	}
	if !found {
		if meta.NumDelivered < unknownGroupTries {
			return "", &retryLater{delay: time.Duration(meta.NumDelivered) * time.Second, why: handBackHeld,
				reason: "no project record holds this group yet: its creation may be finishing"}
		}
		log.Info().Str("chatid", gev.ChatID).Str("open_conversation_id", gev.OpenConversationID).
			Msg("DingTalk event about a group the provisioner does not manage: no result")
		return telemetry.DingTalkUnmanaged, nil
	}
	lock, err := w.proj.Lock(ctx, pkey, "", key, w.cfg.InstanceID+"/"+nuid.Next(), projects.Take{})
	var busy *projects.HeldError
	var newer *projects.NewerError
	var contended *kvlease.ContendedError
	switch {
	case errors.As(err, &busy):
		return "", &retryLater{delay: w.projectWait(busy.For), why: handBackHeld, reason: "another event of this project is being worked"}
	case errors.As(err, &contended):
		return "", &retryLater{delay: w.projectWait(time.Second), why: handBackHeld, reason: "other events of this project kept writing its record"}
	case errors.As(err, &newer):
		return "", leaveToNewer(newer.Error())
	case err != nil:
		return "", err
	}
	rec := lock.Record()
	hand := handOf(gev, key, id, meta.Timestamp)
	recreate := hand.Change == projects.HandDisband && w.cfg.OnHandDisband == HandDisbandRecreate
	closure := projects.Closure{Action: messages.ActionDisbanded, Name: rec.Name, At: hand.At, By: key,
		Source: messages.SourceDingTalk, Operator: hand.Operator, DingTalkEventID: id}
	switch {
	case rec.LastHand == key:
		// Folded by a delivery that stopped before publishing: publish now.
		if err := lock.Unlock(ctx, nil); err != nil {
			return "", err
		}
	case !rec.HasGroup() || (gev.ChatID != rec.ChatID && gev.OpenConversationID != rec.OpenConversationID):
		return telemetry.DingTalkUnmanaged, lock.Unlock(ctx, nil) // forgotten since it was found
	case rec.Closed != nil:
		return telemetry.DingTalkProjectClosed, lock.Unlock(ctx, nil)
	default:
		next := rec
		next.Managed, next.Departed = slices.Clone(rec.Managed), slices.Clone(rec.Departed)
		news := false
		if recreate {
			news = next.Replace(hand)
		} else {
			news = next.Follow(hand)
		}
		if !news {
			return telemetry.DingTalkEcho, lock.Unlock(ctx, nil)
		}
		next.LastHand = key
		if err := lock.Unlock(ctx, func(r *projects.Record) { *r = next }); err != nil {
			return "", err
		}
		rec = next
	}
	if rec.Closed != nil {
		closure = *rec.Closed
	}
	subject, data, outcome, err := w.handResult(&rec, pkey, hand, gev, closure, msg.Subject())
	if err != nil {
		return "", err
	}
	mark, err := json.Marshal(handDone{Subject: subject, Result: data})
	if err != nil {
		return "", fmt.Errorf("worker: %w", err)
	}
	if _, err := w.topo.kv.Put(ctx, key, mark); err != nil {
		return "", fmt.Errorf("worker: recording DingTalk event %s: %w", id, err)
	}
	if err := w.publish(ctx, subject, msgID(subject, key), data); err != nil {
		return "", err
	}
	log.Info().Str("result", subject).Str("change", hand.Change).Str("chatid", cmp.Or(rec.ChatID, gev.ChatID)).Msg("a change made in DingTalk followed")
	if recreate {
		if err := w.askRecreate(ctx, pkey, &rec, id); err != nil {
			return "", err
		}
		log.Info().Str("replaces", rec.Replaced).Msg("a new group asked for the one disbanded by hand")
		outcome = telemetry.DingTalkRecreated
	}
	return outcome, nil
}

// askRecreate asks for a new group for rec's project (see AskRecreate).
func (w *Worker) askRecreate(ctx context.Context, pkey string, rec *projects.Record, dingtalkID string) error {
	return AskRecreate(ctx, w.js, w.cfg, pkey, rec, dingtalkID)
}

// AskRecreate asks for a new group for the project whose record rec
// (under key pkey) was replaced because someone disbanded its group
// (ON_HAND_DISBAND=recreate): a complete update of the project on the
// recreate subject, worked by the workers like any other event (step
// record, retries, group.provisioned with replaces). Its message id is made
// from id (the disband event's, or a reconcile's), so asking again after a
// crash asks once. The workers must follow DingTalk's events
// (Config.HandEvents): their stream captures the subject.
func AskRecreate(ctx context.Context, js jetstream.JetStream, cfg Config, pkey string, rec *projects.Record, id string) error {
	cfg = cfg.withDefaults()
	events := projects.EventsKey(pkey)
	ref := "project_id"
	if events {
		ref = "event_id"
	}
	name, owner, listed := rec.Current()
	body := map[string]any{"id": "dingtalk-" + id, ref: rec.RefID, "name": name, "owner": owner, "members": listed}
	if rec.Version > 0 {
		body["version"] = rec.Version
	}
	data, err := encodeJSON(body)
	if err != nil {
		return err
	}
	if _, err := js.Publish(ctx, cfg.recreateSubject(events), data, jetstream.WithMsgID("recreate-"+id)); err != nil {
		return fmt.Errorf("worker: asking for a new group: %w", err)
	}
	return nil
}

// findGroup finds the project whose record holds the event's group. A miss
// runs an index pass first (records an older release wrote), shared with
// the other misses of the moment.
func (w *Worker) findGroup(ctx context.Context, gev *dingtalk.GroupEvent) (string, bool, error) {
	seen := w.indexGen.Load()
	for pass := 0; ; pass++ {
		for _, id := range []string{gev.ChatID, gev.OpenConversationID} {
			if id == "" {
				continue
			}
			key, ok, err := w.proj.FindGroup(ctx, id)
			if err != nil || ok {
				return key, ok, err
			}
		}
		if pass > 0 {
			return "", false, nil
		}
		if err := w.indexPass(ctx, &seen); err != nil {
			return "", false, err
		}
	}
}

// handOf is the change an event tells, dated by DingTalk (or, when it
// does not say, by when the event was stored: the same on every delivery).
func handOf(gev *dingtalk.GroupEvent, key, id string, stored time.Time) projects.Hand {
	h := projects.Hand{Members: gev.UserIDs, Owner: gev.Owner, Name: gev.Title, At: gev.At, Operator: gev.Operator, Event: key, EventID: id}
	if h.At.IsZero() {
		h.At = stored.UTC()
	}
	switch gev.Type {
	case dingtalk.EventAddMember:
		h.Change = messages.ChangeMembersAdded
	case dingtalk.EventRemoveMember:
		h.Change = messages.ChangeMembersRemoved
	case dingtalk.EventQuit:
		h.Change = messages.ChangeMemberLeft
	case dingtalk.EventUpdateOwner:
		h.Change = messages.ChangeOwner
	case dingtalk.EventUpdateTitle:
		h.Change = messages.ChangeName
	case dingtalk.EventDisband:
		h.Change = projects.HandDisband
	}
	return h
}

// handResult is the result of a change folded into rec: group.closed for
// a disband, group.changed otherwise. It is made from the record and the
// event alone, so a delivery after a crash makes the same bytes.
func (w *Worker) handResult(rec *projects.Record, pkey string, h projects.Hand, gev *dingtalk.GroupEvent, c projects.Closure, source string) (subject string, data []byte, outcome string, err error) {
	events := projects.EventsKey(pkey)
	if h.Change == projects.HandDisband {
		res := messages.Closed{ID: h.Event, SourceSubject: source, SourceID: h.EventID,
			ChatID: cmp.Or(rec.ChatID, gev.ChatID), OpenConversationID: cmp.Or(rec.OpenConversationID, gev.OpenConversationID),
			Action: c.Action, Name: c.Name, Version: rec.Version, ClosedAt: c.At,
			ClosedBy: messages.SourceDingTalk, Operator: c.Operator, DingTalkEventID: h.EventID}
		if events {
			res.EventID = rec.RefID
		} else {
			res.ProjectID = rec.RefID
		}
		data, err = encodeJSON(res)
		return w.cfg.ClosedSubject, data, telemetry.DingTalkClosed, err
	}
	res := messages.Changed{ID: h.Event, Change: h.Change, Source: messages.SourceDingTalk,
		ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, DingTalkEventID: h.EventID,
		Operator: h.Operator, ChangedAt: h.At}
	res.SetRef(events, rec.RefID)
	switch h.Change {
	case messages.ChangeOwner:
		res.Owner, res.OperatorUnionID = h.Owner, gev.OperatorUnionID
	case messages.ChangeName:
		res.Name = h.Name
	default:
		res.Members = h.Members
	}
	data, err = encodeJSON(res)
	return w.cfg.ChangedSubject, data, telemetry.DingTalkChanged, err
}

// indexMarkKey is the project bucket's key remembering how far the group
// index was filled in (the bucket's stream sequence).
const indexMarkKey = "index.groups"

// indexPass fills in the group index for the project records written
// since the last pass (see projects.Store.IndexGroups), one pass at a time
// in this worker; with seen set, only if no pass began since the caller
// saw generation seen.
func (w *Worker) indexPass(ctx context.Context, seen *uint64) error {
	w.indexMu.Lock()
	defer w.indexMu.Unlock()
	if seen != nil && w.indexGen.Load() > *seen {
		return nil
	}
	w.indexGen.Add(1)
	var mark migrationMark
	if e, err := w.topo.projects.Get(ctx, indexMarkKey); err == nil {
		_ = json.Unmarshal(e.Value(), &mark)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("worker: reading the group index's mark: %w", err)
	}
	last, n, err := w.proj.IndexGroups(ctx, mark.Seq+1)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if n > 0 {
		w.log.Info().Int("groups", n).Msg("group index filled in for records written before it")
	}
	if last > mark.Seq {
		data, err := json.Marshal(migrationMark{Seq: last, At: w.cfg.Now().UTC()})
		if err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		if _, err := w.topo.projects.Put(ctx, indexMarkKey, data); err != nil {
			return fmt.Errorf("worker: writing the group index's mark: %w", err)
		}
	}
	return nil
}
