package main

import (
	"context"
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
	faults            sim.Faults
	seed              uint64
}

func (f *simFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.appKey, "app-key", "demo-key", "the only app key gettoken accepts")
	fs.StringVar(&f.appSecret, "app-secret", "demo-secret", "the only app secret gettoken accepts")
	fs.DurationVar(&f.tokenLifetime, "token-lifetime", 7200*time.Second, "how long an access token is valid")
	fs.StringVar(&f.unknownUsers, "unknown-users", "ghost", "comma-separated userids DingTalk does not know")
	fs.Float64Var(&f.faults.BusyRate, "busy", 0, "probability of errcode -1 / 400001 (0 to 1)")
	fs.Float64Var(&f.faults.BadGatewayRate, "bad-gateway", 0, "probability of an HTTP 502 (0 to 1)")
	fs.Float64Var(&f.faults.LostReplyRate, "lost-reply", 0, "probability that a call takes effect but is answered 502 (0 to 1)")
	fs.IntVar(&f.faults.QPS, "qps", 0, "calls per second allowed per API; 0: no limit")
	fs.DurationVar(&f.faults.Latency, "latency", 0, "added to every answer")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for the random faults; 0: random")
}

func (f *simFlags) check() error {
	for name, p := range map[string]float64{"-busy": f.faults.BusyRate, "-bad-gateway": f.faults.BadGatewayRate, "-lost-reply": f.faults.LostReplyRate} {
		if p < 0 || p > 1 {
			return usageError(fmt.Sprintf("provisioner: %s must be between 0 and 1, got %v", name, p))
		}
	}
	if f.faults.QPS < 0 || f.faults.Latency < 0 || f.tokenLifetime <= 0 {
		return usageError("provisioner: -qps and -latency must not be negative, -token-lifetime must be positive")
	}
	return nil
}

func (f *simFlags) config() sim.Config {
	var unknown []string
	for _, u := range strings.Split(f.unknownUsers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			unknown = append(unknown, u)
		}
	}
	return sim.Config{AppKey: f.appKey, AppSecret: f.appSecret, TokenLifetime: f.tokenLifetime,
		UnknownUsers: unknown, Faults: f.faults, Seed: f.seed}
}

// serveSim serves s on addr until ctx is done; ready receives the URL.
func serveSim(ctx context.Context, s *sim.Server, addr string, ready func(url string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usageError(fmt.Sprintf("provisioner: listening on %s: %v", addr, err))
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
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

Serves a DingTalk simulator: GET /gettoken, POST /chat/create, POST /chat/update,
GET /chat/get and POST /topapi/chat/qrcode/get, with DingTalk's limits and
error codes, and faults to inject. Point DINGTALK_BASE_URL at it.

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
	fmt.Fprintf(c.main.Stdout, "served %v; %d groups, %d duplicates, %d busy answers, %d QPS refusals\n",
		st.Calls, st.GroupsCreated, st.Duplicates, st.Busy, st.RateLimited)
	return err
}
