package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/batch"
	"provisioner/messages"
)

// BatchCommand publishes a file of rows as events and writes a CSV of what
// became of each: batch onboarding. It keeps no state of its own, so it can
// be stopped and run again at any point.
type BatchCommand struct {
	main *Main
}

// batchFlags are the command's arguments.
type batchFlags struct {
	file, out, subject  string
	dryRun, skipInvalid bool
	wait, every         time.Duration
}

// Run reads and checks the file, publishes the rows that have neither a
// result nor an event yet, waits for their results and writes the CSV.
func (c *BatchCommand) Run(ctx context.Context, args []string) error {
	o, err := readOps()
	if err != nil {
		return err
	}
	kinds := map[string]messages.Kind{o.SubjectProjectCreated: messages.ProjectCreated, o.SubjectEventScheduled: messages.EventScheduled,
		o.SubjectProjectUpdated: messages.ProjectUpdated, o.SubjectEventUpdated: messages.EventUpdated}
	a, err := c.parse(args, o)
	if err != nil {
		return err
	}
	in, err := os.Open(a.file)
	if err != nil {
		return usageError("provisioner: batch: " + err.Error())
	}
	f, err := batch.Read(in, a.subject, kinds[a.subject])
	in.Close()
	if err != nil {
		return fmt.Errorf("provisioner: %s: %w", a.file, err)
	}
	if err := c.check(f, a); err != nil || a.dryRun {
		return err
	}

	js, done, err := o.connect(nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return err
	}
	defer done()
	streams, err := batch.Locate(ctx, js, a.subject, o.SubjectGroupProvisioned, o.SubjectGroupUpdated, o.SubjectGroupFailed)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	t := batch.NewTracker(f)
	p := newBatchProgress(c.main.Stderr, t, a.file, a.every)
	defer p.stop()
	caughtUp, stopFollowing, err := batch.Follow(ctx, js, streams, t)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	defer stopFollowing()
	publishErr := c.publish(ctx, js, streams, f, t, p, caughtUp)
	if publishErr == nil {
		c.await(ctx, t, p, a.wait)
	}
	p.stop()
	return c.finish(f, t, a, publishErr)
}

func (c *BatchCommand) parse(args []string, o *opsEnv) (*batchFlags, error) {
	fs := flag.NewFlagSet("provisioner batch", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	a := &batchFlags{}
	fs.StringVar(&a.file, "f", "", "the `file` of rows: CSV with a header row, or JSONL (required)")
	fs.StringVar(&a.out, "o", "", "where to write the results CSV; - for stdout (default: beside the file, NAME.results.csv)")
	fs.StringVar(&a.subject, "subject", o.SubjectProjectCreated, fmt.Sprintf("publish the rows as %s, %s, %s or %s events", o.SubjectProjectCreated, o.SubjectEventScheduled, o.SubjectProjectUpdated, o.SubjectEventUpdated))
	fs.BoolVar(&a.dryRun, "dry-run", false, "check every row as the worker will, print each problem, and publish nothing")
	fs.BoolVar(&a.skipInvalid, "skip-invalid", false, "publish the valid rows and report the invalid ones in the results, instead of stopping")
	fs.DurationVar(&a.wait, "wait", 0, "stop waiting for results after this long and write what is known (default: until every row has one)")
	fs.DurationVar(&a.every, "progress", 5*time.Second, "how often to print a progress line when stderr is not a terminal")
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner batch -f FILE [-o results.csv] [-subject project.created|event.scheduled|project.updated|event.updated] [-dry-run] [-skip-invalid] [-wait D]

Publishes one event per row of FILE to the workers' NATS (NATS_URL, default
nats://127.0.0.1:4222), waits for their results, and writes a CSV with one
line per row, in the file's order: line, id, status (provisioned, updated,
failed, invalid, pending), chatid, invite_url, member_count,
possible_duplicate, reason, message.

CSV columns: id, name (or title), owner (or organizer), members (or
attendees; userids separated by ';'), project_id or event_id, starts_at,
version, group.<setting>, metadata.<key>. A row without an id gets one
derived from its content. For updates, project_id (or event_id) is required
and an empty name, owner or members cell leaves that field as the project
has it. JSONL: one event body per line, as in the contract.

Run it again at any time: rows that have a result or were published are not
published again. Exit status: 0 when every row was provisioned, 1 when any
failed, was invalid or is still pending, 2 on a usage error.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, usageError(fmt.Sprintf("provisioner: batch: unexpected argument %q (the file is given with -f)", fs.Arg(0)))
	case a.file == "":
		return nil, usageError("provisioner: batch: -f FILE is required")
	case a.subject != o.SubjectProjectCreated && a.subject != o.SubjectEventScheduled && a.subject != o.SubjectProjectUpdated && a.subject != o.SubjectEventUpdated:
		return nil, usageError(fmt.Sprintf("provisioner: batch: -subject must be %s, %s, %s or %s, got %q",
			o.SubjectProjectCreated, o.SubjectEventScheduled, o.SubjectProjectUpdated, o.SubjectEventUpdated, a.subject))
	case a.wait < 0 || a.every <= 0:
		return nil, usageError("provisioner: batch: -wait must not be negative, and -progress must be positive")
	}
	if a.out == "" {
		a.out = strings.TrimSuffix(a.file, filepath.Ext(a.file)) + ".results.csv"
	}
	if same(a.out, a.file) {
		return nil, usageError(fmt.Sprintf("provisioner: batch: -o %s would overwrite the input", a.out))
	}
	return a, nil
}

// same reports whether two paths name one file.
func same(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// check prints the invalid rows' problems. A dry run prints them on stdout
// and fails if there are any; otherwise they stop the command unless
// -skip-invalid.
func (c *BatchCommand) check(f *batch.File, a *batchFlags) error {
	invalid := f.Invalid()
	w := c.main.Stderr
	if a.dryRun {
		w = c.main.Stdout
	}
	if invalid > 0 && (a.dryRun || !a.skipInvalid) {
		for _, p := range f.Problems() {
			fmt.Fprintln(w, p)
		}
	}
	switch {
	case a.dryRun && invalid > 0:
		return fmt.Errorf("provisioner: batch: %d of %d rows are invalid; nothing was published", invalid, len(f.Rows))
	case a.dryRun:
		fmt.Fprintf(c.main.Stderr, "%d rows, all valid; nothing was published (dry run)\n", len(f.Rows))
	case invalid > 0 && !a.skipInvalid:
		return fmt.Errorf("provisioner: batch: %d of %d rows are invalid (above); nothing was published: correct them, or add -skip-invalid to publish the rest", invalid, len(f.Rows))
	}
	return nil
}

// publish waits until the results already stored are read, then publishes each valid row
// that has no result and whose event is not in the stream already.
func (c *BatchCommand) publish(ctx context.Context, js jetstream.JetStream, s batch.Streams, f *batch.File, t *batch.Tracker, p *batchProgress, caughtUp <-chan struct{}) error {
	p.setPhase("reading results")
	select {
	case <-caughtUp:
	case <-ctx.Done():
		return nil
	}
	var todo []*batch.Row
	for _, r := range f.Rows {
		if r.Valid() && !t.Has(r.Key) {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p.setPhase("finding published rows")
	published, err := batch.Published(ctx, js, s, p.scanned)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("provisioner: %w", err)
	}
	var fresh []*batch.Row
	for _, r := range todo {
		if !published[r.Key] {
			fresh = append(fresh, r)
		}
	}
	p.publishing(len(todo)-len(fresh), len(fresh))
	err = batch.Publish(ctx, js, s, fresh, batch.PublishOptions{Published: func(*batch.Row) { p.published() }})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	return nil
}

// await waits until every valid row has a result, ctx ends or wait has passed.
func (c *BatchCommand) await(ctx context.Context, t *batch.Tracker, p *batchProgress, wait time.Duration) {
	p.setPhase("waiting for results")
	var timeout <-chan time.Time
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-t.Done():
	case <-timeout:
	case <-ctx.Done():
	}
}

// finish writes the results and says how the batch stands.
func (c *BatchCommand) finish(f *batch.File, t *batch.Tracker, a *batchFlags, publishErr error) error {
	outcomes := t.Outcomes()
	var err error
	if a.out == "-" {
		err = batch.WriteCSV(c.main.Stdout, outcomes)
	} else {
		err = batch.WriteFile(a.out, outcomes)
	}
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	n := t.Counts()
	updated := ""
	if n.Updated > 0 {
		updated = fmt.Sprintf(", %d updated", n.Updated)
	}
	fmt.Fprintf(c.main.Stderr, "%d rows: %d provisioned%s, %d failed, %d invalid, %d pending; results in %s\n",
		n.Rows, n.Provisioned, updated, n.Failed, n.Invalid, n.Pending, a.out)
	switch {
	case publishErr != nil:
		return fmt.Errorf("%w (run the same command again to go on)", publishErr)
	case n.Pending > 0:
		return fmt.Errorf("provisioner: batch: %d of %d rows have no result yet; run the same command again to go on waiting", n.Pending, n.Rows)
	case n.Failed > 0 || n.Invalid > 0:
		return fmt.Errorf("provisioner: batch: of %d rows, %d failed and %d are invalid; the reasons are in %s", n.Rows, n.Failed, n.Invalid, a.out)
	}
	return nil
}
