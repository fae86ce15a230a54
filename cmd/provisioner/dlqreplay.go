package main

import (
	"context"
	"flag"
	"fmt"

	"provisioner/deadletter"
)

// DLQReplayCommand replays dead letters.
type DLQReplayCommand struct {
	main *Main
}

// Run replays the letters the flags pick, one at a time, printing each.
func (c *DLQReplayCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner dlq replay", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	ff := addFilterFlags(fs)
	seqs := fs.String("seq", "", "only these letters, by sequence (12,15,20)")
	dryRun := fs.Bool("dry-run", false, "print what would be done; change nothing")
	force := fs.Bool("force", false, fmt.Sprintf("replay letters already replayed %d times", deadletter.MaxReplays))
	fs.Usage = func() {
		fmt.Fprintf(c.main.Stderr, `Usage: provisioner dlq replay [-reason R] [-subject S] [-since D] [-seq N,…] [-dry-run] [-force]

For each dead letter picked: forgets the event's remembered failure (keeping
a group DingTalk already made, so none is made twice), publishes the original
event (payload and headers) to its subject again, and removes the letter.
An event that fails again leaves a new letter, with its replays counted; one
replayed %d times is refused unless -force. Interrupted, it is finished by
running it again. Reads NATS_URL, NATS_CREDS, SUBJECT_* and KV_BUCKET.

Flags:
`, deadletter.MaxReplays)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	letters, list, done, err := ff.pick(ctx, "dlq replay", fs, *seqs)
	if err != nil {
		return err
	}
	defer done()
	verb := ""
	if *dryRun {
		verb = "would be "
	}
	progress := func(i, n int, l deadletter.Letter, o deadletter.Outcome) {
		fmt.Fprintf(c.main.Stdout, "[%d/%d] letter %d  %s %s: %s%s (%s)\n", i, n, l.Seq, l.SourceSubject, l.EventID, verb, o.Action, o.Detail)
	}
	counts, err := letters.Replay(ctx, list, deadletter.ReplayOptions{DryRun: *dryRun, Force: *force, Progress: progress})
	summary := fmt.Sprintf("%d letter(s): %d %sreplayed, %d refused, %d already provisioned, %d pending, %d superseded",
		len(list), counts[deadletter.Replayed], verb, counts[deadletter.Refused], counts[deadletter.Provisioned], counts[deadletter.Pending], counts[deadletter.Superseded])
	if *dryRun {
		summary += "; nothing was changed (dry run)"
	}
	fmt.Fprintln(c.main.Stdout, summary)
	if err != nil {
		return fmt.Errorf("provisioner: %w (run it again to finish)", err)
	}
	if counts[deadletter.Refused] > 0 {
		return fmt.Errorf("provisioner: dlq replay: %d letter(s) refused after %d replays; use -force once the cause is fixed", counts[deadletter.Refused], deadletter.MaxReplays)
	}
	return nil
}
