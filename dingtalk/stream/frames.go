package stream

import (
	"encoding/json"
	"strconv"
	"time"
)

// Frame types and the SYSTEM topics DingTalk sends.
const (
	typeSystem   = "SYSTEM"
	typeEvent    = "EVENT"
	typeCallback = "CALLBACK"

	topicPing       = "ping"
	topicDisconnect = "disconnect"
)

// frame is what DingTalk sends: every header value is a string, and data
// is JSON carried as a string.
type frame struct {
	SpecVersion string            `json:"specVersion"`
	Type        string            `json:"type"`
	Headers     map[string]string `json:"headers"`
	Data        string            `json:"data"`
}

// reply answers a frame by its messageId.
type reply struct {
	Code    int               `json:"code"`
	Headers map[string]string `json:"headers"`
	Message string            `json:"message"`
	Data    string            `json:"data"`
}

// Event is one event DingTalk pushed, as its frame's headers and data say.
type Event struct {
	ID        string          // eventId: the same for every push of one event
	Type      string          // eventType: chat_quit, chat_update_owner, …
	CorpID    string          // eventCorpId
	AppID     string          // eventUnifiedAppId
	BornAt    time.Time       // eventBornTime
	MessageID string          // this push's messageId
	Data      json.RawMessage // the event's own fields
}

// event reads an EVENT frame.
func (f *frame) event() Event {
	ev := Event{
		ID: f.Headers["eventId"], Type: f.Headers["eventType"], CorpID: f.Headers["eventCorpId"],
		AppID: f.Headers["eventUnifiedAppId"], MessageID: f.Headers["messageId"], Data: json.RawMessage(f.Data),
	}
	if ms, err := strconv.ParseInt(f.Headers["eventBornTime"], 10, 64); err == nil {
		ev.BornAt = time.UnixMilli(ms).UTC()
	}
	return ev
}

// Event answers: stored, or push it again later.
const (
	statusSuccess = "SUCCESS"
	statusLater   = "LATER"
)

// ack is the answer to frame f: SUCCESS, or LATER with code 500 as the
// official SDK sends it.
func ack(f *frame, stored bool) reply {
	code, status, msg := 200, statusSuccess, "success"
	if !stored {
		code, status, msg = 500, statusLater, "later"
	}
	data, _ := json.Marshal(map[string]string{"status": status, "message": msg})
	return reply{Code: code, Headers: replyHeaders(f), Message: "ok", Data: string(data)}
}

// pong answers a SYSTEM ping with its data (the opaque) echoed.
func pong(f *frame) reply {
	return reply{Code: 200, Headers: replyHeaders(f), Message: "ok", Data: f.Data}
}

// notFound answers a frame nothing here handles (a CALLBACK), as the SDK does.
func notFound(f *frame) reply {
	return reply{Code: 404, Headers: replyHeaders(f), Message: "no handler", Data: ""}
}

func replyHeaders(f *frame) map[string]string {
	return map[string]string{"contentType": "application/json", "messageId": f.Headers["messageId"]}
}
