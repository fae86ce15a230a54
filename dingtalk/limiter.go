package dingtalk

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds one limiter per API, made on first use.
type limiters struct {
	qps float64
	now func() time.Time

	mu  sync.Mutex
	per map[string]*apiLimiter // guarded by mu
}

func newLimiters(qps float64, now func() time.Time) *limiters {
	return &limiters{qps: qps, now: now, per: map[string]*apiLimiter{}}
}

func (l *limiters) get(api string) *apiLimiter {
	if l.qps == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.per[api]
	if !ok {
		// Burst 1 spaces calls evenly, so no one-second window sees more than qps.
		a = &apiLimiter{lim: rate.NewLimiter(rate.Limit(l.qps), 1), max: rate.Limit(l.qps), now: l.now}
		l.per[api] = a
	}
	return a
}

// apiLimiter caps one API's call rate. On a rate-limit answer it halves the
// rate (and pauses for as long as DingTalk asked); each success then gives
// back a twentieth of the configured rate, so it recovers within a second or two.
// A nil *apiLimiter lets everything through.
type apiLimiter struct {
	lim *rate.Limiter
	max rate.Limit
	now func() time.Time

	mu          sync.Mutex
	pausedUntil time.Time // guarded by mu
}

func (a *apiLimiter) wait(ctx context.Context) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	pause := a.pausedUntil.Sub(a.now())
	a.mu.Unlock()
	if pause > 0 {
		t := time.NewTimer(pause)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return a.lim.Wait(ctx)
}

func (a *apiLimiter) slowDown(retryAfter time.Duration) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	floor := a.max / 20
	if r := a.lim.Limit() / 2; r > floor {
		a.lim.SetLimit(r)
	} else {
		a.lim.SetLimit(floor)
	}
	if until := a.now().Add(retryAfter); retryAfter > 0 && until.After(a.pausedUntil) {
		a.pausedUntil = until
	}
}

func (a *apiLimiter) succeeded() {
	if a == nil {
		return
	}
	if r := a.lim.Limit(); r < a.max {
		a.lim.SetLimit(min(a.max, r+a.max/20))
	}
}
