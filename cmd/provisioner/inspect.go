package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"provisioner/worker"
)

// InspectCommand prints an event's step record in words.
type InspectCommand struct {
	main *Main
}

// Run prints what the workers recorded about one event.
func (c *InspectCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner inspect", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner inspect <subject> <event id>
       provisioner inspect project <project_id>
       provisioner inspect event <event_id>

The first prints the event's step record in words: how far it got, who holds
it, the group, the join link, whether it may be a duplicate and why, its
replays and its result. Reads NATS_URL, NATS_CREDS and KV_BUCKET.

The others print a project's (or scheduled event's) record: its group's ids
and kind, owner, the members the provisioner manages, the version applied,
its close and when the record expires (RETENTION after the close). Reads
KV_PROJECT_BUCKET and RETENTION too. A creation that was its project's first
event keeps its step there, not in a step record of its own: these print it.
`)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageError("provisioner: inspect: want a subject and an event id, e.g. provisioner inspect project.created evt-42")
	}
	recs, _, done, err := openRecords(ctx)
	if err != nil {
		return err
	}
	defer done()
	if family := fs.Arg(0); family == "project" || family == "event" {
		return c.project(ctx, recs, family, fs.Arg(1))
	}
	lines, err := recs.Describe(ctx, fs.Arg(0), fs.Arg(1))
	if errors.Is(err, worker.ErrNoRecord) {
		return fmt.Errorf("provisioner: inspect: no step record for %s %q: no worker has taken it, it was invalid (see provisioner dlq list), "+
			"it is older than RETENTION, or its project's record keeps it: a creation that was its project's first event, or an update "+
			"worked in one delivery (provisioner inspect project <project_id>, or event <event_id>)", fs.Arg(0), fs.Arg(1))
	}
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	for _, l := range lines {
		fmt.Fprintln(c.main.Stdout, l)
	}
	return nil
}

// retentionEnv is the one worker setting inspect project needs beyond the
// operators' environment.
type retentionEnv struct {
	Retention time.Duration `envconfig:"RETENTION"`
}

// project prints a project's record.
func (c *InspectCommand) project(ctx context.Context, recs *worker.Records, family, refID string) error {
	env := retentionEnv{Retention: worker.DefaultConfig().Retention}
	if err := readEnv(&env); err != nil {
		return err
	}
	lines, err := recs.DescribeProject(ctx, family, refID, env.Retention)
	if errors.Is(err, worker.ErrNoRecord) {
		return fmt.Errorf("provisioner: inspect: no record for %s_id %q: no event of it was worked, or it was closed more than RETENTION ago", family, refID)
	}
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	for _, l := range lines {
		fmt.Fprintln(c.main.Stdout, l)
	}
	return nil
}
