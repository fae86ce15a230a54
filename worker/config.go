package worker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/streams"
	"provisioner/telemetry"
)

// Config is what a Worker needs to know. Zero fields take the defaults
// below; cmd/provisioner fills it from the environment.
type Config struct {
	// Subjects maps each input subject to the kind of event it carries.
	// Default: the contract's six (DefaultSubjects).
	Subjects map[string]messages.Kind

	EventsStream     string // stream created for the input subjects when none captures them; PROVISIONER_EVENTS
	ResultsStream    string // stream created for the results when none captures them; PROVISIONER_RESULTS
	DeadLetterStream string // stream for dead letters; PROVISIONER_DEAD_LETTERS
	Consumer         string // durable pull consumer shared by all workers; provisioner
	Bucket           string // KV bucket of step records; provisioner_state
	BudgetBucket     string // KV bucket of the month's DingTalk calls and the pause; provisioner_budget
	// ProjectBucket is the KV bucket of project records (one per project or
	// scheduled event: its group, managed members, version, close), kept
	// without a TTL; provisioner_projects.
	ProjectBucket      string
	ProvisionedSubject string // group.provisioned
	UpdatedSubject     string // group.updated
	ClosedSubject      string // group.closed
	FailedSubject      string // group.failed
	// DeadLetterSubject prefixes the original subject: provisioner.dead_letter.project.created.
	DeadLetterSubject string

	Concurrency   int           // events worked at once by this process; 64
	AckWait       time.Duration // JetStream's lease on a delivered message; InProgress renews it; 30 s
	MaxAckPending int           // unacknowledged messages across all workers; 1000
	RetryBudget   time.Duration // how long transient DingTalk failures are retried per event; 10 min
	Retention     time.Duration // how long an event's outcome is remembered (and events and results kept); 30 days
	ShutdownGrace time.Duration // how long in-flight events may take to finish on shutdown; 20 s
	// ProbeInterval is how often a worker stopped by a refused configuration
	// (see Halt) tries again with a single event; 1 min.
	ProbeInterval time.Duration
	// CheckInterval is how often a worker looks again at the input
	// subjects (a producer's stream may have come to capture more), at the
	// consumer (an older release may have narrowed it), and at step records
	// an older release wrote; 30 s.
	CheckInterval time.Duration
	// ExpireInterval is how often a worker forgets closed projects whose
	// close is more than Retention old; 1 h, and never longer than Retention.
	ExpireInterval time.Duration
	InitialBackoff time.Duration         // first retry delay; 200 ms
	MaxBackoff     time.Duration         // longest retry delay; 30 s
	Storage        jetstream.StorageType // FileStorage
	// Replicas is how many copies JetStream keeps of every stream and bucket
	// the worker creates (1 to 5; 3 on a three-node cluster, so that losing
	// a node loses nothing); an existing one with fewer is raised. 1.
	Replicas int
	// QPS is the app's DingTalk calls per second per API, shared by every
	// worker on the same NATS (they divide it between them, through the
	// bucket BudgetBucket+"_pace"); 0: calls are not paced here.
	QPS float64
	// MonthlyQuota caps the DingTalk calls all workers together make in a
	// natural month (Asia/Shanghai); reaching it pauses work. 0: no cap of our own.
	MonthlyQuota int

	// Telemetry takes the worker's metrics and traces; nil: none (the trace
	// context an event arrives with still reaches its result).
	Telemetry *telemetry.Telemetry

	InstanceID string           // names this process in step records; default host-pid
	Now        func() time.Time // default time.Now

	// OnClose is what a close does to the group: CloseArchive (default),
	// CloseDisband (scene groups; plain ones are archived) or CloseKeep.
	OnClose string
	// ClosedNamePrefix goes before an archived group's name; "[已结束] ".
	ClosedNamePrefix string

	// ChangedSubject carries group.changed: a change someone made in
	// DingTalk that the project's record now follows; group.changed.
	ChangedSubject string
	// HandEvents turns on following DingTalk's group events (Stream mode,
	// DINGTALK_EVENTS=stream): StoreDingTalkEvent stores them on
	// HandSubject.<eventType> in HandStream, and Run works them from the
	// durable consumer HandConsumer.
	HandEvents   bool
	HandStream   string // PROVISIONER_DINGTALK_EVENTS
	HandSubject  string // dingtalk.event
	HandConsumer string // provisioner_dingtalk
	// OnHandDisband is what a group disbanded by hand leads to:
	// HandDisbandReport (default: the record is closed, group.closed says
	// so) or HandDisbandRecreate (an open project gets a new group at once).
	OnHandDisband string
}

// What a group disbanded by hand leads to (Config.OnHandDisband).
const (
	HandDisbandReport   = "report"
	HandDisbandRecreate = "recreate"
)

// What a close does to a group (Config.OnClose).
const (
	CloseArchive = "archive" // rename with ClosedNamePrefix and mute: one call
	CloseDisband = "disband" // dissolve a scene group; a plain group is archived
	CloseKeep    = "keep"    // no call: only the record is closed
)

// DefaultSubjects are the input subjects of the contract.
func DefaultSubjects() map[string]messages.Kind {
	out := make(map[string]messages.Kind, 6)
	for _, k := range messages.Kinds() {
		out[string(k)] = k
	}
	return out
}

// DefaultConfig is every default of Config in one place: what each zero
// field becomes (InstanceID and Now excepted: they are the process's). The
// commands read it for the variables they document.
func DefaultConfig() Config {
	return Config{
		Subjects:     DefaultSubjects(),
		EventsStream: "PROVISIONER_EVENTS", ResultsStream: "PROVISIONER_RESULTS", DeadLetterStream: "PROVISIONER_DEAD_LETTERS",
		Consumer: "provisioner", Bucket: "provisioner_state", BudgetBucket: "provisioner_budget", ProjectBucket: "provisioner_projects",
		ProvisionedSubject: "group.provisioned", UpdatedSubject: "group.updated", ClosedSubject: "group.closed",
		FailedSubject: "group.failed", DeadLetterSubject: "provisioner.dead_letter",
		Concurrency: 64, AckWait: 30 * time.Second, MaxAckPending: 1000, RetryBudget: 10 * time.Minute,
		Retention: 30 * 24 * time.Hour, ShutdownGrace: 20 * time.Second, ProbeInterval: time.Minute,
		CheckInterval: 30 * time.Second, ExpireInterval: time.Hour,
		InitialBackoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second, Storage: jetstream.FileStorage, Replicas: 1,
		OnClose: CloseArchive, ClosedNamePrefix: "[已结束] ",
		ChangedSubject: "group.changed", HandStream: "PROVISIONER_DINGTALK_EVENTS", HandSubject: "dingtalk.event",
		HandConsumer: "provisioner_dingtalk", OnHandDisband: HandDisbandReport,
	}
}

// recreateSubject is where a new group for a group disbanded by hand is
// asked for (ON_HAND_DISBAND=recreate): a complete update of the project
// (or of the scheduled event, events), worked like any other.
func (c Config) recreateSubject(events bool) string {
	if events {
		return c.HandSubject + ".recreate.event"
	}
	return c.HandSubject + ".recreate.project"
}

// PaceBucket is the bucket through which the workers share the per-second
// budget: BudgetBucket with "_pace".
func (c Config) PaceBucket() string { return c.BudgetBucket + "_pace" }

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Subjects) == 0 {
		c.Subjects = d.Subjects
	}
	for _, f := range []struct{ v, def *string }{
		{&c.EventsStream, &d.EventsStream}, {&c.ResultsStream, &d.ResultsStream}, {&c.DeadLetterStream, &d.DeadLetterStream},
		{&c.Consumer, &d.Consumer}, {&c.Bucket, &d.Bucket}, {&c.BudgetBucket, &d.BudgetBucket}, {&c.ProjectBucket, &d.ProjectBucket},
		{&c.ProvisionedSubject, &d.ProvisionedSubject}, {&c.UpdatedSubject, &d.UpdatedSubject}, {&c.ClosedSubject, &d.ClosedSubject},
		{&c.FailedSubject, &d.FailedSubject}, {&c.DeadLetterSubject, &d.DeadLetterSubject},
		{&c.OnClose, &d.OnClose}, {&c.ClosedNamePrefix, &d.ClosedNamePrefix},
		{&c.ChangedSubject, &d.ChangedSubject}, {&c.HandStream, &d.HandStream}, {&c.HandSubject, &d.HandSubject},
		{&c.HandConsumer, &d.HandConsumer}, {&c.OnHandDisband, &d.OnHandDisband},
	} {
		if *f.v == "" {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.AckWait, &d.AckWait}, {&c.RetryBudget, &d.RetryBudget}, {&c.Retention, &d.Retention}, {&c.ShutdownGrace, &d.ShutdownGrace},
		{&c.InitialBackoff, &d.InitialBackoff}, {&c.ProbeInterval, &d.ProbeInterval}, {&c.CheckInterval, &d.CheckInterval},
		{&c.MaxBackoff, &d.MaxBackoff},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.ExpireInterval == 0 {
		c.ExpireInterval = min(d.ExpireInterval, c.Retention) // never less often than Retention
	}
	for _, f := range []struct{ v, def *int }{{&c.Concurrency, &d.Concurrency}, {&c.MaxAckPending, &d.MaxAckPending}, {&c.Replicas, &d.Replicas}} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = fmt.Sprintf("%s-%d-%06x", host, os.Getpid(), rand.Uint32()&0xffffff) // unique among a process's workers too
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	var problems []string
	if c.Concurrency < 1 {
		problems = append(problems, "concurrency must be at least 1")
	}
	if c.MaxAckPending < c.Concurrency {
		problems = append(problems, "max ack pending must be at least the concurrency")
	}
	if c.Replicas < 1 || c.Replicas > streams.MaxReplicas {
		problems = append(problems, fmt.Sprintf("replicas must be 1 to %d, got %d", streams.MaxReplicas, c.Replicas))
	}
	if c.QPS < 0 {
		problems = append(problems, "QPS must not be negative")
	}
	if c.MonthlyQuota < 0 {
		problems = append(problems, "the monthly quota must not be negative")
	}
	if c.AckWait < time.Second {
		problems = append(problems, "ack wait must be at least 1s")
	}
	for subj := range c.Subjects {
		if subj == "" || strings.ContainsAny(subj, "*> ") {
			problems = append(problems, fmt.Sprintf("input subject %q must be a literal subject", subj))
		}
	}
	switch c.OnClose {
	case CloseArchive, CloseDisband, CloseKeep:
	default:
		problems = append(problems, fmt.Sprintf("on close must be %s, %s or %s, got %q", CloseArchive, CloseDisband, CloseKeep, c.OnClose))
	}
	switch c.OnHandDisband {
	case HandDisbandReport, HandDisbandRecreate:
	default:
		problems = append(problems, fmt.Sprintf("on hand disband must be %s or %s, got %q", HandDisbandReport, HandDisbandRecreate, c.OnHandDisband))
	}
	for _, s := range []string{c.ProvisionedSubject, c.UpdatedSubject, c.ClosedSubject, c.FailedSubject, c.DeadLetterSubject, c.ChangedSubject, c.HandSubject} {
		if s == "" || strings.ContainsAny(s, "*> ") {
			problems = append(problems, fmt.Sprintf("output subject %q must be a literal subject", s))
		}
	}
	if len(problems) > 0 {
		return errors.New("worker: " + strings.Join(problems, "; "))
	}
	return nil
}
