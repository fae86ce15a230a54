// Package worker keeps DingTalk group chats in step with the projects whose
// events arrive on NATS JetStream: one durable pull consumer shared by any
// number of processes; a step record per event and a record per project in
// KV buckets, so that each effect happens once; retries with backoff for
// DingTalk's transient failures; and a result for every event, on
// group.provisioned, group.updated, group.closed or group.failed.
package worker

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/budget"
	"provisioner/dingtalk"
	"provisioner/messages"
	"provisioner/projects"
	"provisioner/streams"
)

// Worker consumes events and provisions groups. Create it with New and call
// Run once.
type Worker struct {
	cfg    Config
	js     jetstream.JetStream
	topo   *topology
	groups dingtalk.Groups
	budget *budget.Keeper
	proj   *projects.Store
	pacer  *budget.Pacer                // set by Run when Config.QPS is set
	shared atomic.Pointer[budget.Pacer] // the same, for readers outside Run
	halt   *halt                        // this worker's own stop, when DingTalk refuses its configuration
	log    zerolog.Logger

	capMu   sync.Mutex
	capture capture // guarded by capMu: how the input subjects are captured now

	migrateMu  sync.Mutex    // one migration pass at a time
	migrateGen atomic.Uint64 // migration passes begun

	indexMu  sync.Mutex    // one group index pass at a time
	indexGen atomic.Uint64 // group index passes begun

	// kinds are the subjects whose events process works: the input
	// subjects, and the new groups ON_HAND_DISBAND=recreate asks for.
	kinds map[string]messages.Kind
}

// New checks cfg, then finds or creates the streams, the consumer and the
// KV buckets the worker needs (step records, project records, the budget's),
// and builds project records for groups older releases made. groups says which kind of group it makes
// (dingtalk.NewChatGroups or dingtalk.NewSceneGroups); the worker knows the
// API family only through it.
func New(ctx context.Context, js jetstream.JetStream, groups dingtalk.Groups, log zerolog.Logger, cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("instance", cfg.InstanceID).Logger()
	topo, in, err := ensureTopology(ctx, js, cfg, &streams.Ensurer{JS: js, Replicas: cfg.Replicas, Log: log})
	if err != nil {
		return nil, err
	}
	keeper, err := budget.Open(ctx, js, budget.Options{
		Bucket: cfg.BudgetBucket, Consumer: cfg.Consumer, Subject: in.captured[0], // a subject the consumer's stream captures
		MonthlyQuota: cfg.MonthlyQuota, Storage: cfg.Storage, Replicas: cfg.Replicas, Log: log, Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &Worker{cfg: cfg, js: js, topo: topo, groups: groups, budget: keeper, halt: newHalt(), log: log,
		proj: projects.NewStore(js, topo.projects, cfg.AckWait, cfg.Now), capture: in}
	w.kinds = maps.Clone(cfg.Subjects)
	if cfg.HandEvents {
		w.proj = w.proj.WithIndex()
		w.kinds[cfg.recreateSubject(false)] = messages.ProjectUpdated
		w.kinds[cfg.recreateSubject(true)] = messages.EventUpdated
	}
	w.warnUncaptured(in)
	if in.newer > 0 {
		log.Warn().Int("contract", in.newer).Int("ours", messages.Contract).
			Msg("a newer release configured the consumer: it is left as it is, and events of kinds this release does not know are handed back for a newer worker")
	}
	// A failed migration must not stop a deployment at start: it is tried
	// again every CheckInterval, from where the last pass that ended got to.
	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	built, err := w.migrate(mctx)
	cancel()
	if err != nil {
		log.Warn().Err(err).Int("projects", built).Dur("retry_in", cfg.CheckInterval).
			Msg("building project records from step records of releases before project records; trying again")
	} else {
		log.Info().Int("projects", built).Msg("project records built from step records of releases before project records")
	}
	if cfg.HandEvents {
		// Records written before the group index (an older release's) are
		// indexed now; a miss later runs the pass again.
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := w.indexPass(ictx, nil); err != nil {
			log.Warn().Err(err).Msg("filling in the group index; an event about an unindexed group does it again")
		}
		cancel()
	}
	return w, nil
}

// Budget is the shared budget this worker spends and pauses; safe to share
// (the health check reads its status).
func (w *Worker) Budget() *budget.Keeper { return w.budget }

// Halted says whether and why this worker stopped taking events because
// DingTalk refused its configuration (see Halt). Safe to call from any
// goroutine (the readiness check and the metrics read it).
func (w *Worker) Halted() (Halt, bool) { return w.halt.status() }

// PacerStatus is how this worker shares the per-second budget now; false
// when calls are not paced (no Config.QPS) or Run is not running. Safe to
// call from any goroutine (the metrics read it).
func (w *Worker) PacerStatus() (budget.PacerStatus, bool) {
	p := w.shared.Load()
	if p == nil {
		return budget.PacerStatus{}, false
	}
	return p.Status(), true
}

// ConsumerInfo reads the durable consumer's state from JetStream: its
// pending (lag) and ack-pending counts.
func (w *Worker) ConsumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	info, err := w.topo.consumer.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("worker: reading consumer %q: %w", w.cfg.Consumer, err)
	}
	return info, nil
}

// Run works events until ctx is cancelled, then stops taking messages, hands
// back the ones buffered but not started, and gives in-flight events
// Config.ShutdownGrace to finish before interrupting them (they are handed
// back too). It returns nil after a clean stop, and an error when messages
// stopped arriving for another reason (the connection closed for good).
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.QPS > 0 {
		p, err := budget.StartPacer(ctx, w.js, budget.PacerOptions{
			Bucket: w.cfg.PaceBucket(), ID: strings.NewReplacer(".", "_", " ", "_").Replace(w.cfg.InstanceID),
			Limit: max(1, int(w.cfg.QPS)), Storage: w.cfg.Storage, Replicas: w.cfg.Replicas, Log: w.log, Now: w.cfg.Now,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting: nothing was taken
			}
			return fmt.Errorf("worker: %w", err)
		}
		w.pacer = p
		w.shared.Store(p)
		defer w.shared.Store(nil)
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			p.Stop(sctx)
		}()
	}
	// Handlers get their own context: shutdown must not cut a DingTalk call
	// short (a create cut short has an unknown outcome), only the grace period does.
	workCtx, interrupt := context.WithCancel(context.WithoutCancel(ctx))
	defer interrupt()
	w.log.Info().Int("concurrency", w.cfg.Concurrency).Str("stream", w.topo.eventsStream).
		Str("consumer", w.cfg.Consumer).Int("monthly_quota", w.cfg.MonthlyQuota).Msg("worker started")
	if st, err := w.budget.Status(ctx); err == nil && st.Paused != nil {
		w.log.Warn().Str("reason", st.Paused.Reason).Str("detail", st.Paused.Detail).Time("until", st.Paused.Until).
			Msg("work is paused: no events are taken until then, or until provisioner resume")
	}

	var wg sync.WaitGroup
	upkeepCtx, stopUpkeep := context.WithCancel(ctx)
	wg.Go(func() { w.upkeep(upkeepCtx) })
	if w.topo.hands != nil {
		wg.Go(func() {
			if err := w.followHands(ctx, workCtx); err != nil {
				w.log.Error().Err(err).Msg("DingTalk's events are not being followed")
			}
		})
	}
	pullErr := w.pull(ctx, func(msg jetstream.Msg, done func()) {
		wg.Go(func() {
			defer done()
			w.process(workCtx, ctx.Done(), msg)
		})
	})

	stopUpkeep()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(w.cfg.ShutdownGrace):
		w.log.Warn().Dur("grace", w.cfg.ShutdownGrace).Msg("grace period over: interrupting in-flight events")
		interrupt()
		<-finished
	}
	if pullErr != nil {
		return pullErr
	}
	w.log.Info().Msg("worker stopped")
	return nil
}
