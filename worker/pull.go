package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// How the pull loop asks JetStream for events. Each pull is a request of
// its own (Fetch), sized to the room this worker has, that ends after
// pullExpiry; the server sends a heartbeat every pullHeartbeat while it
// holds the request with nothing to send, so a request lost on the way or
// with a node that died is noticed after two missed heartbeats, not 30 s.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = time.Second
)

// pull takes events until ctx ends and hands each to start, with done to
// call when the event is settled. It keeps at most Config.Concurrency events
// (when paced, no more than this worker's share of the per-second budget)
// and never holds an event it has no room to start: nothing waits in a
// buffer, out of reach of the other workers, with its ack wait running.
// It returns nil when ctx ends, and an error only when the connection is
// closed for good; every other failure to pull is logged and retried.
func (w *Worker) pull(ctx context.Context, start func(msg jetstream.Msg, done func())) error {
	slots := make(chan struct{}, w.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	done := func() {
		<-slots
		select {
		case freed <- struct{}{}:
		default:
		}
	}
	retry := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second), backoff.WithMaxElapsedTime(0))
	failing, backlog := false, false
	for {
		n, probe := w.room(ctx, slots, freed, backlog)
		if ctx.Err() != nil {
			return nil
		}
		settled, took := done, 0
		if probe {
			settled = func() { done(); w.halt.probeEnded(w.cfg.Now(), w.cfg.ProbeInterval) }
		}
		err := w.fetch(ctx, n, func(msg jetstream.Msg) {
			if ctx.Err() != nil {
				_ = msg.Nak() // arrived as we stop: another worker takes it at once
				return
			}
			took++
			slots <- struct{}{} // never blocks: n slots were free and only this loop fills them
			start(msg, settled)
		})
		backlog = took == n // every event asked for came: more are likely waiting
		if probe && took == 0 {
			w.halt.probeEnded(w.cfg.Now(), w.cfg.ProbeInterval)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("worker: stopped receiving messages: %w", err)
		case err != nil:
			if !failing {
				w.log.Warn().Err(err).Msg("pulling events failed; pulling again")
			}
			failing = true
			t := time.NewTimer(retry.NextBackOff())
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		default:
			if failing {
				w.log.Info().Msg("pulling events again")
			}
			failing = false
			retry.Reset()
		}
	}
}

// fetch makes one pull request for up to n events and hands each to take as
// it arrives. A missed heartbeat ends it with ErrNoHeartbeat; a request that
// simply ran out (nothing to take) is no error.
func (w *Worker) fetch(ctx context.Context, n int, take func(jetstream.Msg)) error {
	fctx, cancel := context.WithTimeout(ctx, pullExpiry)
	defer cancel()
	batch, err := w.topo.consumer.Fetch(n, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(pullHeartbeat))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		take(msg)
	}
	err = batch.Error()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil // the request ran its course
	}
	return err
}

// room waits until this worker can take an event and says how many it may
// take: the free slots, and when calls are paced no more than its share of
// the per-second budget (more would only wait in its pacer, out of reach
// of the other workers, and the last of a batch would trail behind while
// they sit idle). While DingTalk refuses this worker's configuration it
// takes nothing, but for one event (probe) about once per ProbeInterval.
//
// While a backlog waits (the last pull was filled), it waits for an eighth
// of its room to be free before pulling: each pull is a subscription made
// and dropped on the server, and one per event costs more than the few
// milliseconds a slot waits for the others.
func (w *Worker) room(ctx context.Context, slots chan struct{}, freed <-chan struct{}, backlog bool) (n int, probe bool) {
	for ctx.Err() == nil {
		limit := cap(slots)
		var paced <-chan struct{}
		if w.pacer != nil {
			limit = min(limit, max(1, w.pacer.Share()))
			paced = w.pacer.Changed()
		}
		_, halted := w.halt.status()
		free := limit - len(slots)
		if backlog && free < max(1, limit/8) {
			free = 0
		}
		allowed, wake, halting := w.halt.allowance(w.cfg.Now(), free)
		if allowed > 0 {
			return allowed, halted
		}
		var probe <-chan time.Time
		t := time.NewTimer(wake)
		if wake > 0 {
			probe = t.C
		}
		select {
		case <-freed:
		case <-paced:
		case <-halting:
		case <-probe:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return 0, false
}
