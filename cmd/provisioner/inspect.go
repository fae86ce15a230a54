package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

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

Prints the event's step record in words: how far it got, who holds it, the
group, the join link, whether it may be a duplicate and why, its replays and
its result. Reads NATS_URL, NATS_CREDS and KV_BUCKET.
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
	lines, err := recs.Describe(ctx, fs.Arg(0), fs.Arg(1))
	if errors.Is(err, worker.ErrNoRecord) {
		return fmt.Errorf("provisioner: inspect: no step record for %s %q: no worker has taken it, it was invalid (see provisioner dlq list), or it is older than RETENTION", fs.Arg(0), fs.Arg(1))
	}
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	for _, l := range lines {
		fmt.Fprintln(c.main.Stdout, l)
	}
	return nil
}
