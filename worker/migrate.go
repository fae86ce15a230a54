package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/kvread"
	"provisioner/messages"
	"provisioner/projects"
)

// migrationKey is the project bucket's key remembering how far migrate read
// the step records (their bucket's stream sequence).
const migrationKey = "migration.step_records"

type migrationMark struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
}

// migrate builds a project record for every group a release before project
// records made (a creation's step record that says provisioned, within
// RETENTION) whose project has none, so that its updates and closes change
// that group rather than making a second one. It reads only the step
// records written since its last pass, so it is cheap to repeat: a worker
// runs it at start and then every Config.CheckInterval, which also covers
// older workers still creating groups during a rolling upgrade. Records are
// created, never overwritten (first writer wins), so several workers may
// run it at once. It returns how many records it built.
func (w *Worker) migrate(ctx context.Context) (int, error) {
	var mark migrationMark
	if e, err := w.topo.projects.Get(ctx, migrationKey); err == nil {
		_ = json.Unmarshal(e.Value(), &mark)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, fmt.Errorf("worker: reading the migration mark: %w", err)
	}
	events, err := w.js.Stream(ctx, w.topo.eventsStream)
	if err != nil {
		return 0, fmt.Errorf("worker: reading stream %q: %w", w.topo.eventsStream, err)
	}
	built, last := 0, mark.Seq
	err = kvread.Read(ctx, w.js, w.cfg.Bucket, mark.Seq+1, nil, func(e kvread.Entry) error {
		last = max(last, e.Revision)
		if e.Deleted {
			return nil
		}
		ok, err := w.migrateOne(ctx, events, e.Value)
		if ok {
			built++
		}
		return err
	})
	if err != nil {
		return built, fmt.Errorf("worker: reading step records: %w", err)
	}
	if last > mark.Seq {
		data, err := json.Marshal(migrationMark{Seq: last, At: w.cfg.Now().UTC()})
		if err != nil {
			return built, fmt.Errorf("worker: encoding the migration mark: %w", err)
		}
		if _, err := w.topo.projects.Put(ctx, migrationKey, data); err != nil {
			return built, fmt.Errorf("worker: writing the migration mark: %w", err)
		}
	}
	return built, nil
}

// migratePass runs one migration pass, one at a time in this worker. With
// seen set, it runs only if no pass began after the caller saw generation
// seen (migrateGen): the events that miss their project all at once (a
// burst of updates arriving before their creations) share one pass. The
// mutex is held during the pass, so that those waiting see its outcome.
func (w *Worker) migratePass(ctx context.Context, seen *uint64) error {
	w.migrateMu.Lock()
	defer w.migrateMu.Unlock()
	if seen != nil && w.migrateGen.Load() > *seen {
		return nil
	}
	w.migrateGen.Add(1)
	n, err := w.migrate(ctx)
	if n > 0 {
		w.log.Info().Int("projects", n).Msg("project records built from step records an older release wrote")
	}
	return err
}

// migrateOne builds the project record one step record stands for, if it
// is a finished creation whose project has no record; it reports whether
// it built one.
func (w *Worker) migrateOne(ctx context.Context, events jetstream.Stream, data []byte) (bool, error) {
	var step record
	if json.Unmarshal(data, &step) != nil || step.Schema > recordSchema || step.ProjectKept ||
		step.Step != stepDone || step.ResultSubject != w.cfg.ProvisionedSubject || step.ChatID == "" && step.OpenConversationID == "" {
		return false, nil
	}
	kind, ok := w.cfg.Subjects[step.Subject]
	if !ok || kind.Op() != messages.OpCreate {
		return false, nil
	}
	var res messages.Provisioned
	if json.Unmarshal(step.Result, &res) != nil {
		return false, nil
	}
	ev := &messages.Event{Kind: kind, RefID: res.ProjectID}
	if kind.Events() {
		ev.RefID = res.EventID
	}
	if ev.RefID == "" {
		return false, nil
	}
	key := messages.Key(step.Subject, step.EventID)
	c := projects.Creation{ChatID: step.ChatID, OpenConversationID: step.OpenConversationID, InviteURL: step.InviteURL,
		Name: res.Name, Owner: res.Owner}
	var version int64
	if orig := w.original(ctx, events, step); orig != nil {
		c.Listed, c.Managed, version = orig.Listed, orig.Members, orig.Version
	} else {
		// The event is gone from its stream: the first change reads the
		// group, and counts as managed the members it finds that it lists.
		c.Unsure = true
	}
	rec := projects.Migrated(ev.RefID, w.kind(), key, c, version, step.StreamSeq, step.ResultSubject, step.Result)
	out, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("worker: encoding a migrated project record: %w", err)
	}
	if _, err := w.topo.projects.Create(ctx, messages.ProjectKey(ev), out); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("worker: creating a migrated project record: %w", err)
	}
	return true, nil
}

// original reads the event a step record was made for from the events
// stream, nil when the stream no longer holds it (or holds another there).
func (w *Worker) original(ctx context.Context, events jetstream.Stream, step record) *messages.Event {
	if step.StreamSeq == 0 {
		return nil
	}
	m, err := events.GetMsg(ctx, step.StreamSeq)
	if err != nil || m.Subject != step.Subject {
		return nil
	}
	ev, err := messages.Decode(m.Subject, w.cfg.Subjects, m.Data)
	if err != nil || ev.ID != step.EventID {
		return nil
	}
	return ev
}
