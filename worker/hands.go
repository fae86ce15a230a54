package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk"
	"provisioner/dingtalk/stream"
	"provisioner/messages"
	"provisioner/streams"
	"provisioner/telemetry"
)

// DingTalk's group events (Config.HandEvents) reach the worker in two
// steps. StoreDingTalkEvent, Stream mode's handler, publishes each to
// JetStream with Nats-Msg-Id = its eventId and returns once stored: only
// then does DingTalk hear SUCCESS. Run then works them from the durable
// consumer HandConsumer like any other event (see follow): one at a time
// per worker, under the project's lock, one result per eventId.

// ensureHands finds or creates the stream for DingTalk's events and the
// durable consumer reading them.
func ensureHands(ctx context.Context, js jetstream.JetStream, c Config, e *streams.Ensurer) (jetstream.Consumer, error) {
	subject := c.HandSubject + ".>"
	if err := ensureOutputs(ctx, e, c, c.HandStream, []string{subject}, c.Retention, 10*time.Minute); err != nil {
		return nil, err
	}
	found, err := findStreams(ctx, e, []string{subject})
	if err != nil {
		return nil, err
	}
	name := cmp.Or(found[0], c.HandStream)
	var cons jetstream.Consumer
	err = e.Retry(ctx, fmt.Sprintf("consumer %q on stream %q", c.HandConsumer, name), func(ctx context.Context) error {
		var err error
		cons, err = js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
			Durable:       c.HandConsumer,
			Description:   "DingTalk group provisioner: group events DingTalk pushed",
			FilterSubject: subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: 256,
			Metadata:      map[string]string{contractKey: strconv.Itoa(messages.Contract)},
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return cons, nil
}

// StoreDingTalkEvent is the handler of a Stream-mode client
// (dingtalk/stream): it stores a group event in JetStream, on
// <HandSubject>.<eventType> with Nats-Msg-Id = its eventId (a repeat within
// the stream's duplicate window is dropped there), and returns nil once
// JetStream has it. Other events the app receives are not stored. Safe for
// concurrent use.
func (w *Worker) StoreDingTalkEvent(ctx context.Context, ev stream.Event) error {
	if !slices.Contains(dingtalk.GroupEventTypes(), ev.Type) {
		w.cfg.Telemetry.DingTalkEvent(ev.Type, telemetry.DingTalkIgnored)
		return nil
	}
	if ev.ID == "" {
		return errors.New("worker: a DingTalk event without an eventId cannot be stored once")
	}
	msg := nats.NewMsg(w.cfg.HandSubject + "." + ev.Type)
	msg.Data = ev.Data
	msg.Header.Set(messages.HeaderDingTalkEventID, ev.ID)
	msg.Header.Set(messages.HeaderDingTalkEventType, ev.Type)
	msg.Header.Set(messages.HeaderDingTalkCorpID, ev.CorpID)
	if !ev.BornAt.IsZero() {
		msg.Header.Set(messages.HeaderDingTalkBornAt, strconv.FormatInt(ev.BornAt.UnixMilli(), 10))
	}
	if _, err := w.js.PublishMsg(ctx, msg, jetstream.WithMsgID("dingtalk-"+ev.ID)); err != nil {
		return fmt.Errorf("worker: storing DingTalk event %s: %w", ev.ID, err)
	}
	w.cfg.Telemetry.DingTalkEvent(ev.Type, telemetry.DingTalkStored)
	return nil
}

// followHands works DingTalk's stored events until ctx ends, one at a
// time; on the way out it lets the one in hand finish and hands back
// those buffered (Drain).
// The new groups ON_HAND_DISBAND=recreate asks for are worked like any
// event (process), each on its own, since they call DingTalk.
func (w *Worker) followHands(ctx, workCtx context.Context) error {
	var mu sync.Mutex // one at a time: they are few, and their order matters
	var creating sync.WaitGroup
	recreate := w.cfg.HandSubject + ".recreate."
	cc, err := w.topo.hands.Consume(func(msg jetstream.Msg) {
		if ctx.Err() != nil {
			_ = msg.Nak()
			return
		}
		if strings.HasPrefix(msg.Subject(), recreate) {
			creating.Go(func() { w.process(workCtx, ctx.Done(), msg) })
			return
		}
		mu.Lock()
		defer mu.Unlock()
		w.followOne(workCtx, msg)
	}, jetstream.PullMaxMessages(16))
	if err != nil {
		return fmt.Errorf("worker: consuming DingTalk's events: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(w.cfg.ShutdownGrace):
		cc.Stop()
	}
	creating.Wait()
	return nil
}

// handType is a stored DingTalk event's type, from its header or subject.
func (w *Worker) handType(msg jetstream.Msg) string {
	if t := msg.Headers().Get(messages.HeaderDingTalkEventType); t != "" {
		return t
	}
	return strings.TrimPrefix(msg.Subject(), w.cfg.HandSubject+".")
}
