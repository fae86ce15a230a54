package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Stream mode, as DingTalk's gateway speaks it (see docs/simulator.md):
//
//   - POST /v1.0/gateway/connections/open with clientId and clientSecret
//     answers {endpoint, ticket}; a ticket serves one connection within 90 s;
//   - GET /gateway/connect?ticket=… upgrades to a WebSocket;
//   - each event goes to one of the app's open connections (round robin)
//     as an EVENT frame, and is pushed again (to the next connection) when
//     it is answered LATER, not answered within StreamConfig.RedeliverAfter,
//     or its connection closes unanswered;
//   - SYSTEM ping every StreamConfig.PingInterval; SYSTEM disconnect on
//     Disconnect, the socket closed StreamConfig.DisconnectGrace later.

// StreamConfig shapes the simulator's Stream mode.
type StreamConfig struct {
	// RedeliverAfter is how long an event pushed and not answered waits
	// before it is pushed again; default 3 s.
	RedeliverAfter time.Duration
	// PingInterval is how often each connection gets a SYSTEM ping; 0: never.
	PingInterval time.Duration
	// DisconnectGrace is how long a connection told to disconnect stays
	// open; default 10 s, as on DingTalk.
	DisconnectGrace time.Duration
	// CorpID is the organisation the events name; default "dingcorp".
	CorpID string
}

// StreamStats counts what Stream mode did.
type StreamStats struct {
	Opened      int // tickets handed out
	Connections int // connections open now
	Connected   int // connections ever accepted
	Peak        int // the most connections open at once
	Emitted     int // events raised (by-hand changes not silenced)
	Pushes      int // EVENT frames sent, redeliveries included
	Acked       int // events answered SUCCESS (a repeat pushed by PushAgain counts again)
	Later       int // answers asking for redelivery (LATER, or a code other than 200)
	Pongs       int // answers to pings
	Pending     int // events not yet answered SUCCESS
}

const ticketLifetime = 90 * time.Second

// hub is Stream mode's state. Its mutex is taken after Server.mu, never
// before.
type hub struct {
	cfg StreamConfig
	now func() time.Time

	mu      sync.Mutex
	tickets map[string]time.Time
	conns   []*streamConn // open, in the order they connected
	next    int           // round robin over conns
	pending []*pushed     // events not yet answered SUCCESS, in the order raised
	byMsg   map[string]*pushed
	acked   map[string]*pushed // by event id, for PushAgain
	pings   map[string]bool
	stats   StreamStats
	seq     int
}

// pushed is one event and where it is.
type pushed struct {
	id, typ string
	data    []byte
	born    time.Time
	conn    *streamConn // the connection it was last pushed to, until answered
	msgID   string
	due     time.Time // when to push it again when unanswered
}

// streamConn is one open WebSocket.
type streamConn struct {
	ws      *websocket.Conn
	closing bool // told to disconnect: no more events
	done    chan struct{}
}

func newHub(cfg StreamConfig, now func() time.Time) *hub {
	if cfg.RedeliverAfter <= 0 {
		cfg.RedeliverAfter = 3 * time.Second
	}
	if cfg.DisconnectGrace <= 0 {
		cfg.DisconnectGrace = 10 * time.Second
	}
	if cfg.CorpID == "" {
		cfg.CorpID = "dingcorp"
	}
	return &hub{cfg: cfg, now: now, tickets: map[string]time.Time{}, byMsg: map[string]*pushed{},
		acked: map[string]*pushed{}, pings: map[string]bool{}}
}

// openConnection serves /v1.0/gateway/connections/open.
func (s *Server) openConnection(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ClientID      string `json:"clientId"`
		ClientSecret  string `json:"clientSecret"`
		Subscriptions []struct {
			Type  string `json:"type"`
			Topic string `json:"topic"`
		} `json:"subscriptions"`
	}
	if r.Method != http.MethodPost {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Subscriptions) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": "invalidParameter", "message": "参数错误"})
		return
	}
	s.mu.Lock()
	s.stats.Calls["v1.0/gateway/connections/open"]++
	good := (s.cfg.AppKey == "" || req.ClientID == s.cfg.AppKey) && (s.cfg.AppSecret == "" || req.ClientSecret == s.cfg.AppSecret)
	s.mu.Unlock()
	if !good {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": "authFailed", "message": "鉴权失败"})
		return
	}
	ticket := randomHex(16)
	h := s.hub
	h.mu.Lock()
	h.tickets[ticket] = h.now().Add(ticketLifetime)
	h.stats.Opened++
	h.mu.Unlock()
	scheme := "ws://"
	if r.TLS != nil {
		scheme = "wss://"
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoint": scheme + r.Host + "/gateway/connect", "ticket": ticket})
}

// connect serves /gateway/connect: a ticket's one WebSocket.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	h := s.hub
	ticket := r.URL.Query().Get("ticket")
	h.mu.Lock()
	until, ok := h.tickets[ticket]
	delete(h.tickets, ticket)
	h.mu.Unlock()
	if !ok || h.now().After(until) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": "invalidTicket", "message": "ticket无效或已过期"})
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	c := &streamConn{ws: ws, done: make(chan struct{})}
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.stats.Connected++
	h.stats.Peak = max(h.stats.Peak, len(h.conns))
	h.mu.Unlock()
	h.flush()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.tick(ctx, c)
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			break
		}
		h.answer(data)
	}
	h.drop(c)
	_ = ws.CloseNow()
}

// tick pings c and pushes overdue events again while c is open.
func (h *hub) tick(ctx context.Context, c *streamConn) {
	every := min(h.cfg.RedeliverAfter/4, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	lastPing := h.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
		}
		if h.cfg.PingInterval > 0 && h.now().Sub(lastPing) >= h.cfg.PingInterval {
			lastPing = h.now()
			id := randomHex(8)
			h.mu.Lock()
			h.pings[id] = true
			h.mu.Unlock()
			h.send(c, frame("SYSTEM", map[string]string{"topic": "ping", "messageId": id}, `{"opaque":"`+randomHex(6)+`"}`, h.now()))
		}
		h.flush()
	}
}

// answer takes a client's reply: an event's SUCCESS or LATER, or a pong.
func (h *hub) answer(data []byte) {
	var rep struct {
		Code    int               `json:"code"`
		Headers map[string]string `json:"headers"`
		Data    string            `json:"data"`
	}
	if json.Unmarshal(data, &rep) != nil {
		return
	}
	id := rep.Headers["messageId"]
	h.mu.Lock()
	if h.pings[id] {
		delete(h.pings, id)
		h.stats.Pongs++
		h.mu.Unlock()
		return
	}
	p, ok := h.byMsg[id]
	if !ok {
		h.mu.Unlock()
		return
	}
	delete(h.byMsg, id)
	var status struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal([]byte(rep.Data), &status)
	if rep.Code == http.StatusOK && status.Status == "SUCCESS" {
		h.stats.Acked++
		h.pending = slices.DeleteFunc(h.pending, func(q *pushed) bool { return q == p })
		h.acked[p.id] = p
	} else {
		h.stats.Later++
		p.conn, p.due = nil, h.now().Add(h.cfg.RedeliverAfter) // to another connection, later
	}
	h.mu.Unlock()
	h.flush()
}

// drop forgets a closed connection; what it was not answered goes elsewhere.
func (h *hub) drop(c *streamConn) {
	h.mu.Lock()
	h.conns = slices.DeleteFunc(h.conns, func(o *streamConn) bool { return o == c })
	for _, p := range h.pending {
		if p.conn == c {
			delete(h.byMsg, p.msgID)
			p.conn, p.due = nil, time.Time{} // to another connection, at once
		}
	}
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	h.mu.Unlock()
	h.flush()
}

// flush pushes every event that has no connection, or whose connection
// did not answer in time, round robin over the connections not closing.
func (h *hub) flush() {
	type out struct {
		c *streamConn
		f []byte
	}
	var sends []out
	h.mu.Lock()
	now := h.now()
	for _, p := range h.pending {
		if now.Before(p.due) {
			continue
		}
		c := h.pick()
		if c == nil {
			break
		}
		if p.conn != nil {
			delete(h.byMsg, p.msgID)
		}
		h.seq++
		p.conn, p.due, p.msgID = c, now.Add(h.cfg.RedeliverAfter), "msg-"+strconv.Itoa(h.seq)+"-"+randomHex(4)
		h.byMsg[p.msgID] = p
		h.stats.Pushes++
		sends = append(sends, out{c, h.eventFrame(p)})
	}
	h.mu.Unlock()
	for _, s := range sends {
		h.send(s.c, s.f)
	}
}

// pick is the next connection that takes events, round robin; h.mu held.
func (h *hub) pick() *streamConn {
	for range h.conns {
		c := h.conns[h.next%len(h.conns)]
		h.next++
		if !c.closing {
			return c
		}
	}
	return nil
}

func (h *hub) send(c *streamConn, f []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, f)
}

// eventFrame is p's EVENT frame; h.mu held.
func (h *hub) eventFrame(p *pushed) []byte {
	ms := strconv.FormatInt(p.born.UnixMilli(), 10)
	return frame("EVENT", map[string]string{
		"topic": "*", "messageId": p.msgID, "contentType": "application/json",
		"eventType": p.typ, "eventId": p.id, "eventBornTime": ms, "eventCorpId": h.cfg.CorpID,
		"eventUnifiedAppId": "sim-app",
	}, string(p.data), h.now())
}

func frame(typ string, headers map[string]string, data string, now time.Time) []byte {
	headers["time"] = strconv.FormatInt(now.UnixMilli(), 10)
	b, _ := json.Marshal(map[string]any{"specVersion": "1.0", "type": typ, "headers": headers, "data": data})
	return b
}

// emit raises an event of type typ: it is pushed to a connection now, or
// when one opens.
func (h *hub) emit(typ string, data map[string]any) string {
	now := h.now()
	data["corpId"], data["timeStamp"] = h.cfg.CorpID, now.UnixMilli()
	b, _ := json.Marshal(data)
	p := &pushed{id: randomHex(16), typ: typ, data: b, born: now}
	h.mu.Lock()
	h.pending = append(h.pending, p)
	h.stats.Emitted++
	h.mu.Unlock()
	h.flush()
	return p.id
}

// Disconnect sends SYSTEM disconnect to every open connection, as DingTalk
// does before moving them, and closes each DisconnectGrace later. Events
// they have not answered by then are pushed elsewhere.
func (s *Server) Disconnect() {
	h := s.hub
	h.mu.Lock()
	conns := slices.Clone(h.conns)
	for _, c := range conns {
		c.closing = true
	}
	h.mu.Unlock()
	for _, c := range conns {
		h.send(c, frame("SYSTEM", map[string]string{"topic": "disconnect", "messageId": randomHex(8)}, `{"reason":"server maintenance"}`, h.now()))
		time.AfterFunc(h.cfg.DisconnectGrace, func() { _ = c.ws.CloseNow() })
	}
}

// PushAgain pushes an event that was answered SUCCESS once more, as
// DingTalk may; it reports whether the event was found.
func (s *Server) PushAgain(eventID string) bool {
	h := s.hub
	h.mu.Lock()
	p, ok := h.acked[eventID]
	if ok {
		h.pending = append(h.pending, &pushed{id: p.id, typ: p.typ, data: p.data, born: p.born})
	}
	h.mu.Unlock()
	h.flush()
	return ok
}

// StreamStats reports what Stream mode did.
func (s *Server) StreamStats() StreamStats {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.stats
	st.Connections, st.Pending = len(h.conns), len(h.pending)
	return st
}

// Emitted is the ids of every event raised so far, answered or not.
func (s *Server) Emitted() []string {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range h.pending {
		out = append(out, p.id)
	}
	for id := range h.acked {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
