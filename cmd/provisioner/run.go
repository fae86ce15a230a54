package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"provisioner/dingtalk/stream"
	"provisioner/telemetry"
	"provisioner/worker"
)

// The HTTP paths HTTP_ADDR serves; deploy/ probes and scrapes these.
const (
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	MetricsPath = "/metrics"
)

// defaultGOGC is the worker's garbage-collection target unless GOGC is set.
const defaultGOGC = 400

// promLog sends the metrics handler's errors to the structured log.
type promLog struct{ log zerolog.Logger }

func (p promLog) Println(v ...any) { p.log.Warn().Msg(fmt.Sprint(v...)) }

// RunCommand runs the worker until SIGINT or SIGTERM.
type RunCommand struct {
	main *Main
}

// Run parses args, reads the environment and works events.
func (c *RunCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner run", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	fs.Usage = c.usage
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("provisioner run: unexpected argument %q; configuration comes from the environment", fs.Arg(0)))
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	level, _ := zerolog.ParseLevel(strings.ToLower(e.LogLevel))
	log := zerolog.New(c.main.Stderr).Level(level).With().Timestamp().Str("service", "provisioner").Logger()
	if os.Getenv("GOGC") == "" {
		// The worker's live heap is a few MB, so Go's default collects after
		// every few MB of garbage: a quarter of its CPU draining a backlog
		// (docs/performance.md). GOGC set in the environment wins.
		debug.SetGCPercent(defaultGOGC)
	}
	return runWorker(ctx, log, e)
}

// runWorker connects (or embeds) NATS and DingTalk, serves health, and runs
// the worker until ctx is cancelled.
func runWorker(ctx context.Context, log zerolog.Logger, e *env) error {
	natsURL := e.NATSURL
	if natsURL == "" {
		ns, err := embeddedNATS(e.NATSStoreDir, e.NATSListen)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		natsURL = ns.ClientURL()
		log.Info().Str("url", natsURL).Str("store_dir", e.NATSStoreDir).Msg("embedded NATS server with JetStream started")
	}
	nc, js, err := e.NATSEnv.jetStream(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	tp, stopTracing, err := tracerProvider(ctx, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn().Err(err).Msg("flushing the last spans")
		}
	}()
	tel, err := telemetry.New(telemetry.Options{TracerProvider: tp})
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	groups, mode, err := e.groups(tel.CallObserver(nil))
	if err != nil {
		return err
	}
	log.Info().Str("dingtalk_api", mode).Msg("DingTalk API chosen")
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := e.workerConfig()
	cfg.Telemetry = tel
	w, err := worker.New(setupCtx, js, groups, log, cfg)
	if err != nil {
		return err
	}
	halted := func() (string, bool) { h, ok := w.Halted(); return h.Reason, ok }
	uncaptured := func() []string { s, _ := w.Uncaptured(); return s }
	sources := telemetry.Sources{Budget: w.Budget().Status, Pacer: w.PacerStatus, Consumer: w.ConsumerInfo, Halt: halted, Uncaptured: uncaptured}
	var events *stream.Client
	if cfg.HandEvents {
		if events, err = e.dingtalkEvents(w, log); err != nil {
			return err
		}
		sources.StreamConnected = events.Connected
	}
	if err = tel.WatchStatus(sources); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if e.HTTPAddr != "" {
		stop, err := serveHTTP(e.HTTPAddr, nc, w, tel, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if events != nil {
		// One connection per worker; on the way out it waits until every
		// event it took is answered.
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { _ = events.Run(ctx) })
		log.Info().Msg("following DingTalk's group events over Stream mode")
	}
	return w.Run(ctx)
}

// serveHTTP answers /healthz (the process is up), /readyz (NATS is
// connected, DingTalk accepts this worker's configuration, and work is not
// paused; a halt or a pause is reported with its reason) and /metrics
// (Prometheus).
func serveHTTP(addr string, nc *nats.Conn, wk *worker.Worker, tel *telemetry.Telemetry, log zerolog.Logger) (stop func(), err error) {
	keeper := wk.Budget()
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, promhttp.HandlerFor(tel.Registry(), promhttp.HandlerOpts{ErrorLog: promLog{log}}))
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc(ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		if st := nc.Status(); st != nats.CONNECTED {
			http.Error(w, "NATS "+st.String(), http.StatusServiceUnavailable)
			return
		}
		if h, ok := wk.Halted(); ok {
			http.Error(w, fmt.Sprintf("misconfigured: %s since %s: %s", h.Reason, h.Since.UTC().Format(time.RFC3339), h.Detail), http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st, err := keeper.Status(ctx)
		switch {
		case err != nil:
			http.Error(w, "budget unreadable: "+err.Error(), http.StatusServiceUnavailable)
		case st.Paused != nil:
			http.Error(w, "paused: "+st.Paused.String(), http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
			if subjects, command := wk.Uncaptured(); len(subjects) > 0 {
				fmt.Fprintf(w, "not captured by any stream (JetStream refuses events published on them): %s; add them with: %s\n",
					strings.Join(subjects, ", "), command)
			}
		}
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError(fmt.Sprintf("provisioner: HTTP_ADDR %q: %v", addr, err))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("health server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /healthz, /readyz and /metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func (c *RunCommand) usage() {
	fmt.Fprint(c.main.Stderr, `Usage: provisioner run

Works events from NATS JetStream: creates a DingTalk group chat for each,
fetches its join link and publishes group.provisioned or group.failed.

Configuration comes from the environment (docs/configuration.md has the full table):

	NATS_URL              NATS server; empty: an embedded server (NATS_STORE_DIR, NATS_LISTEN)
	NATS_REPLICAS         copies JetStream keeps of each stream and bucket; 3 on a three-node cluster
	NATS_CREDS            credentials file; or NATS_USER and NATS_PASSWORD
	NATS_CA               PEM file of CAs to trust (turns TLS on, as a tls:// URL does)
	NATS_CERT, NATS_KEY   a client certificate and its key
	DINGTALK_APP_KEY      required
	DINGTALK_APP_SECRET   required
	DINGTALK_API          v1 (default: an app created today) or legacy (an app holding chat/create)
	DINGTALK_SCENE_TEMPLATE_ID  with v1: make scene groups from this published template
	DINGTALK_API_BASE_URL default https://api.dingtalk.com
	DINGTALK_BASE_URL     default https://oapi.dingtalk.com
	DINGTALK_QPS          the app's calls per second per API, shared by every worker; default 20
	DINGTALK_MONTHLY_QUOTA  calls a month all workers may make (Asia/Shanghai); 0 (default): no cap of ours
	CONCURRENCY           events worked at once, default 64
	LOG_LEVEL             trace, debug, info, warn, error; default info
	HTTP_ADDR             health endpoints, default :8080; empty: none

SIGINT or SIGTERM stops taking events and lets in-flight ones finish
(SHUTDOWN_GRACE, default 20s); a second signal stops at once.
`)
}
