package worker

import (
	"fmt"
	"time"

	"provisioner/messages"
)

// retryLater hands a message back to JetStream, to be redelivered after
// delay: another delivery holds the event, or this process is stopping.
type retryLater struct {
	delay  time.Duration
	reason string
}

func (r *retryLater) Error() string {
	return fmt.Sprintf("worker: handed back for %v: %s", r.delay, r.reason)
}

// failure ends an event with a group.failed result. It is never retried.
type failure struct {
	reason  string // one of messages.Reason*
	message string // a sentence for the person reading group.failed
	errcode *int   // DingTalk's errcode, when DingTalk refused
	cause   error
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
