package messages

import "strings"

// Headers of a dead letter (provisioner.dead_letter.<subject>): the worker
// sets them when it keeps a failed event's original, and provisioner dlq
// reads them. Part of the contract (docs/contract.md, "Dead letter").
const (
	HeaderReason         = "Provisioner-Reason"          // the failure's reason word
	HeaderError          = "Provisioner-Error"           // the failure's message
	HeaderSourceSubject  = "Provisioner-Source-Subject"  // where the event arrived
	HeaderSourceSequence = "Provisioner-Source-Sequence" // its sequence in the events stream
	// HeaderReplays is set by provisioner dlq replay on the event it
	// publishes again: how many times it was replayed. A dead letter keeps
	// it, so replays are counted across failures.
	HeaderReplays = "Provisioner-Replays"
)

// ControlHeader reports whether a message header is one that NATS or
// JetStream acts on (Nats-Msg-Id, Nats-Expected-Stream, …): it is not copied
// from an event onto its dead letter, nor from a letter onto its replay:
// there they would act on another stream (a producer's Nats-Expected-Stream
// would have the dead-letter stream refuse every letter).
func ControlHeader(k string) bool {
	return len(k) >= len("Nats-") && strings.EqualFold(k[:len("Nats-")], "Nats-")
}

// Headers of a DingTalk event as the worker stores it (Stream mode): the
// message's subject is <SUBJECT_DINGTALK_EVENTS>.<eventType>, its body the
// event's data, and Nats-Msg-Id its eventId.
const (
	HeaderDingTalkEventID   = "DingTalk-Event-Id"
	HeaderDingTalkEventType = "DingTalk-Event-Type"
	HeaderDingTalkBornAt    = "DingTalk-Event-Born-Time" // milliseconds since the epoch, as DingTalk gave it
	HeaderDingTalkCorpID    = "DingTalk-Event-Corp-Id"
)
