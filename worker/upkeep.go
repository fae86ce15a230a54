package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
)

// Uncaptured is what the input subjects lack: the subjects no stream
// captures (events published on them are refused by JetStream at the
// producer: "no responders"), and the nats CLI command that adds them to
// the producer's stream. Both empty when every input subject is captured.
// Safe to call from any goroutine (the readiness check and the metrics
// read it).
func (w *Worker) Uncaptured() (subjects []string, command string) {
	w.capMu.Lock()
	defer w.capMu.Unlock()
	return slices.Clone(w.capture.missing), w.capture.editCommand()
}

// newerContract is the contract of a newer release that configured the
// consumer, 0 when none did.
func (w *Worker) newerContract() int {
	w.capMu.Lock()
	defer w.capMu.Unlock()
	return w.capture.newer
}

// warnUncaptured logs, once per change, the input subjects no stream captures.
func (w *Worker) warnUncaptured(c capture) {
	if len(c.missing) == 0 {
		return
	}
	w.log.Warn().Str("stream", c.stream).Strs("subjects", c.missing).Str("command", c.editCommand()).
		Msg("the producers' stream does not capture these input subjects: JetStream refuses events published on them; add them to the stream and every worker consumes them within a minute, without a restart")
}

// upkeep runs until ctx ends, every Config.CheckInterval: it widens the
// consumer to input subjects the producers' stream has come to capture (and
// back to this release's filter if an older release narrowed it), builds
// project records from step records an older release is still writing, and
// every Config.ExpireInterval forgets closed projects past RETENTION.
func (w *Worker) upkeep(ctx context.Context) {
	t := time.NewTicker(w.cfg.CheckInterval)
	defer t.Stop()
	lastExpiry := w.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := w.recheckInputs(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("re-checking the input subjects; trying again later")
		}
		if err := w.migratePass(ctx, nil); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("building project records from step records; trying again later")
		}
		if w.cfg.Now().Sub(lastExpiry) >= w.cfg.ExpireInterval {
			lastExpiry = w.cfg.Now()
			w.expire(ctx)
		}
	}
}

// recheckInputs looks again for the missing input subjects and at the
// consumer: subjects the events stream now captures join the consumer's
// filter; a filter another release changed is put back, unless that release
// is newer.
func (w *Worker) recheckInputs(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w.capMu.Lock()
	c := w.capture
	c.captured, c.missing = slices.Clone(c.captured), slices.Clone(c.missing)
	w.capMu.Unlock()

	var joined []string
	if len(c.missing) > 0 {
		var still []string
		for _, subj := range c.missing {
			name, err := w.js.StreamNameBySubject(ctx, subj)
			switch {
			case err == nil && name == c.stream:
				joined = append(joined, subj)
			case err == nil || errors.Is(err, jetstream.ErrStreamNotFound):
				still = append(still, subj)
			default:
				return fmt.Errorf("worker: looking up the stream for %q: %w", subj, err)
			}
		}
		c.missing = still
		c.captured = slices.Sorted(slices.Values(slices.Concat(c.captured, joined)))
		if len(joined) > 0 {
			s, err := w.js.Stream(ctx, c.stream)
			if err != nil {
				return fmt.Errorf("worker: reading stream %q: %w", c.stream, err)
			}
			c.streamOf = s.CachedInfo().Config.Subjects
		}
	}
	if !c.foreign {
		if err := w.keepOwnInputs(ctx, c.stream); err != nil {
			return err
		}
	}
	cons, err := w.js.Consumer(ctx, c.stream, w.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("worker: reading consumer %q: %w", w.cfg.Consumer, err)
	}
	cfg := cons.CachedInfo().Config
	c.newer = 0
	if v, _ := strconv.Atoi(cfg.Metadata[contractKey]); v > messages.Contract {
		c.newer = v
	} else if !slices.Equal(slices.Sorted(slices.Values(filterOf(cfg))), c.captured) || cfg.Metadata[contractKey] != strconv.Itoa(messages.Contract) {
		if _, err := w.js.CreateOrUpdateConsumer(ctx, c.stream, consumerConfig(w.cfg, c.captured)); err != nil {
			return fmt.Errorf("worker: widening consumer %q to %v: %w", w.cfg.Consumer, c.captured, err)
		}
		w.log.Info().Strs("subjects", c.captured).Strs("added", joined).Msg("the consumer now reads every input subject its stream captures")
	}
	w.capMu.Lock()
	changed := !slices.Equal(w.capture.missing, c.missing)
	w.capture = c
	w.capMu.Unlock()
	if changed {
		w.warnUncaptured(c)
	}
	return nil
}

// filterOf is a consumer's filter as a list, whichever field holds it.
func filterOf(cfg jetstream.ConsumerConfig) []string {
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return cfg.FilterSubjects
}

// keepOwnInputs puts back on the worker's own events stream any input
// subject it no longer captures: an older release restarting narrows it to
// the subjects it knew, and the producers' events on the others would be
// refused until then.
func (w *Worker) keepOwnInputs(ctx context.Context, name string) error {
	s, err := w.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("worker: reading stream %q: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	var lost []string
	for subj := range w.cfg.Subjects {
		if !slices.Contains(cfg.Subjects, subj) {
			lost = append(lost, subj)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	slices.Sort(lost)
	cfg.Subjects = append(cfg.Subjects, lost...)
	if _, err := w.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("worker: adding %v back to stream %q: %w", lost, name, err)
	}
	w.log.Warn().Str("stream", name).Strs("subjects", lost).Msg("input subjects added back to the worker's stream (an older release had removed them)")
	return nil
}
