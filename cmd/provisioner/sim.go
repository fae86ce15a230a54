package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"provisioner/dingtalk/sim"
)

// SimCommand serves the DingTalk simulator.
type SimCommand struct {
	main *Main
}

// simFlags are the simulator's settings, shared by sim and demo.
type simFlags struct {
	appKey, appSecret string
	tokenLifetime     time.Duration
	unknownUsers      string
	templates         string
	refuseUUID        bool
	refuseExisting    bool
	refuseAbsent      bool
	refuseOwnerAdded  bool
	quota             int
	qpsModel          string
	faults            sim.Faults
	seed              uint64
	stream            sim.StreamConfig
}

func (f *simFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.appKey, "app-key", "demo-key", "the only app key gettoken accepts")
	fs.StringVar(&f.appSecret, "app-secret", "demo-secret", "the only app secret gettoken accepts")
	fs.DurationVar(&f.tokenLifetime, "token-lifetime", 7200*time.Second, "how long an access token is valid")
	fs.StringVar(&f.unknownUsers, "unknown-users", "ghost", "comma-separated userids DingTalk does not know")
	fs.StringVar(&f.templates, "scene-templates", "demo-template", "comma-separated published scene-group template ids")
	fs.BoolVar(&f.refuseUUID, "refuse-repeated-uuid", false, "answer a repeated scene-group uuid with an error instead of the first group")
	fs.BoolVar(&f.refuseExisting, "refuse-existing-members", false, "answer an add naming an existing member with an error instead of a no-op")
	fs.BoolVar(&f.refuseAbsent, "refuse-absent-removals", false, "answer a removal naming someone not in the group with an error instead of a no-op")
	fs.BoolVar(&f.refuseOwnerAdded, "refuse-owner-added-in-same-call", false, "refuse a plain group's update that adds its new owner and transfers to them in one call")
	fs.IntVar(&f.quota, "quota", 0, "the organisation's monthly call quota; 0: none")
	fs.Float64Var(&f.faults.BusyRate, "busy", 0, "probability of errcode -1 / 400001 (0 to 1)")
	fs.Float64Var(&f.faults.BadGatewayRate, "bad-gateway", 0, "probability of an HTTP 502 (0 to 1)")
	fs.Float64Var(&f.faults.LostReplyRate, "lost-reply", 0, "probability that a call takes effect but is answered 502 (0 to 1)")
	fs.IntVar(&f.faults.QPS, "qps", 0, "calls per second allowed per API; 0: no limit")
	fs.StringVar(&f.qpsModel, "qps-model", "second", "how calls are counted against -qps: second (per wall-clock second), sliding (any one-second window), halves (two half-second buckets), bucket (token bucket, burst = -qps)")
	fs.DurationVar(&f.faults.Latency, "latency", 0, "added to every answer")
	fs.DurationVar(&f.faults.Jitter, "jitter", 0, "each call arrives a random 0 to this late, before it is counted")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for the random faults; 0: random")
	fs.DurationVar(&f.stream.PingInterval, "stream-ping", 30*time.Second, "Stream mode: how often each connection gets a SYSTEM ping; 0: never")
	fs.DurationVar(&f.stream.RedeliverAfter, "stream-redeliver", 3*time.Second, "Stream mode: how long an unanswered event waits before it is pushed again")
	fs.DurationVar(&f.stream.DisconnectGrace, "stream-disconnect-grace", 10*time.Second, "Stream mode: how long a connection told to disconnect stays open")
}

func (f *simFlags) check() error {
	for name, p := range map[string]float64{"-busy": f.faults.BusyRate, "-bad-gateway": f.faults.BadGatewayRate, "-lost-reply": f.faults.LostReplyRate} {
		if p < 0 || p > 1 {
			return usageError(fmt.Sprintf("provisioner: %s must be between 0 and 1, got %v", name, p))
		}
	}
	if f.faults.QPS < 0 || f.faults.Latency < 0 || f.faults.Jitter < 0 || f.tokenLifetime <= 0 || f.quota < 0 {
		return usageError("provisioner: -qps, -latency, -jitter and -quota must not be negative, -token-lifetime must be positive")
	}
	m, err := sim.ParseQPSModel(f.qpsModel)
	if err != nil {
		return usageError("provisioner: -qps-model: " + strings.TrimPrefix(err.Error(), "sim: "))
	}
	f.faults.QPSModel = m
	return nil
}

func (f *simFlags) config() sim.Config {
	return sim.Config{AppKey: f.appKey, AppSecret: f.appSecret, TokenLifetime: f.tokenLifetime,
		UnknownUsers: list(f.unknownUsers), SceneTemplates: list(f.templates), RefuseRepeatedUUID: f.refuseUUID,
		RefuseExistingMembers: f.refuseExisting, RefuseAbsentRemovals: f.refuseAbsent, RefuseOwnerAddedInSameCall: f.refuseOwnerAdded, MonthlyQuota: f.quota, Faults: f.faults, Seed: f.seed, Stream: f.stream}
}

// list splits a comma-separated flag.
func list(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// serveSim serves s on addr until ctx is done; ready receives the URL.
func serveSim(ctx context.Context, s *sim.Server, addr string, ready func(url string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usageError(fmt.Sprintf("provisioner: listening on %s: %v", addr, err))
	}
	srv := &http.Server{Handler: simMux(s), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	ready("http://" + ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("provisioner: simulator: %w", err)
	}
	return nil
}

// Run serves the simulator until SIGINT or SIGTERM.
func (c *SimCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provisioner sim", flag.ContinueOnError)
	fs.SetOutput(c.main.Stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "address to listen on")
	var sf simFlags
	sf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(c.main.Stderr, `Usage: provisioner sim [flags]

Serves a DingTalk simulator of both API families on one address: the old
one (GET /gettoken, POST /chat/create, /chat/update, GET /chat/get, POST
/topapi/chat/qrcode/get) and v1.0 (POST /v1.0/oauth2/accessToken,
/v1.0/im/group/create and /update, /v1.0/im/sceneGroup/create and
/member/add, /v1.0/im/sceneGroups/query and /members/batchQuery), with
DingTalk's limits, error codes and error shapes, and faults to inject.
Point both DINGTALK_BASE_URL and DINGTALK_API_BASE_URL at it.

It speaks Stream mode too (POST /v1.0/gateway/connections/open, then a
WebSocket), for DINGTALK_EVENTS=stream. Changes made "by hand", which raise
DingTalk's group events:

	POST /sim/hand {"change":"quit|remove|add|owner|rename|disband",
	                "group":"<chatid or open conversation id>",
	                "user":"<userid>", "name":"<new name>", "silent":false}
	POST /sim/disconnect   (SYSTEM disconnect to every connection)

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := sf.check(); err != nil {
		return err
	}
	s := sim.New(sf.config())
	err := serveSim(ctx, s, *addr, func(url string) {
		fmt.Fprintf(c.main.Stdout, "DingTalk simulator listening on %s (app key %q); Ctrl-C stops it\n", url, sf.appKey)
	})
	st := s.Stats()
	fmt.Fprintf(c.main.Stdout, "served %v; %d groups, %d duplicates, %d repeated uuids, %d busy answers, %d QPS refusals, %d quota refusals\n",
		st.Calls, st.GroupsCreated, st.Duplicates, st.UUIDRepeats, st.Busy, st.RateLimited, st.QuotaRefused)
	return err
}

// simMux serves the simulator, and the changes a person would make in the
// DingTalk app (POST /sim/hand) and DingTalk moving its Stream-mode
// connections (POST /sim/disconnect), for trying DINGTALK_EVENTS=stream
// and provisioner reconcile by hand.
func simMux(s *sim.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s)
	mux.HandleFunc("POST /sim/disconnect", func(w http.ResponseWriter, _ *http.Request) {
		s.Disconnect()
		fmt.Fprintln(w, "disconnect sent")
	})
	mux.HandleFunc("POST /sim/hand", func(w http.ResponseWriter, r *http.Request) {
		var h struct {
			Change, Group, User, Name string
			Silent                    bool
		}
		if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
			http.Error(w, "the body must be JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		changes := map[string]func() bool{
			"quit":    func() bool { return s.QuitByHand(h.Group, h.User) },
			"remove":  func() bool { return s.RemoveByHand(h.Group, h.User) },
			"add":     func() bool { return s.AddByHand(h.Group, h.User) },
			"owner":   func() bool { return s.SetOwnerByHand(h.Group, h.User) },
			"rename":  func() bool { return s.RenameByHand(h.Group, h.Name) },
			"disband": func() bool { return s.DisbandByHand(h.Group) },
		}
		change, ok := changes[h.Change]
		if !ok {
			http.Error(w, fmt.Sprintf("change %q: want quit, remove, add, owner, rename or disband", h.Change), http.StatusBadRequest)
			return
		}
		s.SilenceHands(h.Silent)
		defer s.SilenceHands(false)
		if !change() {
			http.Error(w, "refused: no such live group, or DingTalk's client would not allow it", http.StatusConflict)
			return
		}
		fmt.Fprintln(w, "done")
	})
	return mux
}
