// Package sim is a DingTalk simulator: the group-chat server API (gettoken,
// chat/create, chat/update, chat/get, topapi/chat/qrcode/get) with DingTalk's
// limits, error codes and token lifetimes, plus fault injection (system busy,
// QPS limits, 502s, lost replies, latency). It records what it did, so tests
// can assert on groups, members, calls and duplicates.
//
// A *Server is an http.Handler: serve it from httptest.NewServer in tests, or
// from an http.Server as a standalone simulator. It is safe for concurrent use.
package sim

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config sets up a Server. The zero value is a well-behaved DingTalk that
// accepts any app key and secret.
type Config struct {
	AppKey    string // the only app key gettoken accepts; empty accepts any
	AppSecret string // the only secret gettoken accepts; empty accepts any
	// TokenLifetime is how long an issued token is valid; default 7200 s.
	TokenLifetime time.Duration
	// UnknownUsers are userids DingTalk answers "invalid userid" for.
	UnknownUsers []string
	Faults       Faults
	Seed         uint64           // seeds fault injection; 0 picks a random seed
	Now          func() time.Time // default time.Now
}

// Faults are the failures the simulator injects. Injected failures happen
// before the call takes effect, except LostReplyRate.
type Faults struct {
	BusyRate       float64       // probability of errcode -1 or 400001 (system busy / system error)
	BadGatewayRate float64       // probability of an HTTP 502 HTML page
	LostReplyRate  float64       // probability that a call takes effect but its reply is an HTTP 502
	QPS            int           // calls per second allowed per API (burst QPS); over it: 90018, or 88 with subcode=90018 on topapi; 0: no limit
	Latency        time.Duration // added to every reply
}

// Stats counts what the simulator saw and did.
type Stats struct {
	Calls         map[string]int // requests per API ("gettoken", "chat/create", …), refused ones included
	TokensIssued  int            // distinct tokens handed out
	Busy          int            // injected -1 / 400001 answers
	BadGateways   int            // injected 502s, lost replies included
	LostReplies   int            // calls that took effect but were answered 502
	RateLimited   int            // calls refused for QPS
	GroupsCreated int
	Duplicates    int // creates whose name, owner and members equal an earlier group's
}

// Group is a group chat the simulator holds.
type Group struct {
	ChatID             string
	OpenConversationID string
	Name               string
	Owner              string
	Members            []string // in the order they joined
	Settings           map[string]int
	Icon               string
	CreatedAt          time.Time
}

// Server is the simulator. Create it with New.
type Server struct {
	cfg     Config
	unknown map[string]bool
	now     func() time.Time
	routes  map[string]route

	mu       sync.Mutex
	faults   Faults
	rng      *rand.Rand
	limiters map[string]*rate.Limiter
	stats    Stats
	token    string
	expiry   time.Time
	old      map[string]bool // tokens issued before the current one
	groups   map[string]*Group
	order    []string        // chat ids in creation order
	seen     map[string]bool // name|owner|sorted members of every created group
}

// New returns a simulator.
func New(cfg Config) *Server {
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = 7200 * time.Second
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		cfg: cfg, unknown: map[string]bool{}, now: now,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		stats:  Stats{Calls: map[string]int{}},
		old:    map[string]bool{},
		groups: map[string]*Group{}, seen: map[string]bool{},
	}
	s.routes = map[string]route{
		"gettoken":               {http.MethodGet, s.getToken},
		"chat/create":            {http.MethodPost, s.createChat},
		"chat/update":            {http.MethodPost, s.updateChat},
		"chat/get":               {http.MethodGet, s.getChat},
		"topapi/chat/qrcode/get": {http.MethodPost, s.qrCode},
	}
	for _, u := range cfg.UnknownUsers {
		s.unknown[u] = true
	}
	s.SetFaults(cfg.Faults)
	return s
}

// SetFaults replaces the injected faults; tests may call it while serving.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.limiters = map[string]*rate.Limiter{}
}

// ExpireTokens makes every token issued so far expired: calls made with one
// are answered 42001, and gettoken issues a new token.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" {
		s.old[s.token] = true
	}
	s.token = ""
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Calls = make(map[string]int, len(s.stats.Calls))
	for k, v := range s.stats.Calls {
		st.Calls[k] = v
	}
	return st
}

// Groups returns copies of every group, in creation order.
func (s *Server) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Group, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.groups[id].clone())
	}
	return out
}

// Group returns a copy of one group.
func (s *Server) Group(chatID string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[chatID]
	if !ok {
		return Group{}, false
	}
	return g.clone(), true
}

func (g *Group) clone() Group {
	c := *g
	c.Members = append([]string(nil), g.Members...)
	c.Settings = make(map[string]int, len(g.Settings))
	for k, v := range g.Settings {
		c.Settings[k] = v
	}
	return c
}

// ServeHTTP answers one API call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api := strings.TrimPrefix(r.URL.Path, "/")
	h, ok := s.routes[api]
	if !ok || r.Method != h.method {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	s.stats.Calls[api]++
	f := s.faults
	s.mu.Unlock()

	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if refusal := s.injectFault(api, f); refusal != nil {
		refusal(w)
		return
	}
	if api != "gettoken" {
		if code, msg := s.checkToken(r.URL.Query().Get("access_token")); code != 0 {
			writeError(w, code, msg)
			return
		}
	}
	var body map[string]json.RawMessage
	if r.Method == http.MethodPost {
		var err error
		if body, err = readBody(r); err != nil {
			writeError(w, codeBadParameter, "参数错误: "+err.Error())
			return
		}
	}
	out := h.serve(r, body)
	if out.code == 0 && s.lostReply(f) {
		badGateway(w)
		return
	}
	if out.code != 0 {
		writeError(w, out.code, out.msg)
		return
	}
	writeJSON(w, out.fields)
}

// answer is an endpoint's outcome: an error code and message, or fields to return.
type answer struct {
	code   int
	msg    string
	fields map[string]any
}

func fail(code int, msg string) answer { return answer{code: code, msg: msg} }
func ok(fields map[string]any) answer  { return answer{fields: fields} }

type route struct {
	method string
	serve  func(r *http.Request, body map[string]json.RawMessage) answer
}

// injectFault decides, in the order a real gateway would, whether this call
// is refused before it takes effect: rate limit, then 502, then busy.
func (s *Server) injectFault(api string, f Faults) func(http.ResponseWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.QPS > 0 {
		lim, ok := s.limiters[api]
		if !ok {
			lim = rate.NewLimiter(rate.Limit(f.QPS), f.QPS)
			s.limiters[api] = lim
		}
		if !lim.AllowN(s.now(), 1) {
			s.stats.RateLimited++
			if strings.HasPrefix(api, "topapi/") {
				return func(w http.ResponseWriter) {
					writeError(w, 88, "ding talk error[subcode=90018,submsg=当前应用调用该接口的并发量超过限制]")
				}
			}
			return func(w http.ResponseWriter) {
				writeError(w, 90018, "当前应用调用该接口的并发量超过限制")
			}
		}
	}
	if f.BadGatewayRate > 0 && s.rng.Float64() < f.BadGatewayRate {
		s.stats.BadGateways++
		return badGateway
	}
	if f.BusyRate > 0 && s.rng.Float64() < f.BusyRate {
		s.stats.Busy++
		if s.rng.IntN(2) == 0 {
			return func(w http.ResponseWriter) { writeError(w, -1, "系统繁忙") }
		}
		return func(w http.ResponseWriter) { writeError(w, 400001, "系统错误") }
	}
	return nil
}

func (s *Server) lostReply(f Faults) bool {
	if f.LostReplyRate <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rng.Float64() >= f.LostReplyRate {
		return false
	}
	s.stats.LostReplies++
	s.stats.BadGateways++
	return true
}

func badGateway(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n"))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, map[string]any{"errcode": code, "errmsg": msg})
}

func writeJSON(w http.ResponseWriter, fields map[string]any) {
	if _, ok := fields["errcode"]; !ok {
		fields["errcode"] = 0
		fields["errmsg"] = "ok"
	}
	fields["request_id"] = randomHex(6)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(fields)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// groupKey identifies a group by what a duplicate create would repeat.
func groupKey(name, owner string, members []string) string {
	m := append([]string(nil), members...)
	sort.Strings(m)
	return name + "\x00" + owner + "\x00" + strings.Join(m, ",")
}
