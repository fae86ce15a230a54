package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/telemetry"
)

// CloudEvents (binary content mode, NATS binding) attributes on every result.
// The body is unchanged. The type stays the same if the subjects are renamed.
const (
	CloudEventsSource          = "/provisioner"
	CloudEventsTypeProvisioned = "provisioner.group.provisioned"
	CloudEventsTypeFailed      = "provisioner.group.failed"
	CloudEventsTypeUpdated     = "provisioner.group.updated"
	CloudEventsTypeClosed      = "provisioner.group.closed"
	CloudEventsTypeChanged     = "provisioner.group.changed"
)

// publish sends a result with a message id, so that a republish (after a
// crash between publishing and recording) is dropped by the stream, and with
// CloudEvents headers derived from the result alone, so that a republish
// carries the same ones.
func (w *Worker) publish(ctx context.Context, subject, msgID string, data []byte) error {
	return publishCE(ctx, w.js, w.cfg, subject, msgID, data)
}

// PublishResult publishes a result as the workers do (see publish), for a
// command that publishes results of its own (provisioner reconcile): cfg
// names the result subjects, and so the CloudEvents type.
func PublishResult(ctx context.Context, js jetstream.JetStream, cfg Config, subject, msgID string, data []byte) error {
	return publishCE(ctx, js, cfg.withDefaults(), subject, msgID, data)
}

// publishCE is publish with cfg's defaults already filled in.
func publishCE(ctx context.Context, js jetstream.JetStream, cfg Config, subject, msgID string, data []byte) error {
	msg := nats.NewMsg(subject)
	msg.Data = data
	ceType := CloudEventsTypeFailed
	switch subject {
	case cfg.ProvisionedSubject:
		ceType = CloudEventsTypeProvisioned
	case cfg.UpdatedSubject:
		ceType = CloudEventsTypeUpdated
	case cfg.ClosedSubject:
		ceType = CloudEventsTypeClosed
	case cfg.ChangedSubject:
		ceType = CloudEventsTypeChanged
	}
	msg.Header.Set("ce-specversion", "1.0")
	msg.Header.Set("ce-id", msgID)
	msg.Header.Set("ce-source", CloudEventsSource)
	msg.Header.Set("ce-type", ceType)
	msg.Header.Set("content-type", "application/json")
	telemetry.Inject(ctx, msg.Header)
	var at struct {
		Provisioned time.Time `json:"provisioned_at"`
		Failed      time.Time `json:"failed_at"`
		Updated     time.Time `json:"updated_at"`
		Closed      time.Time `json:"closed_at"`
		Changed     time.Time `json:"changed_at"`
	}
	if json.Unmarshal(data, &at) == nil {
		for _, t := range []time.Time{at.Provisioned, at.Failed, at.Updated, at.Closed, at.Changed} {
			if !t.IsZero() {
				msg.Header.Set("ce-time", t.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("worker: publishing to %s: %w", subject, err)
	}
	return nil
}

// encodeJSON marshals results and step records (see messages.Encode).
func encodeJSON(v any) ([]byte, error) {
	data, err := messages.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return data, nil
}

// deadLetter copies the original message (sequence seq of stream), payload
// and headers, to <DeadLetterSubject>.<original subject> with the reason it failed.
func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, stream string, seq uint64, f *failure) error {
	out := nats.NewMsg(w.cfg.DeadLetterSubject + "." + msg.Subject())
	for k, vs := range msg.Headers() {
		if messages.ControlHeader(k) {
			continue
		}
		out.Header[k] = append([]string(nil), vs...)
	}
	out.Header.Set(messages.HeaderReason, f.reason)
	out.Header.Set(messages.HeaderError, truncate(f.message, 1024))
	out.Header.Set(messages.HeaderSourceSubject, msg.Subject())
	out.Header.Set(messages.HeaderSourceSequence, strconv.FormatUint(seq, 10))
	out.Data = msg.Data()
	telemetry.Inject(ctx, out.Header) // the failed delivery's context: a replay continues its trace
	if _, err := w.js.PublishMsg(ctx, out, jetstream.WithMsgID("dead-"+stream+"-"+strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("worker: publishing dead letter: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}
