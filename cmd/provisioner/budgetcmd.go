package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"provisioner/budget"
)

// BudgetCommand shows what the workers have spent of DingTalk's budget and
// whether work is paused.
type BudgetCommand struct {
	main *Main
}

// Run prints the budget's status.
func (c *BudgetCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner budget", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner budget [-json]

Shows the per-second budget (DINGTALK_QPS) and how the workers share it,
with each one's calls per API in its last second; the DingTalk calls the
workers made this month (Asia/Shanghai, as DingTalk counts) against
DINGTALK_MONTHLY_QUOTA; and whether work is paused, why and until when.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	bc, done, err := openKeeper(ctx, zerolog.Nop())
	if err != nil {
		return err
	}
	defer done()
	st, err := bc.keeper.Status(ctx)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	workers, err := budget.Members(ctx, bc.js, bc.env.paceBucket())
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if *asJSON {
		out, _ := json.MarshalIndent(struct {
			budget.Status
			QPS     float64                        `json:"qps"`
			Workers map[string]budget.MemberStatus `json:"workers"`
		}{st, bc.env.DingTalkQPS, workers}, "", "  ")
		fmt.Fprintln(c.main.Stdout, string(out))
		return nil
	}
	now := time.Now()
	fmt.Fprint(c.main.Stdout, describeShares(bc.env.DingTalkQPS, workers, now)+describeStatus(st, now))
	return nil
}

// describeShares is the per-second budget as the workers last published it:
// each one's share and its calls per API in its last second.
func describeShares(qps float64, workers map[string]budget.MemberStatus, now time.Time) string {
	out := fmt.Sprintf("per-second budget: %v calls/s per API (DINGTALK_QPS), shared by %d worker(s) heard in the last minute\n", qps, len(workers))
	total := map[string]int{}
	for _, id := range slices.Sorted(maps.Keys(workers)) {
		m := workers[id]
		out += fmt.Sprintf("  %s: share %d a window, heard %v ago", id, m.Share, now.Sub(m.Seen).Round(time.Second))
		for _, api := range slices.Sorted(maps.Keys(m.Calls)) {
			out += fmt.Sprintf(", %s %d", api, m.Calls[api])
			total[api] += m.Calls[api]
		}
		out += "\n"
	}
	for _, api := range slices.Sorted(maps.Keys(total)) {
		out += fmt.Sprintf("  %s: %d calls in the workers' last second\n", api, total[api])
	}
	return out
}

// describeStatus is the budget's status for a person.
func describeStatus(st budget.Status, now time.Time) string {
	out := fmt.Sprintf("month %s (Asia/Shanghai): %d DingTalk calls", st.Month, st.Calls)
	if st.MonthlyQuota > 0 {
		out += fmt.Sprintf(" of DINGTALK_MONTHLY_QUOTA=%d (%.0f%%)\n", st.MonthlyQuota, 100*float64(st.Calls)/float64(st.MonthlyQuota))
	} else {
		out += " (no quota of our own; DingTalk's refusal still pauses work)\n"
	}
	switch p := st.Paused; {
	case p == nil && st.ConsumerPaused:
		out += "work: paused in JetStream, reason not recorded (provisioner resume ends it)\n"
	case p == nil:
		out += "work: running\n"
	default:
		until := p.Until.Format(time.RFC3339)
		if p.Until.Sub(now) > untilResumed/2 {
			until = "provisioner resume"
		}
		out += fmt.Sprintf("work: PAUSED (%s) since %s until %s", p.Reason, p.Since.Format(time.RFC3339), until)
		if p.Detail != "" {
			out += ": " + p.Detail
		}
		out += "\n"
	}
	return out
}
