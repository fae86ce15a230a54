package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LoadCommand publishes synthetic events and follows their results: a load
// test for a staging deployment, and the benchmark's producer.
type LoadCommand struct {
	main *Main
}

// loadOptions are load's flags.
type loadOptions struct {
	n, members                      int
	subject, results                string
	timeout                         time.Duration
	prefix, projectPrefix, producer string
	lifecycle                       bool
}

// Run publishes -n events to NATS_URL and waits for their results.
func (c *LoadCommand) Run(ctx context.Context, args []string) error {
	o, err := c.parse(args)
	if err != nil {
		return err
	}
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	var ne NATSEnv
	if err := readEnv(&ne); err != nil {
		return err
	}
	nc, js, err := ne.jetStream(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	if o.producer != "" {
		if err := ensureProducerStream(ctx, js, o.producer, c.main.Stdout); err != nil || o.n == 0 {
			return err
		}
	}
	arrived := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(o.results, arrived)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	defer sub.Unsubscribe()
	if o.lifecycle {
		return (&lifecycleLoad{js: js, out: c.main.Stdout, prefix: o.prefix, n: o.n, timeout: o.timeout}).run(ctx, arrived)
	}
	if err := publishLoad(ctx, js, o); err != nil || ctx.Err() != nil {
		return err
	}
	fmt.Fprintf(c.main.Stdout, "published %d events on %s; waiting for results on %s\n", o.n, o.subject, o.results)
	return followLoad(ctx, c.main.Stdout, o, arrived)
}

// parse reads load's flags.
func (c *LoadCommand) parse(args []string) (loadOptions, error) {
	fs := flag.NewFlagSet("provisioner load", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	var o loadOptions
	fs.IntVar(&o.n, "n", 1000, "events to publish")
	fs.IntVar(&o.members, "members", 3, "members per event, besides the owner")
	fs.StringVar(&o.subject, "subject", "project.created", "subject to publish on (a project.created body is sent)")
	fs.StringVar(&o.results, "results", "group.*", "subject the results arrive on")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up waiting for results after this long")
	fs.StringVar(&o.prefix, "id-prefix", fmt.Sprintf("load-%d", time.Now().Unix()), "event ids are <prefix>-<n>")
	fs.StringVar(&o.projectPrefix, "project-prefix", "", "project ids are <prefix>-P<n>; default: P-<n>")
	fs.StringVar(&o.producer, "producer-stream", "", "NAME=subject,…: first create (or set the subjects of) a stream the producers own, as a "+
		"platform team would; with -n 0, only that")
	fs.BoolVar(&o.lifecycle, "lifecycle", false, "publish, for each of -n projects, a creation and three updates shuffled, then a close; "+
		"then read every group back through DingTalk's API (with the worker's DINGTALK_* variables)")
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner load [flags]

Publishes synthetic project.created events to the NATS server at NATS_URL
(default nats://127.0.0.1:4222) and counts their results as they arrive,
printing progress every second and the rate at the end. The streams must
exist: start the worker once first. With -lifecycle, each project is also
updated three times (out of order) and closed, and its group is checked in
DingTalk at the end; exit status 1 if any is not as its last version says.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.n < 0 || (o.n == 0 && o.producer == "") || o.members < 0 || o.members > 999 {
		return o, usageError("provisioner: load: -n must be at least 1 (0 with -producer-stream) and -members between 0 and 999")
	}
	return o, nil
}

// publishLoad publishes the -n events.
func publishLoad(ctx context.Context, js jetstream.JetStream, o loadOptions) error {
	ids := make([]string, o.members)
	for i := range ids {
		ids[i] = fmt.Sprintf("member%d", i)
	}
	memberJSON, _ := json.Marshal(ids)
	for i := range o.n {
		ref := fmt.Sprintf("P-%d", i)
		if o.projectPrefix != "" {
			ref = fmt.Sprintf("%s-P%d", o.projectPrefix, i)
		}
		body := fmt.Sprintf(`{"id":"%s-%d","project_id":"%s","name":"Load %d","owner":"%s-owner%d","members":%s}`, o.prefix, i, ref, i, o.prefix, i, memberJSON)
		if _, err := js.PublishAsync(o.subject, []byte(body)); err != nil {
			return fmt.Errorf("provisioner: publishing: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
	}
	return nil
}

// followLoad counts the results as they arrive, printing progress every
// second, then the rate and the longest gap between two results.
func followLoad(ctx context.Context, out io.Writer, o loadOptions, arrived <-chan *nats.Msg) error {
	var first, last time.Time
	var gap time.Duration // the longest time between two results
	var t tally
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(o.timeout)
	for t.results < o.n {
		select {
		case m := <-arrived:
			if !t.add(m, o.prefix+"-") {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			} else {
				gap = max(gap, now.Sub(last))
			}
			last = now
		case <-tick.C:
			fmt.Fprintf(out, "  %d/%d results %s\n", t.results, o.n, t.detail())
		case <-deadline:
			return fmt.Errorf("provisioner: load: %d of %d results after %v (%d lost or still pending)", t.results, o.n, o.timeout, o.n-t.results)
		case <-ctx.Done():
			return nil
		}
	}
	span := last.Sub(first)
	rate := float64(t.results)
	if span > 0 {
		rate = float64(t.results-1) / span.Seconds()
	}
	fmt.Fprintf(out, "%d results %s in %v from the first to the last: %.0f events/s; longest gap between two results %v\n",
		t.results, t.detail(), span.Round(time.Millisecond), rate, gap.Round(time.Millisecond))
	return nil
}

// tally counts the results of one load run, once per event: a result
// published again (after a redelivery) arrives again on a core subscription.
type tally struct {
	seen                       map[string]bool
	results, failed, duplicate int
}

// add counts m if it is the first result of an event whose id has prefix.
func (t *tally) add(m *nats.Msg, prefix string) bool {
	var r struct {
		SourceID          string `json:"source_id"`
		PossibleDuplicate bool   `json:"possible_duplicate"`
	}
	if json.Unmarshal(m.Data, &r) != nil || !strings.HasPrefix(r.SourceID, prefix) || t.seen[r.SourceID] {
		return false
	}
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	t.seen[r.SourceID] = true
	t.results++
	if m.Subject == "group.failed" {
		t.failed++
	}
	if r.PossibleDuplicate {
		t.duplicate++
	}
	return true
}

func (t *tally) detail() string {
	return fmt.Sprintf("(%d failed, %d flagged possible_duplicate)", t.failed, t.duplicate)
}

// ensureProducerStream creates the stream spec names (NAME=subject,…), or
// sets its subjects to those: a producer's own stream, for load tests of
// a worker that consumes from it.
func ensureProducerStream(ctx context.Context, js jetstream.JetStream, spec string, out io.Writer) error {
	name, list, ok := strings.Cut(spec, "=")
	if !ok || name == "" || list == "" {
		return usageError(fmt.Sprintf("provisioner: load: -producer-stream %q: want NAME=subject,…", spec))
	}
	subjects := strings.Split(list, ",")
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage})
	case err == nil:
		cfg := s.CachedInfo().Config
		cfg.Subjects = subjects
		_, err = js.UpdateStream(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("provisioner: load: the producers' stream %s: %w", name, err)
	}
	fmt.Fprintf(out, "the producers' stream %s captures %s\n", name, strings.Join(subjects, ", "))
	return nil
}
