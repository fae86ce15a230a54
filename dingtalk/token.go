package dingtalk

import (
	"context"
	"time"
)

// Token is an access token and when DingTalk stops accepting it.
type Token struct {
	AccessToken string
	Expiry      time.Time
}

// TokenSource supplies access tokens. Implementations must be safe for
// concurrent use; the returned Token must not be modified.
type TokenSource interface {
	Token(ctx context.Context) (*Token, error)
}

const (
	// DefaultTokenLifetime is DingTalk's documented token lifetime, also used
	// when a gettoken reply gives no usable expires_in.
	DefaultTokenLifetime = 7200 * time.Second
	// DefaultExpirySkew is how long before expiry a cached token is replaced.
	DefaultExpirySkew = 5 * time.Minute
)

// TokenCache is a TokenSource that reuses a token until shortly before it
// expires, then fetches a new one from its source. Concurrent callers share
// one fetch: the lock is held during the refresh, so there is no stampede.
// Safe for concurrent use; keep one per app key.
type TokenCache struct {
	src  TokenSource
	skew time.Duration
	now  func() time.Time

	lock    chan struct{} // a mutex that a waiting caller can give up on with its context
	t       *Token        // guarded by lock
	fetched time.Time     // guarded by lock: when t was fetched
}

// NewTokenCache wraps src. skew ≤ 0 means DefaultExpirySkew; now nil means time.Now.
// A token whose whole lifetime is shorter than twice the skew is replaced at
// half its lifetime instead, so short-lived tokens never cause a fetch loop.
func NewTokenCache(src TokenSource, skew time.Duration, now func() time.Time) *TokenCache {
	if skew <= 0 {
		skew = DefaultExpirySkew
	}
	if now == nil {
		now = time.Now
	}
	return &TokenCache{src: src, skew: skew, now: now, lock: make(chan struct{}, 1)}
}

// Token returns the cached token, or fetches a new one when it is due.
func (c *TokenCache) Token(ctx context.Context) (*Token, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.lock }()

	now := c.now()
	if c.t != nil && now.Before(c.refreshAt()) {
		return c.t, nil
	}
	t, err := c.src.Token(ctx)
	if err != nil {
		return nil, err
	}
	c.t, c.fetched = t, now
	return t, nil
}

// Invalidate drops the cached token if it is still bad, the one a caller was
// refused with. Callers that were refused with the same token at the same
// time thus cause one fetch, not one each.
func (c *TokenCache) Invalidate(bad string) {
	c.lock <- struct{}{}
	if c.t != nil && c.t.AccessToken == bad {
		c.t = nil
	}
	<-c.lock
}

// refreshAt is when the cached token is due for replacement; c.lock must be held.
func (c *TokenCache) refreshAt() time.Time {
	skew := c.skew
	if half := c.t.Expiry.Sub(c.fetched) / 2; half < skew {
		skew = half
	}
	return c.t.Expiry.Add(-skew)
}
