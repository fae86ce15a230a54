package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"provisioner/deadletter"
	"provisioner/worker"
)

// DLQCommand dispatches to dlq list and dlq replay.
type DLQCommand struct {
	main *Main
}

// Run runs dlq list or dlq replay.
func (c *DLQCommand) Run(ctx context.Context, args []string) error {
	var sub string
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		return (&DLQListCommand{main: c.main}).Run(ctx, args)
	case "replay":
		return (&DLQReplayCommand{main: c.main}).Run(ctx, args)
	case "", "-h", "-help", "--help", "help":
		fmt.Fprint(c.main.Stderr, `Usage: provisioner dlq list|replay [flags]

	list    a table of dead letters: sequence, subject, event id, reason, time, message
	replay  forget each event's failure and publish it again (at most 3 times without -force)

Use "provisioner dlq <list|replay> -h" for their flags.
`)
		if sub == "" {
			return usageError("provisioner: dlq: say list or replay")
		}
		return nil
	}
	return usageError(fmt.Sprintf("provisioner: dlq: unknown subcommand %q (list or replay)", sub))
}

// filterFlags are the flags list and replay share.
type filterFlags struct {
	reason, subject, since *string
}

func addFilterFlags(fs *flag.FlagSet) filterFlags {
	return filterFlags{
		reason:  fs.String("reason", "", "only letters that failed for this reason (dingtalk_rejected, retries_exhausted, invalid_event, …)"),
		subject: fs.String("subject", "", "only events from this subject (project.created, event.scheduled)"),
		since:   fs.String("since", "", "only letters written since: a duration back from now (24h) or an RFC 3339 time"),
	}
}

// filter reads the flags into a deadletter.Filter.
func (f filterFlags) filter(cmd string, now time.Time) (deadletter.Filter, error) {
	out := deadletter.Filter{Reason: *f.reason, Subject: *f.subject}
	if s := *f.since; s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			out.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			out.Since = t
		} else {
			return out, usageError(fmt.Sprintf("provisioner: %s: -since must be a positive duration (24h) or an RFC 3339 time, got %q", cmd, s))
		}
	}
	return out, nil
}

// parseSeqs reads -seq 12,15,20.
func parseSeqs(cmd, s string) ([]uint64, error) {
	if s == "" {
		return nil, nil
	}
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
		if err != nil || n == 0 {
			return nil, usageError(fmt.Sprintf("provisioner: %s: -seq must be letter sequences separated by commas (12,15), got %q", cmd, part))
		}
		out = append(out, n)
	}
	return out, nil
}

// pick checks that fs has no arguments left, reads the filter (and -seq),
// opens the dead letters and lists those picked. done closes the connection.
func (ff filterFlags) pick(ctx context.Context, cmd string, fs *flag.FlagSet, seqs string) (*deadletter.Letters, []deadletter.Letter, func(), error) {
	if fs.NArg() > 0 {
		return nil, nil, nil, usageError(fmt.Sprintf("provisioner: %s: unexpected argument %q", cmd, fs.Arg(0)))
	}
	f, err := ff.filter(cmd, time.Now())
	if err != nil {
		return nil, nil, nil, err
	}
	if f.Seqs, err = parseSeqs(cmd, seqs); err != nil {
		return nil, nil, nil, err
	}
	o, js, done, err := openOps()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := o.workerConfig()
	recs, err := worker.OpenRecords(ctx, js, cfg)
	var l *deadletter.Letters
	if err == nil {
		l, err = deadletter.Open(ctx, js, deadletter.Options{DeadLetterSubject: cfg.DeadLetterSubject, Subjects: cfg.Subjects, Records: recs})
	}
	if err == nil {
		var list []deadletter.Letter
		if list, err = l.List(ctx, f); err == nil {
			return l, list, done, nil
		}
	}
	done()
	return nil, nil, nil, fmt.Errorf("provisioner: %w", err)
}
