package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/worker"
)

// TopologyEnv names what the workers read and write on NATS besides the
// budget: subjects, streams and the step-record bucket. The worker, dlq and
// inspect read it alike. (Exported so that envconfig fills it when embedded.)
type TopologyEnv struct {
	SubjectEventScheduled   string `envconfig:"SUBJECT_EVENT_SCHEDULED"`
	SubjectProjectUpdated   string `envconfig:"SUBJECT_PROJECT_UPDATED"`
	SubjectEventUpdated     string `envconfig:"SUBJECT_EVENT_UPDATED"`
	SubjectProjectClosed    string `envconfig:"SUBJECT_PROJECT_CLOSED"`
	SubjectEventCancelled   string `envconfig:"SUBJECT_EVENT_CANCELLED"`
	SubjectGroupProvisioned string `envconfig:"SUBJECT_GROUP_PROVISIONED"`
	SubjectGroupUpdated     string `envconfig:"SUBJECT_GROUP_UPDATED"`
	SubjectGroupClosed      string `envconfig:"SUBJECT_GROUP_CLOSED"`
	SubjectGroupFailed      string `envconfig:"SUBJECT_GROUP_FAILED"`
	SubjectDeadLetter       string `envconfig:"SUBJECT_DEAD_LETTER"`
	SubjectGroupChanged     string `envconfig:"SUBJECT_GROUP_CHANGED"`
	SubjectDingTalkEvents   string `envconfig:"SUBJECT_DINGTALK_EVENTS"`
	StreamDingTalkEvents    string `envconfig:"STREAM_DINGTALK_EVENTS"`
	StreamEvents            string `envconfig:"STREAM_EVENTS"`
	StreamResults           string `envconfig:"STREAM_RESULTS"`
	StreamDeadLetters       string `envconfig:"STREAM_DEAD_LETTERS"`
	KVBucket                string `envconfig:"KV_BUCKET"`
	KVProjectBucket         string `envconfig:"KV_PROJECT_BUCKET"`
}

// inputs maps each input subject to its kind.
func (t *TopologyEnv) inputs(b *BudgetEnv) map[string]messages.Kind {
	return map[string]messages.Kind{
		b.SubjectProjectCreated: messages.ProjectCreated, t.SubjectEventScheduled: messages.EventScheduled,
		t.SubjectProjectUpdated: messages.ProjectUpdated, t.SubjectEventUpdated: messages.EventUpdated,
		t.SubjectProjectClosed: messages.ProjectClosed, t.SubjectEventCancelled: messages.EventCancelled,
	}
}

// subjects names every subject variable with its value, for the checks.
func (t *TopologyEnv) subjects(b *BudgetEnv) [][2]string {
	return [][2]string{
		{"SUBJECT_PROJECT_CREATED", b.SubjectProjectCreated}, {"SUBJECT_EVENT_SCHEDULED", t.SubjectEventScheduled},
		{"SUBJECT_PROJECT_UPDATED", t.SubjectProjectUpdated}, {"SUBJECT_EVENT_UPDATED", t.SubjectEventUpdated},
		{"SUBJECT_PROJECT_CLOSED", t.SubjectProjectClosed}, {"SUBJECT_EVENT_CANCELLED", t.SubjectEventCancelled},
		{"SUBJECT_GROUP_PROVISIONED", t.SubjectGroupProvisioned}, {"SUBJECT_GROUP_UPDATED", t.SubjectGroupUpdated},
		{"SUBJECT_GROUP_CLOSED", t.SubjectGroupClosed}, {"SUBJECT_GROUP_FAILED", t.SubjectGroupFailed},
		{"SUBJECT_DEAD_LETTER", t.SubjectDeadLetter}, {"SUBJECT_GROUP_CHANGED", t.SubjectGroupChanged},
		{"SUBJECT_DINGTALK_EVENTS", t.SubjectDingTalkEvents},
	}
}

// opsEnv is what the operators' commands (dlq, inspect) read.
type opsEnv struct {
	BudgetEnv
	TopologyEnv
}

// workerConfig is what the workers read and write on NATS, and the
// budget's bucket and quota: all the operators' commands need.
func (t *TopologyEnv) workerConfig(b *BudgetEnv) worker.Config {
	return worker.Config{
		Subjects:     t.inputs(b),
		EventsStream: t.StreamEvents, ResultsStream: t.StreamResults, DeadLetterStream: t.StreamDeadLetters,
		Consumer: b.Consumer, Bucket: t.KVBucket, ProjectBucket: t.KVProjectBucket, BudgetBucket: b.KVBudgetBucket, MonthlyQuota: b.DingTalkMonthlyQuota, Replicas: b.NATSReplicas,
		ProvisionedSubject: t.SubjectGroupProvisioned, UpdatedSubject: t.SubjectGroupUpdated, ClosedSubject: t.SubjectGroupClosed,
		FailedSubject: t.SubjectGroupFailed, DeadLetterSubject: t.SubjectDeadLetter,
		ChangedSubject: t.SubjectGroupChanged, HandSubject: t.SubjectDingTalkEvents, HandStream: t.StreamDingTalkEvents,
	}
}

// workerConfig is the workers' configuration as far as the environment of
// the operators' commands gives it.
func (o *opsEnv) workerConfig() worker.Config { return o.TopologyEnv.workerConfig(&o.BudgetEnv) }

// readOps reads the operators' commands' environment.
func readOps() (*opsEnv, error) {
	o := &opsEnv{}
	if err := readEnv(o); err != nil {
		return nil, err
	}
	newWorkerDefaults().topology(&o.TopologyEnv, &o.BudgetEnv)
	return o, nil
}

// openOps reads the environment and connects to the NATS the workers use.
func openOps() (*opsEnv, jetstream.JetStream, func(), error) {
	o, err := readOps()
	if err != nil {
		return nil, nil, nil, err
	}
	js, done, err := o.connect()
	return o, js, done, err
}

// connect connects to the NATS the workers use (NATS_URL, else a worker's
// embedded server on NATS_LISTEN), once, without reconnecting unless extra
// options say otherwise. done closes the connection.
func (o *opsEnv) connect(extra ...nats.Option) (js jetstream.JetStream, done func(), err error) {
	url := o.NATSURL
	if url == "" {
		url = "nats://" + o.NATSListen
	}
	opts := append([]nats.Option{nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}, extra...)
	nc, js, err := o.NATSEnv.jetStream(url, opts...)
	if err != nil {
		return nil, nil, err
	}
	return js, nc.Close, nil
}

// openRecords opens the workers' step records.
func openRecords(ctx context.Context) (*worker.Records, *opsEnv, func(), error) {
	o, js, done, err := openOps()
	if err != nil {
		return nil, nil, nil, err
	}
	recs, err := worker.OpenRecords(ctx, js, o.workerConfig())
	if err != nil {
		done()
		return nil, nil, nil, fmt.Errorf("provisioner: %w", err)
	}
	return recs, o, done, nil
}
