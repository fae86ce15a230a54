package worker

import (
	"fmt"
	"time"

	"provisioner/dingtalk"
	"provisioner/messages"
)

// retryLater hands a message back to JetStream, to be redelivered after
// delay: another delivery holds the event, this process is stopping, or work
// is paused.
type retryLater struct {
	delay  time.Duration
	why    handBack
	reason string
	// paused: the wait is the budget's, not the event's; its retry budget
	// starts again when it is next taken.
	paused bool
}

// handBack is why an event goes back to JetStream unfinished.
type handBack int

// Why events are handed back; String is the metrics' label.
const (
	handBackHeld          handBack = iota // another delivery holds the event or its project
	handBackPaused                        // work is paused (the quota, an operator)
	handBackMisconfigured                 // DingTalk refused this worker's configuration
	handBackNewer                         // a newer release's kind or record
	handBackStopping                      // shutting down while waiting to retry
	handBackInterrupted                   // the shutdown grace period ran out
	handBackError                         // the worker could not record or publish: it tries again
)

func (h handBack) String() string {
	return [...]string{"held", "paused", "misconfigured", "newer", "stopping", "interrupted", "error"}[h]
}

func (r *retryLater) Error() string {
	return fmt.Sprintf("worker: handed back for %v: %s", r.delay, r.reason)
}

// failure ends an event with a group.failed result. It is never retried.
type failure struct {
	reason   string          // one of messages.Reason*
	message  string          // a sentence for the person reading group.failed
	dingtalk *dingtalk.Error // DingTalk's last answer, when it gave one
	cause    error
}

// result is the failure as group.failed reports it, with DingTalk's answer as it came.
func (f *failure) result() messages.Failure {
	out := messages.Failure{Reason: f.reason, Message: f.message}
	if e := f.dingtalk; e != nil {
		if e.ErrCode != 0 {
			n := e.ErrCode
			out.DingTalkErrcode = &n
		}
		out.DingTalkCode, out.DingTalkRequestID = e.Code, e.RequestID
	}
	return out
}

func (f *failure) Error() string {
	if f.cause != nil {
		return "worker: " + f.reason + ": " + f.cause.Error()
	}
	return "worker: " + f.reason + ": " + f.message
}

func (f *failure) Unwrap() error { return f.cause }

// invalidFailure describes an event that did not decode.
func invalidFailure(err *messages.InvalidError) *failure {
	return &failure{reason: err.Reason, message: err.Error(), cause: err}
}

// newerDelay is how long an event this release must leave to a newer one
// waits before it is offered again (perhaps to a newer worker).
const newerDelay = 5 * time.Second

// leaveToNewer hands back, unfailed and unwritten, an event that a newer
// release must work: its kind, or a record it needs, is newer than this
// release knows. A rolling upgrade's newer workers take it.
func leaveToNewer(why string) *retryLater {
	return &retryLater{delay: newerDelay, paused: true, why: handBackNewer, reason: "left for a newer release: " + why}
}
