package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"provisioner/budget"
)

// PauseCommand stops every worker taking events, until a time or until resumed.
type PauseCommand struct {
	main *Main
}

// untilResumed is how long a pause without -until lasts: until someone resumes.
const untilResumed = 10 * 365 * 24 * time.Hour

// Run pauses the shared consumer and records why.
func (c *PauseCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner pause", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	until := fs.String("until", "", "when work starts again by itself: a time (2026-12-01T00:00:00+08:00) or a duration from now (90m); default: at provisioner resume")
	why := fs.String("why", "", "a note for whoever finds work paused")
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner pause [-until T] [-why text]

Stops every worker taking events: the durable consumer is paused in JetStream,
so workers started later wait too. Events being worked finish or are handed
back; none fails. provisioner resume ends the pause early. Reads NATS_URL,
NATS_CREDS, CONSUMER, SUBJECT_PROJECT_CREATED and KV_BUDGET_BUCKET.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now()
	end, err := parseUntil(*until, now)
	if err != nil {
		return err
	}
	bc, done, err := openKeeper(ctx, zerolog.Nop())
	if err != nil {
		return err
	}
	defer done()
	k := bc.keeper
	if err := k.Pause(ctx, budget.Pause{Reason: budget.ReasonOperator, Detail: *why, Since: now, Until: end}); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if *until == "" {
		fmt.Fprintln(c.main.Stdout, "work paused until provisioner resume")
	} else {
		fmt.Fprintf(c.main.Stdout, "work paused until %s\n", end.Format(time.RFC3339))
	}
	return nil
}

// parseUntil reads -until: empty (until resumed), a duration or a time.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now.Add(untilResumed), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, usageError(fmt.Sprintf("provisioner: pause: -until %s is not in the future", s))
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageError(fmt.Sprintf("provisioner: pause: -until must be a duration (90m) or an RFC 3339 time (2026-12-01T00:00:00+08:00), got %q", s))
	}
	if !t.After(now) {
		return time.Time{}, usageError(fmt.Sprintf("provisioner: pause: -until %s is not in the future", s))
	}
	return t, nil
}
