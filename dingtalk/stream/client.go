// Package stream receives DingTalk's events over Stream mode: the app opens
// an outbound WebSocket (no public endpoint, no callback encryption), and
// DingTalk pushes each event to one of the app's open connections until one
// answers SUCCESS.
//
// It follows the official SDK (open-dingtalk/dingtalk-stream-sdk-go,
// client/ and payload/) and DingTalk's protocol page: open a connection by
// POST /v1.0/gateway/connections/open, dial endpoint?ticket=…, answer
// SYSTEM ping with its data, and on SYSTEM disconnect open the next
// connection before the old one closes. An event is answered SUCCESS only
// once the Handler has stored it, LATER otherwise, so that DingTalk pushes
// it again; a connection lost with events unanswered loses none.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
)

// Handler stores one event. It returns nil only once the event is safe
// (DingTalk then forgets it); an error asks DingTalk to push it again. It
// may be called for the same event more than once, on any connection,
// even after it returned nil: DingTalk repeats events.
type Handler func(ctx context.Context, ev Event) error

// Config is what a Client needs.
type Config struct {
	BaseURL      string // DingTalk's v1.0 API; https://api.dingtalk.com
	ClientID     string // the app key
	ClientSecret string // the app secret: sent only in the open request
	UserAgent    string // the ua the gateway is told; "provisioner"
	LocalIP      string // the localIp the gateway is told; optional
	HTTPClient   *http.Client
	Handler      Handler
	Log          zerolog.Logger
	// MaxInFlight bounds the events handled at once per connection; an
	// event beyond it is left unanswered, and DingTalk pushes it again. 64.
	MaxInFlight int
	// HandlerTimeout bounds one Handler call; 10 s.
	HandlerTimeout time.Duration
	// InitialBackoff and MaxBackoff space the attempts to connect again
	// after a connection is lost or refused; 1 s and 60 s.
	InitialBackoff, MaxBackoff time.Duration
	// KeepAlive is how long a connection may be silent before a WebSocket
	// ping checks it (a lost connection is then closed and opened again); 60 s.
	KeepAlive time.Duration
}

// Client holds one Stream-mode connection at a time (two for a moment when
// DingTalk asks it to move). Create it with New; it is safe for concurrent
// use.
type Client struct {
	cfg       Config
	connected atomic.Bool
	stats     struct {
		events, stored, later, dropped, connects atomic.Int64
	}
}

// Stats counts what a Client did.
type Stats struct {
	Events   int64 // EVENT frames received (repeats included)
	Stored   int64 // answered SUCCESS
	Later    int64 // answered LATER: the handler failed
	Dropped  int64 // left unanswered: too many in flight
	Connects int64 // connections made
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.BaseURL == "":
		return nil, errors.New("stream: the API base URL is empty")
	case cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("stream: the app key and secret are required")
	case cfg.Handler == nil:
		return nil, errors.New("stream: no handler")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "provisioner"
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = 10 * time.Second
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 60 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	return &Client{cfg: cfg}, nil
}

// Connected says whether a connection is open now.
func (c *Client) Connected() bool { return c.connected.Load() }

// Stats reports the counts so far.
func (c *Client) Stats() Stats {
	return Stats{Events: c.stats.events.Load(), Stored: c.stats.stored.Load(), Later: c.stats.later.Load(),
		Dropped: c.stats.dropped.Load(), Connects: c.stats.connects.Load()}
}

// Run holds a connection until ctx ends, connecting again with backoff
// whenever it is lost or refused. On return every event it took has been
// answered, or left unanswered for DingTalk to push again.
func (c *Client) Run(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = c.cfg.InitialBackoff, c.cfg.MaxBackoff, 0
	b.Reset()
	var cur *session
	defer func() {
		c.connected.Store(false)
		if cur != nil {
			cur.retire(0)
		}
	}()
	for {
		if cur == nil {
			s, err := c.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				wait := b.NextBackOff()
				c.cfg.Log.Warn().Err(err).Dur("retry_in", wait).Msg("stream: no connection to DingTalk")
				if !sleep(ctx, wait) {
					return nil
				}
				continue
			}
			cur = s
			c.connected.Store(true)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-cur.disconnect:
			// DingTalk moves the connection: the next one first, then the old one goes.
			next := c.handover(ctx, cur)
			go cur.retire(5 * time.Second)
			cur = next
			if cur == nil {
				c.connected.Store(false)
			} else {
				b.Reset()
			}
		case <-cur.done:
			c.connected.Store(false)
			if cur.sinceOpen() > time.Minute {
				b.Reset()
			}
			c.cfg.Log.Warn().Err(cur.cause()).Msg("stream: the connection to DingTalk was lost; connecting again")
			cur.retire(0)
			cur = nil
			if !sleep(ctx, b.NextBackOff()) {
				return nil
			}
		}
	}
}

// handover opens the connection that replaces old, trying until it
// succeeds, ctx ends, or old closes (the caller then connects with backoff).
func (c *Client) handover(ctx context.Context, old *session) *session {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 200*time.Millisecond, 2*time.Second, 0
	b.Reset()
	for {
		s, err := c.connect(ctx)
		if err == nil {
			c.cfg.Log.Info().Msg("stream: moved to a new connection as DingTalk asked")
			return s
		}
		c.cfg.Log.Warn().Err(err).Msg("stream: opening the connection that replaces one DingTalk is closing")
		select {
		case <-ctx.Done():
			return nil
		case <-old.done:
			return nil
		case <-time.After(b.NextBackOff()):
		}
	}
}

// connect opens and dials one connection and starts reading it.
func (c *Client) connect(ctx context.Context) (*session, error) {
	addr, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, addr, &websocket.DialOptions{HTTPClient: c.cfg.HTTPClient})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, fmt.Errorf("%w (HTTP %d)", errDial, status)
	}
	ws.SetReadLimit(1 << 20)
	c.stats.connects.Add(1)
	s := newSession(c, ws)
	go s.read()
	go s.keepAlive()
	return s, nil
}

// session is one connection.
type session struct {
	c          *Client
	ws         *websocket.Conn
	opened     time.Time
	ctx        context.Context // ends when the connection closes
	cancel     context.CancelFunc
	slots      chan struct{}
	inflight   sync.WaitGroup
	disconnect chan struct{} // closed when DingTalk asks to move
	done       chan struct{} // closed when reading ends
	err        error         // why reading ended; set before done closes
	lastRead   atomic.Int64  // unix nanoseconds
	once       sync.Once
}

func newSession(c *Client, ws *websocket.Conn) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{c: c, ws: ws, opened: time.Now(), ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, c.cfg.MaxInFlight), disconnect: make(chan struct{}), done: make(chan struct{})}
	s.lastRead.Store(time.Now().UnixNano())
	return s
}

func (s *session) sinceOpen() time.Duration { return time.Since(s.opened) }

func (s *session) cause() error { return s.err }

// read takes frames until the connection ends.
func (s *session) read() {
	defer close(s.done)
	for {
		typ, data, err := s.ws.Read(s.ctx)
		if err != nil {
			s.err = fmt.Errorf("stream: reading: %w", err)
			return
		}
		s.lastRead.Store(time.Now().UnixNano())
		if typ != websocket.MessageText {
			continue
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil || f.Headers == nil {
			s.c.cfg.Log.Warn().Int("bytes", len(data)).Msg("stream: a frame that is not JSON was ignored")
			continue
		}
		s.dispatch(&f)
	}
}

// dispatch answers a SYSTEM frame at once, and hands an EVENT to the
// handler when there is room.
func (s *session) dispatch(f *frame) {
	switch f.Type {
	case typeSystem:
		switch f.Headers["topic"] {
		case topicPing:
			s.write(pong(f))
		case topicDisconnect:
			s.write(ack(f, true))
			s.once.Do(func() { close(s.disconnect) })
		default:
			s.write(ack(f, true))
		}
	case typeEvent:
		s.c.stats.events.Add(1)
		select {
		case s.slots <- struct{}{}:
		default:
			s.c.stats.dropped.Add(1)
			s.c.cfg.Log.Warn().Str("event_id", f.Headers["eventId"]).Msg("stream: too many events in flight: left for DingTalk to push again")
			return
		}
		s.inflight.Add(1)
		go func() {
			defer func() { <-s.slots; s.inflight.Done() }()
			s.handle(f)
		}()
	default: // CALLBACK: none subscribed
		s.write(notFound(f))
	}
}

// handle stores one event and answers it.
func (s *session) handle(f *frame) {
	ev := f.event()
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.HandlerTimeout)
	defer cancel()
	err := s.c.cfg.Handler(ctx, ev)
	if err != nil {
		s.c.stats.later.Add(1)
		s.c.cfg.Log.Warn().Err(err).Str("event_id", ev.ID).Str("event_type", ev.Type).Msg("stream: event not stored; DingTalk will push it again")
	} else {
		s.c.stats.stored.Add(1)
	}
	s.write(ack(f, err == nil))
}

func (s *session) write(r reply) {
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, data); err != nil && s.ctx.Err() == nil {
		s.c.cfg.Log.Debug().Err(err).Msg("stream: answering a frame failed; DingTalk pushes it again")
	}
}

// keepAlive pings a silent connection, and closes it when no pong comes.
func (s *session) keepAlive() {
	every := s.c.cfg.KeepAlive
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.lastRead.Load())) < every {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		err := s.ws.Ping(ctx)
		cancel()
		if err != nil {
			s.c.cfg.Log.Warn().Err(err).Msg("stream: no answer to a ping: closing the connection")
			_ = s.ws.CloseNow()
			return
		}
	}
}

// retire lets the handlers in flight answer (for up to wait), then closes
// the connection. Events not answered by then are pushed again.
func (s *session) retire(wait time.Duration) {
	finished := make(chan struct{})
	go func() { s.inflight.Wait(); close(finished) }()
	if wait > 0 {
		select {
		case <-finished:
		case <-time.After(wait):
		case <-s.done:
		}
	} else {
		// Shutting down: the handlers (bounded by HandlerTimeout) finish and answer.
		select {
		case <-finished:
		case <-time.After(s.c.cfg.HandlerTimeout):
		}
	}
	_ = s.ws.Close(websocket.StatusNormalClosure, "")
	s.cancel()
	<-s.done
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
