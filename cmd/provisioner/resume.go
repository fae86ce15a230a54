package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/rs/zerolog"
)

// ResumeCommand ends a pause: the workers take events again at once.
type ResumeCommand struct {
	main *Main
}

// Run resumes the shared consumer.
func (c *ResumeCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner resume", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner resume

Ends a pause, whatever its reason (provisioner pause, DingTalk's monthly quota,
DINGTALK_MONTHLY_QUOTA): the workers take events again at once, and the events
handed back during the pause come back within ACK_WAIT. If the reason is still
there (the quota is still used up), the next DingTalk call pauses work again.
`)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	bc, done, err := openKeeper(ctx, zerolog.Nop())
	if err != nil {
		return err
	}
	defer done()
	k := bc.keeper
	if err := k.Resume(ctx); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	fmt.Fprintln(c.main.Stdout, "work resumed")
	st, err := k.Status(ctx)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if st.MonthlyQuota > 0 && st.Calls >= st.MonthlyQuota {
		fmt.Fprintf(c.main.Stdout, "note: %d calls this month reach DINGTALK_MONTHLY_QUOTA=%d; work pauses again at the next call unless the workers' quota is raised\n",
			st.Calls, st.MonthlyQuota)
	}
	return nil
}
