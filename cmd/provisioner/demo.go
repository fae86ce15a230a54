package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/messages"
	"provisioner/worker"
)

// DemoCommand runs NATS, the DingTalk simulator and the worker in one
// process, publishes sample events and prints each result as it arrives.
type DemoCommand struct {
	main *Main
}

// demoOptions are the demo's flags, checked.
type demoOptions struct {
	serve   bool
	listen  string
	timeout time.Duration
	level   zerolog.Level
	family  dingtalk.Family
	scene   bool
	sim     simFlags
}

// demo is one run of the demo: everything it started, and the results as
// they arrive.
type demo struct {
	o          demoOptions
	out        io.Writer
	stderr     io.Writer
	ns         *server.Server
	simServer  *sim.Server
	simURL     string
	nc         *nats.Conn
	js         jetstream.JetStream
	mode       string
	results    chan *nats.Msg
	workerDone chan error
	deadline   <-chan time.Time
}

// Run runs the demo; with -serve it keeps serving until SIGINT or SIGTERM.
func (c *DemoCommand) Run(ctx context.Context, args []string) error {
	o, err := c.parse(args)
	if err != nil {
		return err
	}
	d := &demo{o: o, out: c.main.Stdout, stderr: c.main.Stderr, results: make(chan *nats.Msg, 64), workerDone: make(chan error, 1)}
	stop, err := d.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	d.deadline = time.After(o.timeout)
	if err := d.samples(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	if err := d.lifecycle(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	if o.serve {
		return d.serveUntilDone(ctx)
	}
	return nil
}

// parse reads the demo's flags.
func (c *DemoCommand) parse(args []string) (demoOptions, error) {
	fs := flag.NewFlagSet("provisioner demo", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	var o demoOptions
	fs.BoolVar(&o.serve, "serve", false, "keep serving after the samples: NATS on -listen, for your own events")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4222", "where the embedded NATS server listens with -serve")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up if the samples' results take longer")
	logLevel := fs.String("log-level", "error", "the worker's log level (its JSON logs go to stderr)")
	api := fs.String("api", "v1", "the DingTalk API family: v1 (an app created today) or legacy")
	fs.BoolVar(&o.scene, "scene", false, "make scene groups from the simulator's demo-template (v1 only)")
	o.sim.register(fs)
	_ = fs.Set("busy", "0.2")
	_ = fs.Set("latency", "20ms")
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner demo [flags]

Starts an embedded NATS server with JetStream, the DingTalk simulator (with
20% "system busy" answers by default) and the worker, publishes sample
project.created and event.scheduled events, prints every group and its invite
link as the results arrive, then updates one project (renamed, a new owner,
one member in and two out) and closes it, printing what each changed, and
exits. Nothing to set up; nothing is kept.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.sim.check(); err != nil {
		return o, err
	}
	var err error
	if o.family, err = dingtalk.ParseFamily(*api); err != nil {
		return o, usageError("provisioner: -api: " + err.Error())
	}
	if o.scene && o.family != dingtalk.V1 {
		return o, usageError("provisioner: -scene needs -api v1: scene groups exist only in the v1.0 API")
	}
	if o.level, err = zerolog.ParseLevel(*logLevel); err != nil {
		return o, usageError(fmt.Sprintf("provisioner: -log-level: %v", err))
	}
	return o, nil
}

// start starts NATS, the simulator and the worker; stop undoes it all.
func (d *demo) start(ctx context.Context) (stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	dir, err := os.MkdirTemp("", "provisioner-demo-")
	if err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	addr := "127.0.0.1:0"
	if d.o.serve {
		addr = d.o.listen
	}
	if d.ns, err = embeddedNATS(dir, addr); err != nil {
		return nil, err
	}
	undo = append(undo, func() { d.ns.Shutdown(); d.ns.WaitForShutdown() })
	stopSim, err := d.startSim()
	if err != nil {
		return nil, err
	}
	undo = append(undo, stopSim)
	if d.nc, d.js, err = (&NATSEnv{NATSReplicas: 1}).jetStream(d.ns.ClientURL()); err != nil {
		return nil, err
	}
	undo = append(undo, d.nc.Close)
	stopWorker, err := d.startWorker(ctx)
	if err != nil {
		return nil, err
	}
	undo = append(undo, stopWorker)
	fmt.Fprintf(d.out, "NATS (JetStream) at %s · DingTalk simulator at %s (%.0f%% busy answers, %v latency)\nDingTalk API: %s\n",
		d.ns.ClientURL(), d.simURL, d.o.sim.faults.BusyRate*100, d.o.sim.faults.Latency, d.mode)
	return stop, nil
}

// startSim serves the simulator on a free loopback port.
func (d *demo) startSim() (stop func(), err error) {
	simCtx, cancel := context.WithCancel(context.Background())
	d.simServer = sim.New(d.o.sim.config())
	simURL := make(chan string, 1)
	simErr := make(chan error, 1)
	go func() { simErr <- serveSim(simCtx, d.simServer, "127.0.0.1:0", func(u string) { simURL <- u }) }()
	select {
	case d.simURL = <-simURL:
		return cancel, nil
	case err := <-simErr:
		cancel()
		return nil, err
	}
}

// startWorker runs the worker against the simulator, and subscribes to the
// results; stop ends both and waits for the worker.
func (d *demo) startWorker(ctx context.Context) (stop func(), err error) {
	e := &env{DingTalkAPI: string(d.o.family), DingTalkBaseURL: d.simURL, DingTalkAPIBaseURL: d.simURL,
		DingTalkAppKey: d.o.sim.appKey, DingTalkAppSecret: d.o.sim.appSecret}
	if d.o.scene {
		e.DingTalkSceneTemplateID = "demo-template"
	}
	groups, mode, err := e.groups(nil)
	if err != nil {
		return nil, err
	}
	d.mode = mode
	log := zerolog.New(d.stderr).Level(d.o.level).With().Timestamp().Str("service", "provisioner").Logger()
	w, err := worker.New(ctx, d.js, groups, log, worker.Config{Concurrency: 16, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second})
	if err != nil {
		return nil, err
	}
	sub, err := d.nc.ChanSubscribe("group.*", d.results)
	if err != nil {
		return nil, fmt.Errorf("provisioner: %w", err)
	}
	workerCtx, stopWorker := context.WithCancel(ctx)
	go func() { d.workerDone <- w.Run(workerCtx) }()
	return func() {
		stopWorker()
		_ = sub.Unsubscribe()
		<-d.workerDone
	}, nil
}

// next waits for the next result; ok is false when ctx ended first.
func (d *demo) next(ctx context.Context, what string) (m *nats.Msg, ok bool, err error) {
	select {
	case m := <-d.results:
		return m, true, nil
	case <-d.deadline:
		return nil, false, fmt.Errorf("provisioner: demo: %s after %v", what, d.o.timeout)
	case <-ctx.Done():
		return nil, false, nil
	case err := <-d.workerDone:
		d.workerDone <- err // for stop
		return nil, false, fmt.Errorf("provisioner: demo: the worker stopped: %v", err)
	}
}

// samples publishes the sample creations and prints their results.
func (d *demo) samples(ctx context.Context) error {
	samples := sampleEvents()
	for _, s := range samples {
		if _, err := d.js.Publish(ctx, s.subject, []byte(s.body)); err != nil {
			return fmt.Errorf("provisioner: publishing a sample: %w", err)
		}
	}
	fmt.Fprintf(d.out, "published %d sample events; results as they arrive:\n\n", len(samples))
	start := time.Now()
	provisioned, failed := 0, 0
	for provisioned+failed < len(samples) {
		m, ok, err := d.next(ctx, fmt.Sprintf("only %d of %d results", provisioned+failed, len(samples)))
		if !ok {
			return err
		}
		if printResult(d.out, m) {
			provisioned++
		} else {
			failed++
		}
	}
	st := d.simServer.Stats()
	fmt.Fprintf(d.out, "\n%d provisioned, %d failed in %v. DingTalk calls: %s; %d busy answers retried.\n",
		provisioned, failed, time.Since(start).Round(time.Millisecond), describeCalls(st.Calls), st.Busy)
	return nil
}

// lifecycle updates project P-1, then closes it, and shows the group.
func (d *demo) lifecycle(ctx context.Context) error {
	fmt.Fprintf(d.out, "\nproject P-1 changes, then closes (each is published once its predecessor has its result):\n\n")
	for _, s := range lifecycleSamples() {
		if _, err := d.js.Publish(ctx, s.subject, []byte(s.body)); err != nil {
			return fmt.Errorf("provisioner: publishing a sample: %w", err)
		}
		m, ok, err := d.next(ctx, "no result for "+s.subject)
		if !ok {
			return err
		}
		printResult(d.out, m)
	}
	if g, ok := demoGroup(d.simServer, "Apollo"); ok {
		fmt.Fprintf(d.out, "\nDingTalk now shows %q owned by %s, members %s, muted %v.\n",
			g.Name, g.Owner, strings.Join(g.Members, " "), g.Settings["chatBannedType"] == 1)
	}
	return nil
}

// serveUntilDone prints the results of the user's own events until ctx ends.
func (d *demo) serveUntilDone(ctx context.Context) error {
	fmt.Fprintf(d.out, "\nserving until Ctrl-C. Publish your own events, for example:\n  nats --server %s pub project.created '{\"id\":\"my-1\",\"project_id\":\"P-7\",\"name\":\"My project\",\"owner\":\"u1\",\"members\":[\"u2\",\"u3\"]}'\n\n", d.ns.ClientURL())
	for {
		select {
		case m := <-d.results:
			printResult(d.out, m)
		case <-ctx.Done():
			return nil
		case err := <-d.workerDone:
			d.workerDone <- err
			return err
		}
	}
}

// describeCalls lists the calls made per API, in a stable order.
func describeCalls(calls map[string]int) string {
	apis := slices.Sorted(maps.Keys(calls))
	parts := make([]string, len(apis))
	for i, api := range apis {
		parts[i] = fmt.Sprintf("%d %s", calls[api], api)
	}
	return strings.Join(parts, ", ")
}

// demoGroup is the simulator's group whose name holds part.
func demoGroup(s *sim.Server, part string) (sim.Group, bool) {
	for _, g := range s.Groups() {
		if strings.Contains(g.Name, part) {
			return g, true
		}
	}
	return sim.Group{}, false
}

// printResult prints one result line and reports whether it was a success.
func printResult(out interface{ Write([]byte) (int, error) }, m *nats.Msg) bool {
	var r struct {
		messages.Provisioned
		Error *messages.Failure `json:"error"`
	}
	switch strings.TrimPrefix(m.Subject, "group.") {
	case "updated":
		return printUpdated(out, m)
	case "closed":
		var c messages.Closed
		if err := json.Unmarshal(m.Data, &c); err != nil {
			fmt.Fprintf(out, "? %s: %s\n", m.Subject, m.Data)
			return false
		}
		fmt.Fprintf(out, "✓ %-18s project %-4s %s as %q, %d calls\n", m.Subject, c.ProjectID+c.EventID, c.Action, c.Name, c.Attempts)
		return true
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		fmt.Fprintf(out, "? %s: %s\n", m.Subject, m.Data)
		return false
	}
	ref := "project " + r.ProjectID
	if r.EventID != "" {
		ref = "event " + r.EventID
	}
	if r.Error != nil {
		code := r.Error.DingTalkCode
		if r.Error.DingTalkErrcode != nil {
			code = fmt.Sprint(*r.Error.DingTalkErrcode)
		}
		if code != "" {
			code = " [DingTalk " + code + "]"
		}
		fmt.Fprintf(out, "✗ %-18s %-12s %s%s: %s\n", m.Subject, ref, r.Error.Reason, code, r.Error.Message)
		return false
	}
	dup := ""
	if r.PossibleDuplicate {
		dup = " (possible duplicate)"
	}
	fmt.Fprintf(out, "✓ %-18s %-12s %q owner %s, %d members, %d calls%s\n    chat %s\n    join %s\n",
		m.Subject, ref, r.Name, r.Owner, r.MemberCount, r.Attempts, dup, r.ChatID, r.InviteURL)
	return true
}

// printUpdated prints a group.updated result.
func printUpdated(out interface{ Write([]byte) (int, error) }, m *nats.Msg) bool {
	var u messages.Updated
	if err := json.Unmarshal(m.Data, &u); err != nil {
		fmt.Fprintf(out, "? %s: %s\n", m.Subject, m.Data)
		return false
	}
	var parts []string
	if len(u.Added) > 0 {
		parts = append(parts, "added "+strings.Join(u.Added, " "))
	}
	if len(u.Removed) > 0 {
		parts = append(parts, "removed "+strings.Join(u.Removed, " "))
	}
	if u.Owner != nil {
		parts = append(parts, fmt.Sprintf("owner %s → %s", u.Owner.From, u.Owner.To))
	}
	if u.Name != nil {
		parts = append(parts, fmt.Sprintf("renamed %q → %q", u.Name.From, u.Name.To))
	}
	if u.Stale {
		parts = append(parts, "stale: nothing changed")
	} else if u.Unchanged {
		parts = append(parts, "nothing to change")
	}
	fmt.Fprintf(out, "✓ %-18s project %-4s %s; %d members, %d calls\n", m.Subject, u.ProjectID+u.EventID, strings.Join(parts, "; "), u.MemberCount, u.Attempts)
	return true
}

type sample struct{ subject, body string }

// lifecycleSamples change project P-1 (renamed, u1 takes over, u4 joins,
// u3 and the old owner leave) and then close it.
func lifecycleSamples() []sample {
	return []sample{
		{"project.updated", `{"id":"demo-p1-v2","project_id":"P-1","name":"Apollo GA","owner":"u1","members":["u2","u4"],"version":2}`},
		{"project.closed", `{"id":"demo-p1-close","project_id":"P-1","version":3}`},
	}
}

// sampleEvents are a handful of both kinds: a small project, a 45-member
// project (created with 40, then one batch added), a CloudEvents envelope,
// a long title cut to the kind of group's limit, and one with a userid
// DingTalk refuses.
func sampleEvents() []sample {
	team := make([]string, 44)
	for i := range team {
		team[i] = fmt.Sprintf(`"emp%03d"`, i+1)
	}
	return []sample{
		{"project.created", `{"id":"demo-p1","project_id":"P-1","name":"Apollo launch","owner":"manager4220","members":["u1","u2","u3"],"metadata":{"requested_by":"hr-onboarding"}}`},
		{"event.scheduled", `{"id":"demo-e1","event_id":"E-9","title":"Q4 offsite","organizer":"u1","attendees":["u2","u3"],"starts_at":"2026-12-01T09:00:00Z"}`},
		{"project.created", `{"id":"demo-p2","project_id":"P-2","name":"新员工入职 2026 冬季批次","owner":"hr01","members":[` + strings.Join(team, ",") + `],"group":{"searchable":1,"validationType":1}}`},
		{"event.scheduled", `{"specversion":"1.0","id":"ce-42","source":"/calendar","type":"event.scheduled","datacontenttype":"application/json","data":{"id":"demo-e2","event_id":"E-10","title":"Architecture review: payments platform migration","organizer":"arch1","attendees":["u4","u5","u6"],"starts_at":"2026-12-03T14:00:00+08:00"}}`},
		{"project.created", `{"id":"demo-p3","project_id":"P-3","name":"Data platform","owner":"lead7","members":["u8","u9"]}`},
		{"event.scheduled", `{"id":"demo-e3","event_id":"E-11","title":"Holiday party","organizer":"u1","attendees":["u2","ghost"],"starts_at":"2026-12-20T18:00:00Z"}`},
	}
}
