package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"
)

// DLQListCommand prints the dead letters.
type DLQListCommand struct {
	main *Main
}

// Run lists the letters the flags pick.
func (c *DLQListCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner dlq list", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	ff := addFilterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner dlq list [-reason R] [-subject S] [-since D]

Prints the dead letters, oldest first: the failed events the workers kept,
with why they failed. Reads NATS_URL, NATS_CREDS, SUBJECT_* and KV_BUCKET.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, list, done, err := ff.pick(ctx, "dlq list", fs, "")
	if err != nil {
		return err
	}
	defer done()
	tw := tabwriter.NewWriter(c.main.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSUBJECT\tEVENT ID\tREASON\tTIME\tREPLAYS\tMESSAGE")
	for _, l := range list {
		id := l.EventID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Seq, l.SourceSubject, id, l.Reason, l.Time.UTC().Format(time.RFC3339), l.Replays, l.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.main.Stderr, "%d dead letter(s)\n", len(list))
	return nil
}
