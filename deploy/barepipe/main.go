// Command barepipe is the floor deploy/bench.sh measures the worker
// against: the same I/O per event as the worker's happy path (a pull, the
// DingTalk create and join link over HTTP, a result published through
// JetStream, an ack) and nothing else: no step or project records, no
// budget, no retries. It drains a backlog of project.created bodies on
// BARE_SUBJECT (stream BARE, made if missing), publishes each result on
// BARE_RESULTS, and exits once it has published BARE_EVENTS of them (0:
// once the stream and its consumer exist), printing the CPU time it used.
// BARE_CONSUMER names its durable consumer (default bare): a run of its own
// leaves a previous run's unexpired pull requests behind, which would take
// this run's events and hold them for the ack wait.
//
// Only for benchmarks: an event whose call fails is acked without a result.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk"
	"provisioner/messages"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "barepipe:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context) error {
	subject, results := env("BARE_SUBJECT", "bare.created"), env("BARE_RESULTS", "bare.provisioned")
	want, err := strconv.Atoi(env("BARE_EVENTS", "10000"))
	if err != nil {
		return fmt.Errorf("BARE_EVENTS: %w", err)
	}
	concurrency, err := strconv.Atoi(env("BARE_CONCURRENCY", "64"))
	if err != nil || concurrency < 1 {
		return fmt.Errorf("BARE_CONCURRENCY must be a whole number above 0")
	}
	nc, err := nats.Connect(env("NATS_URL", nats.DefaultURL))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BARE", Subjects: []string{"bare.>"}}); err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "BARE", jetstream.ConsumerConfig{Durable: env("BARE_CONSUMER", "bare"), FilterSubject: subject,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
	if err != nil {
		return err
	}
	client, err := dingtalk.NewClient(dingtalk.Options{Family: dingtalk.V1, BaseURL: env("DINGTALK_BASE_URL", ""),
		APIBaseURL: env("DINGTALK_API_BASE_URL", ""), AppKey: os.Getenv("DINGTALK_APP_KEY"), AppSecret: os.Getenv("DINGTALK_APP_SECRET")})
	if err != nil {
		return err
	}
	groups := dingtalk.NewChatGroups(client)
	if want == 0 {
		return nil // the stream and consumer made: nothing to drain
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		return err
	}
	var done atomic.Int64
	finished := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				msg, err := it.Next()
				if err != nil {
					return
				}
				if work(ctx, js, groups, results, msg) && done.Add(1) == int64(want) {
					once.Do(func() { close(finished) })
				}
			}
		})
	}
	select {
	case <-finished:
	case <-ctx.Done():
	}
	it.Stop()
	wg.Wait()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("barepipe: %d results published, CPU %d µs\n", done.Load(), cpu.Microseconds())
	return nil
}

// work is one event: create, link, publish, ack. It reports whether a
// result was published.
func work(ctx context.Context, js jetstream.JetStream, groups dingtalk.Groups, results string, msg jetstream.Msg) bool {
	defer func() { _ = msg.Ack() }()
	var ev struct {
		ID        string   `json:"id"`
		ProjectID string   `json:"project_id"`
		Name      string   `json:"name"`
		Owner     string   `json:"owner"`
		Members   []string `json:"members"`
	}
	if json.Unmarshal(msg.Data(), &ev) != nil {
		return false
	}
	g, err := groups.CreateGroup(ctx, &dingtalk.NewGroup{Name: ev.Name, Owner: ev.Owner, Members: messages.GroupMembers(ev.Owner, ev.Members)})
	if err != nil {
		return false
	}
	link, err := groups.JoinLink(ctx, *g, ev.Owner)
	if err != nil {
		return false
	}
	data, err := messages.Encode(messages.Provisioned{ID: ev.ID, SourceSubject: msg.Subject(), SourceID: ev.ID, ProjectID: ev.ProjectID,
		ChatID: g.ChatID, OpenConversationID: g.OpenConversationID, InviteURL: link, Name: ev.Name, Owner: ev.Owner,
		MemberCount: len(ev.Members) + 1, Attempts: 2, ProvisionedAt: time.Now().UTC()})
	if err != nil {
		return false
	}
	_, err = js.Publish(ctx, results, data, jetstream.WithMsgID(results+"-"+ev.ID))
	return err == nil
}
