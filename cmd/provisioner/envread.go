package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"

	"provisioner/messages"
	"provisioner/worker"
)

// readEnv fills dst (a struct of envconfig fields) from the environment.
// Its error is one line that names the variable and what is wrong with it,
// and never echoes a secret's value.
func readEnv(dst any) error {
	if err := envconfig.Process("", dst); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			value := strconv.Quote(pe.Value)
			if secretVars[pe.KeyName] {
				value = "its value"
			}
			return usageError(fmt.Sprintf("provisioner: %s: cannot read %s as %s", pe.KeyName, value, typeName(pe.TypeName)))
		}
		return usageError("provisioner: " + err.Error())
	}
	return nil
}

// secretVars are never echoed, not even in a configuration error.
var secretVars = map[string]bool{"DINGTALK_APP_SECRET": true, "NATS_CREDS": true, "NATS_PASSWORD": true, "NATS_KEY": true}

// workerDefaults gives each variable of the workers' configuration left
// unset its default, as worker.DefaultConfig has it: the defaults live
// there, once. A variable set (even to a value that is wrong) keeps its
// value, so that the checks can say what is wrong with it.
type workerDefaults struct{ d worker.Config }

func newWorkerDefaults() workerDefaults { return workerDefaults{worker.DefaultConfig()} }

func unset(name string) bool {
	_, set := os.LookupEnv(name)
	return !set
}

func (w workerDefaults) str(name string, v *string, def string) {
	if unset(name) {
		*v = def
	}
}

func (w workerDefaults) dur(name string, v *time.Duration, def time.Duration) {
	if unset(name) {
		*v = def
	}
}

// topology fills the subjects, streams and buckets.
func (w workerDefaults) topology(t *TopologyEnv, b *BudgetEnv) {
	d := w.d
	for _, f := range []struct {
		name string
		v    *string
		def  string
	}{
		{"CONSUMER", &b.Consumer, d.Consumer}, {"KV_BUDGET_BUCKET", &b.KVBudgetBucket, d.BudgetBucket},
		{"SUBJECT_PROJECT_CREATED", &b.SubjectProjectCreated, string(messages.ProjectCreated)},
		{"SUBJECT_EVENT_SCHEDULED", &t.SubjectEventScheduled, string(messages.EventScheduled)},
		{"SUBJECT_PROJECT_UPDATED", &t.SubjectProjectUpdated, string(messages.ProjectUpdated)},
		{"SUBJECT_EVENT_UPDATED", &t.SubjectEventUpdated, string(messages.EventUpdated)},
		{"SUBJECT_PROJECT_CLOSED", &t.SubjectProjectClosed, string(messages.ProjectClosed)},
		{"SUBJECT_EVENT_CANCELLED", &t.SubjectEventCancelled, string(messages.EventCancelled)},
		{"SUBJECT_GROUP_PROVISIONED", &t.SubjectGroupProvisioned, d.ProvisionedSubject},
		{"SUBJECT_GROUP_UPDATED", &t.SubjectGroupUpdated, d.UpdatedSubject},
		{"SUBJECT_GROUP_CLOSED", &t.SubjectGroupClosed, d.ClosedSubject},
		{"SUBJECT_GROUP_FAILED", &t.SubjectGroupFailed, d.FailedSubject},
		{"SUBJECT_DEAD_LETTER", &t.SubjectDeadLetter, d.DeadLetterSubject},
		{"SUBJECT_GROUP_CHANGED", &t.SubjectGroupChanged, d.ChangedSubject},
		{"SUBJECT_DINGTALK_EVENTS", &t.SubjectDingTalkEvents, d.HandSubject},
		{"STREAM_DINGTALK_EVENTS", &t.StreamDingTalkEvents, d.HandStream},
		{"STREAM_EVENTS", &t.StreamEvents, d.EventsStream}, {"STREAM_RESULTS", &t.StreamResults, d.ResultsStream},
		{"STREAM_DEAD_LETTERS", &t.StreamDeadLetters, d.DeadLetterStream},
		{"KV_BUCKET", &t.KVBucket, d.Bucket}, {"KV_PROJECT_BUCKET", &t.KVProjectBucket, d.ProjectBucket},
	} {
		w.str(f.name, f.v, f.def)
	}
}

// run fills the worker's own settings.
func (w workerDefaults) run(e *env) {
	d := w.d
	if unset("CONCURRENCY") {
		e.Concurrency = d.Concurrency
	}
	w.dur("ACK_WAIT", &e.AckWait, d.AckWait)
	w.dur("RETRY_BUDGET", &e.RetryBudget, d.RetryBudget)
	w.dur("RETENTION", &e.Retention, d.Retention)
	w.dur("SHUTDOWN_GRACE", &e.ShutdownGrace, d.ShutdownGrace)
	w.str("ON_CLOSE", &e.OnClose, d.OnClose)
	w.str("CLOSED_NAME_PREFIX", &e.ClosedNamePrefix, d.ClosedNamePrefix)
	w.str("ON_HAND_DISBAND", &e.OnHandDisband, d.OnHandDisband)
}
