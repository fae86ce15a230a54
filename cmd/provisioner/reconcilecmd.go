package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"provisioner/budget"
	"provisioner/projects"
	"provisioner/reconcile"
	"provisioner/worker"
)

// ReconcileCommand finds what people changed in DingTalk that nobody
// reported, and has the records follow it.
type ReconcileCommand struct {
	main *Main
}

// Run reads every open group the records know (or one project's), prints
// a table of the differences and, unless -dry-run, publishes a result for
// each and folds it into the record.
func (c *ReconcileCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner reconcile", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	project := fs.String("project", "", "reconcile only this project_id (or event_id)")
	dryRun := fs.Bool("dry-run", false, "print the differences only: publish nothing, change no record (the groups are still read)")
	maxCalls := fs.Int("max-calls", 0, "refuse to start when the run needs more DingTalk calls than this (0: no cap of its own)")
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner reconcile [-project ID] [-dry-run] [-max-calls N]

Reads each open group the project records know (chat/get; for scene groups
sceneGroups/query and a members page), through the workers' shared budget,
and prints what people changed in DingTalk that the records did not learn:
members gone or added, a new owner or name, a dissolved group. Each is
published as group.changed with "source": "reconcile" (a dissolved group as
group.closed with "closed_by": "dingtalk"), and the record then follows it by
the same rules as DingTalk's events (with DINGTALK_EVENTS=stream and
ON_HAND_DISBAND=recreate, a dissolved group of an open project is replaced by
a new one). It refuses to start when the run needs
more calls than -max-calls, or more than 10% of the month's remaining quota
(DINGTALK_MONTHLY_QUOTA), and says how many it needs. It reads the worker's
environment.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	o := &opsEnv{BudgetEnv: e.BudgetEnv, TopologyEnv: e.TopologyEnv}
	js, done, err := o.connect(nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return err
	}
	defer done()
	cfg := e.workerConfig()
	log := zerolog.New(c.main.Stderr).With().Timestamp().Str("service", "provisioner").Str("command", "reconcile").Logger()

	kv, err := js.KeyValue(ctx, e.KVProjectBucket)
	if err != nil {
		return fmt.Errorf("provisioner: the project records (bucket %s): %w", e.KVProjectBucket, err)
	}
	store := projects.NewStore(js, kv, e.AckWait, time.Now)
	targets, err := reconcile.Targets(ctx, store, *project)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if *project != "" && len(targets) == 0 {
		return usageError(fmt.Sprintf("provisioner: reconcile: no open project %q with a group", *project))
	}
	keeper, err := budget.Open(ctx, js, e.budgetOptions(log))
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if err := checkCalls(ctx, keeper, reconcile.Calls(targets), *maxCalls); err != nil {
		return err
	}
	groups, _, err := e.groups(nil)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	id := strings.NewReplacer(".", "_", " ", "_").Replace(fmt.Sprintf("reconcile-%s-%d", host, os.Getpid()))
	pacer, err := budget.StartPacer(ctx, js, budget.PacerOptions{Bucket: o.paceBucket(), ID: id, Limit: max(1, int(e.DingTalkQPS)),
		Storage: cfg.Storage, Replicas: e.NATSReplicas, Log: log})
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	defer pacer.Stop(context.WithoutCancel(ctx))

	r := &reconcile.Reconciler{
		Store: store, Groups: groups, Holder: id, Now: time.Now,
		Spend: func(ctx context.Context, api string) error {
			if err := keeper.Spend(ctx); err != nil {
				return err
			}
			return pacer.Wait(ctx, api)
		},
		Publish: func(ctx context.Context, subject, msgID string, data []byte) error {
			return worker.PublishResult(ctx, js, cfg, subject, msgID, data)
		},
		ChangedSubject: cfg.ChangedSubject, ClosedSubject: cfg.ClosedSubject,
	}
	if cfg.HandEvents && cfg.OnHandDisband == worker.HandDisbandRecreate {
		r.Recreate = func(ctx context.Context, key string, rec *projects.Record, id string) error {
			return worker.AskRecreate(ctx, js, cfg, key, rec, id)
		}
	}
	prog := newCountProgress(c.main.Stderr, log, "groups read", len(targets))
	found, failed, err := r.Run(ctx, targets, *dryRun, prog.add)
	prog.stop()
	printFindings(c.main.Stdout, found, *dryRun)
	for _, f := range failed {
		log.Warn().Str("project", f.Record.RefID).Str("group", projects.GroupID(&f.Record)).Err(f.Err).Msg("group not read: try again later")
	}
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	verb := "followed (group.changed published)"
	if *dryRun {
		verb = "found (dry run: nothing published)"
	}
	fmt.Fprintf(c.main.Stdout, "%d changes %s in %d groups read; %d not read\n", len(found), verb, len(targets)-len(failed), len(failed))
	return nil
}

// checkCalls refuses a run that needs more calls than maxCalls, or more
// than a tenth of what is left of the month's quota.
func checkCalls(ctx context.Context, keeper *budget.Keeper, need, maxCalls int) error {
	if maxCalls > 0 && need > maxCalls {
		return usageError(fmt.Sprintf("provisioner: reconcile needs %d DingTalk calls, more than -max-calls %d", need, maxCalls))
	}
	st, err := keeper.Status(ctx)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if st.MonthlyQuota > 0 {
		left := max(0, st.MonthlyQuota-st.Calls)
		if need*10 > left {
			return usageError(fmt.Sprintf("provisioner: reconcile needs %d DingTalk calls, more than 10%% of the %d left of this month's quota of %d",
				need, left, st.MonthlyQuota))
		}
	}
	return nil
}

// printFindings writes the table of differences.
func printFindings(w io.Writer, found []reconcile.Finding, dryRun bool) {
	if len(found) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECT\tGROUP\tCHANGE\tDETAIL")
	for _, f := range found {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Record.RefID, f.Group, f.Hand.Change, f.Detail)
	}
	_ = tw.Flush()
}

// countProgress shows how far a run got: redrawn in place on a terminal,
// a JSON line every 5 s otherwise, and a last one at the end.
type countProgress struct {
	done  atomic.Int64
	total int
	quit  chan struct{}
	out   chan struct{}
}

func newCountProgress(w io.Writer, log zerolog.Logger, what string, total int) *countProgress {
	p := &countProgress{total: total, quit: make(chan struct{}), out: make(chan struct{})}
	tty, every := isTerminal(w), 5*time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	report := func(final bool) {
		n := p.done.Load()
		if tty {
			fmt.Fprintf(w, "\r%s: %d of %d", what, n, total)
			if final {
				fmt.Fprintln(w)
			}
			return
		}
		log.Info().Int64("done", n).Int("total", total).Bool("final", final).Msg(what)
	}
	go func() {
		defer close(p.out)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				report(false)
			case <-p.quit:
				report(true)
				return
			}
		}
	}()
	return p
}

func (p *countProgress) add() { p.done.Add(1) }

func (p *countProgress) stop() { close(p.quit); <-p.out }
