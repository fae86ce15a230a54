// Package sim is a DingTalk simulator: the group-chat server API of both
// families, with DingTalk's limits, error codes, error shapes and token
// rules, plus fault injection (system busy, QPS limits, the monthly quota,
// 502s, lost replies, latency). It records what it did, so tests can assert
// on groups, members, calls and duplicates.
//
// The old family (oapi): GET /gettoken, POST /chat/create, POST /chat/update,
// GET /chat/get, POST /topapi/chat/qrcode/get; errors are HTTP 200 with
// errcode/errmsg, the token is the access_token query parameter.
//
// The v1.0 family (api): POST /v1.0/oauth2/accessToken,
// /v1.0/im/group/create and /update, scene groups through
// /v1.0/im/sceneGroup/create, /sceneGroup/member/add, /sceneGroups/query and
// /sceneGroups/members/batchQuery; errors are an HTTP status with
// {"code","message","requestid"} ({"Code","Message","RequestId"} from the
// gateway); the token is the x-acs-dingtalk-access-token header.
//
// One server answers both hosts (their paths do not overlap), and one token
// serves both, as on DingTalk. A *Server is an http.Handler: serve it from
// httptest.NewServer in tests, or from an http.Server as a standalone
// simulator. It is safe for concurrent use.
package sim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config sets up a Server. The zero value is a well-behaved DingTalk that
// accepts any app key and secret and has no scene-group template.
type Config struct {
	AppKey    string // the only app key the token endpoints accept; empty accepts any
	AppSecret string // the only secret the token endpoints accept; empty accepts any
	// TokenLifetime is how long an issued token is valid; default 7200 s.
	TokenLifetime time.Duration
	// UnknownUsers are userids DingTalk does not know.
	UnknownUsers []string
	// SceneTemplates are the published scene-group templates' ids.
	SceneTemplates []string
	// RefuseRepeatedUUID makes a sceneGroup/create whose uuid was used before
	// answer an error (400 parameter.invalid) instead of the first group.
	// DingTalk's documentation does not say which it does.
	RefuseRepeatedUUID bool
	// RefuseExistingMembers makes an add naming someone already in the group
	// answer an error instead of doing nothing. Undocumented either way.
	RefuseExistingMembers bool
	// RefuseAbsentRemovals makes a removal naming someone not in the group
	// answer an error (60124, or 400 parameter.invalid) instead of doing
	// nothing. Undocumented either way.
	RefuseAbsentRemovals bool
	// RefuseOwnerAddedInSameCall makes a plain group's update that adds
	// someone and makes them owner in the same call answer an error (the new
	// owner must already be a member). Undocumented either way.
	RefuseOwnerAddedInSameCall bool
	// MonthlyQuota is how many calls the organisation may make (token calls
	// and calls refused for QPS do not count); 0: no quota.
	MonthlyQuota int
	// Stream shapes Stream mode: the gateway, its WebSocket and the events
	// by-hand changes raise.
	Stream StreamConfig
	Faults Faults
	Seed   uint64           // seeds fault injection; 0 picks a random seed
	Now    func() time.Time // default time.Now
}

// Faults are the failures the simulator injects. Injected failures happen
// before the call takes effect, except LostReplyRate.
type Faults struct {
	BusyRate       float64       // probability of "system busy": -1 / 400001, or v1.0's 429 system.busy / 500 system.error
	BadGatewayRate float64       // probability of an HTTP 502 HTML page
	LostReplyRate  float64       // probability that a call takes effect but its reply is an HTTP 502
	QPS            int           // calls per second allowed per API, counted as QPSModel says; 0: no limit
	QPSModel       QPSModel      // how calls are counted against QPS; default PerSecond
	Latency        time.Duration // added to every reply
	// Jitter delays each call's arrival by a random 0 to Jitter (before it
	// is counted), as a network's varying latency does.
	Jitter time.Duration
}

// Stats counts what the simulator saw and did.
type Stats struct {
	Calls         map[string]int // requests per API path ("gettoken", "chat/create", "v1.0/im/group/create", …), refused ones included
	TokensIssued  int            // distinct tokens handed out
	Busy          int            // injected busy answers
	BadGateways   int            // injected 502s, lost replies included
	LostReplies   int            // calls that took effect but were answered 502
	RateLimited   int            // calls refused for QPS
	Banned        int            // calls answered with an IP ban (see Ban)
	QuotaRefused  int            // calls refused for the monthly quota
	QuotaUsed     int            // calls counted against the monthly quota
	ConfigRefused int            // calls refused for the app's configuration (RevokePermission, DenyIP)
	GroupsCreated int
	Duplicates    int // creates whose name, owner and members equal an earlier group's
	UUIDRepeats   int // scene creates whose uuid was used before (no group made)
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
	TemplateID         string // set for scene groups
	UUID               string // the scene group's uuid, if it was given one
	Disbanded          bool   // a scene group disbanded: sceneGroups/query says status 2, every other call is refused
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
	limiters map[string]qpsCounter
	stats    Stats
	token    string
	expiry   time.Time
	old      map[string]bool // tokens issued before the current one
	groups   map[string]*Group
	byCID    map[string]*Group // by open conversation id
	byUUID   map[string]*Group
	banned   time.Time       // every call is refused as from a banned IP until then
	revoked  map[string]bool // APIs the app has lost the permission of
	ipDenied bool            // the caller's IP is not on the app's allowlist
	order    []string        // chat ids in creation order
	seen     map[string]bool // name|owner|sorted members of every created group
	silent   bool            // by-hand changes raise no events
	hub      *hub
}

// route is one endpoint: its method, family and handler.
type route struct {
	method string
	v1     bool // the v1.0 family: header token, HTTP-status errors
	token  bool // a token endpoint: no token needed, not counted against the quota
	serve  func(r *http.Request, body map[string]json.RawMessage) answer
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
		groups: map[string]*Group{}, byCID: map[string]*Group{}, byUUID: map[string]*Group{}, seen: map[string]bool{},
	}
	get, post := http.MethodGet, http.MethodPost
	s.routes = map[string]route{
		"gettoken":                               {method: get, token: true, serve: s.getToken},
		"chat/create":                            {method: post, serve: s.createChat},
		"chat/update":                            {method: post, serve: s.updateChat},
		"chat/get":                               {method: get, serve: s.getChat},
		"topapi/chat/qrcode/get":                 {method: post, serve: s.qrCode},
		"v1.0/oauth2/accessToken":                {method: post, v1: true, token: true, serve: s.accessToken},
		"v1.0/im/group/create":                   {method: post, v1: true, serve: s.createChat},
		"v1.0/im/group/update":                   {method: post, v1: true, serve: s.updateChat},
		"v1.0/im/sceneGroup/create":              {method: post, v1: true, serve: s.createSceneGroup},
		"v1.0/im/sceneGroup/member/add":          {method: post, v1: true, serve: s.addSceneMembers},
		"v1.0/im/sceneGroups/query":              {method: post, v1: true, serve: s.querySceneGroup},
		"v1.0/im/sceneGroups/members/batchQuery": {method: post, v1: true, serve: s.sceneMembers},
		"v1.0/im/sceneGroup/update":              {method: post, v1: true, serve: s.updateSceneGroup},
		"v1.0/im/sceneGroup/member/delete":       {method: post, v1: true, serve: s.removeSceneMembers},
		"v1.0/im/chat/scenegroup/disband":        {method: post, v1: true, serve: s.disbandSceneGroup},
	}
	for _, u := range cfg.UnknownUsers {
		s.unknown[u] = true
	}
	s.hub = newHub(cfg.Stream, now)
	s.SetFaults(cfg.Faults)
	return s
}

// SetFaults replaces the injected faults; tests may call it while serving.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.limiters = map[string]qpsCounter{}
}

// AddUsers makes userids DingTalk did not know known, as when people join
// the organisation; tests may call it while serving.
func (s *Server) AddUsers(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.unknown, id)
	}
}

// SetMonthlyQuota starts a new quota period with n calls (0: no quota), as
// the first of a month or a bigger plan does; tests may call it while serving.
func (s *Server) SetMonthlyQuota(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.MonthlyQuota, s.stats.QuotaUsed = n, 0
}

// Ban refuses every call for d as DingTalk does a banned IP: HTTP 200 with
// {"status":1111,"wait":<seconds>,"punish":"deny"}, on every API.
func (s *Server) Ban(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.banned = s.now().Add(d)
}

// ExpireTokens makes every token issued so far expired: calls made with one
// are refused (42001, or v1.0's 401), and the token endpoints issue a new one.
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

// Restore puts groups back as they were (Groups' copies, perhaps from
// another run saved as JSON): DingTalk's state before a test, such as
// groups an older release made or a person made by hand. No call is counted.
func (s *Server) Restore(groups ...Group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range groups {
		c := g.clone()
		s.groups[c.ChatID] = &c
		s.byCID[c.OpenConversationID] = &c
		if c.UUID != "" {
			s.byUUID[c.UUID] = &c
		}
		s.order = append(s.order, c.ChatID)
		s.seen[groupKey(c.Name, c.Owner, c.Members)] = true
	}
}

// Group returns a copy of one group, by chat id or open conversation id.
func (s *Server) Group(id string) (Group, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.find(id)
	if !ok {
		return Group{}, false
	}
	return g.clone(), true
}

// find is a group by chat id or open conversation id; s.mu must be held.
func (s *Server) find(id string) (*Group, bool) {
	if g, ok := s.groups[id]; ok {
		return g, true
	}
	g, ok := s.byCID[id]
	return g, ok
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
	switch api {
	case "v1.0/gateway/connections/open":
		s.openConnection(w, r)
		return
	case "gateway/connect":
		s.connect(w, r)
		return
	}
	rt, ok := s.routes[api]
	if !ok || r.Method != rt.method {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	s.stats.Calls[api]++
	f := s.faults
	var jitter time.Duration
	if f.Jitter > 0 {
		jitter = time.Duration(s.rng.Int64N(int64(f.Jitter) + 1))
	}
	s.mu.Unlock()
	time.Sleep(jitter)
	if wait, ok := s.ban(); ok {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":1111,"wait":%d,"punish":"deny"}`, wait)
		return
	}

	// A call that arrived takes effect even if its caller hangs up while it
	// is being served, as on a real server: a client killed with a request
	// on the wire may have made its effect.
	time.Sleep(f.Latency)
	if a, refused := s.refuseApp(api, rt); refused {
		s.write(w, rt, a)
		return
	}
	if a, refused := s.injectFault(api, rt, f); refused {
		s.write(w, rt, a)
		return
	}
	if !rt.token {
		if a := s.checkToken(r, rt); a.refused() {
			s.write(w, rt, a)
			return
		}
	}
	var body map[string]json.RawMessage
	if r.Method == http.MethodPost {
		var err error
		if body, err = readBody(r); err != nil {
			s.write(w, rt, fail(badParameter, "参数错误: "+err.Error()))
			return
		}
	}
	a := rt.serve(r, body)
	if !a.refused() && s.lostReply(f) {
		badGateway(w)
		return
	}
	s.write(w, rt, a)
}

// RevokePermission makes DingTalk refuse api (e.g. "v1.0/im/group/create")
// as for an app that lacks its permission: 43007, or v1.0's 403
// Forbidden.AccessDenied.AccessTokenPermissionDenied naming the permission.
// GrantPermission undoes it.
func (s *Server) RevokePermission(api string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked == nil {
		s.revoked = map[string]bool{}
	}
	s.revoked[api] = true
}

// GrantPermission gives the app api's permission back.
func (s *Server) GrantPermission(api string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.revoked, api)
}

// DenyIP makes DingTalk refuse every call, token calls included, as from an
// IP missing from the app's allowlist (60020, or v1.0's 403
// Forbidden.AccessDenied.IpNotInWhiteList); false allows it again. Whether
// DingTalk checks the allowlist on token calls is undocumented; refusing
// them too is the stricter model.
func (s *Server) DenyIP(denied bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ipDenied = denied
}

// refuseApp refuses a call that the app's own configuration does not allow.
func (s *Server) refuseApp(api string, rt route) (answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ipDenied:
		s.stats.ConfigRefused++
		return fail(ipNotAllowed, "访问ip不在白名单之中, request ip=192.0.2.10"), true
	case !rt.token && s.revoked[api]:
		s.stats.ConfigRefused++
		return fail(permissionDenied, "应用尚未开通所需的权限：[qyapi_chat_manage]"), true
	}
	return answer{}, false
}

// injectFault decides, in the order a real gateway would, whether this call
// is refused before it takes effect: rate limit, monthly quota, then 502,
// then busy.
func (s *Server) injectFault(api string, rt route, f Faults) (answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.QPS > 0 {
		lim, ok := s.limiters[api]
		if !ok {
			lim = newQPSCounter(f.QPSModel, f.QPS)
			s.limiters[api] = lim
		}
		if !lim.allow(s.now()) {
			s.stats.RateLimited++
			if strings.HasPrefix(api, "topapi/") {
				return answer{errcode: 88, msg: "ding talk error[subcode=90018,submsg=当前应用调用该接口的并发量超过限制]"}, true
			}
			return fail(qpsLimited, "当前应用调用该接口的并发量超过限制"), true
		}
	}
	if f.BadGatewayRate > 0 && s.rng.Float64() < f.BadGatewayRate {
		s.stats.BadGateways++
		return answer{badGateway: true}, true
	}
	if !rt.token && s.cfg.MonthlyQuota > 0 {
		if s.stats.QuotaUsed >= s.cfg.MonthlyQuota {
			s.stats.QuotaRefused++
			return fail(quotaExhausted, "当前组织的API调用量已超过本月限额"), true
		}
		s.stats.QuotaUsed++
	}
	if f.BusyRate > 0 && s.rng.Float64() < f.BusyRate {
		s.stats.Busy++
		if s.rng.IntN(2) == 0 {
			return fail(systemBusy, "系统繁忙"), true
		}
		return fail(systemError, "系统错误"), true
	}
	return answer{}, false
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

// groupKey identifies a group by what a duplicate create would repeat.
func groupKey(name, owner string, members []string) string {
	m := append([]string(nil), members...)
	sort.Strings(m)
	return name + "\x00" + owner + "\x00" + strings.Join(m, ",")
}

// ban says whether the caller is banned now, and for how many more seconds.
func (s *Server) ban() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := s.banned.Sub(s.now())
	if left <= 0 {
		return 0, false
	}
	s.stats.Banned++
	return int((left + time.Second - 1) / time.Second), true
}
