// Package streams creates the JetStream streams and key-value buckets the
// provisioner keeps, with the replicas asked for, in a way that many workers
// starting at once on a cluster all come up: each request has a short
// timeout of its own and is retried with backoff until the caller's context
// ends, and an existing stream or bucket with fewer replicas is raised,
// never lowered.
package streams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// DefaultRequestTimeout bounds one JetStream API request during setup. On
// a cluster a request can go unanswered (a meta-leader change, two workers
// creating the same asset at once) while a retry succeeds in milliseconds.
const DefaultRequestTimeout = 3 * time.Second

// Ensurer creates or raises streams and buckets. The zero value is not
// usable: set JS. Safe for concurrent use.
type Ensurer struct {
	JS       jetstream.JetStream
	Replicas int            // wanted replicas, 1 to MaxReplicas; 0 means 1
	Log      zerolog.Logger // one line per stream or bucket raised, one warning per foreign stream with fewer
	// RequestTimeout bounds each request; 0: DefaultRequestTimeout.
	RequestTimeout time.Duration
}

func (e *Ensurer) replicas() int { return max(1, e.Replicas) }

// Stream creates the stream cfg describes, or updates it to cfg. Its
// replicas are the wanted count or the stream's own, whichever is more.
func (e *Ensurer) Stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var s jetstream.Stream
	err := e.ensure(ctx, "stream", cfg.Name, cfg.Name, func(ctx context.Context, replicas int) (err error) {
		cfg.Replicas = replicas
		s, err = e.JS.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	return s, err
}

// KeyValue creates the bucket cfg describes, or updates it to cfg, with
// replicas as Stream does.
func (e *Ensurer) KeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := e.ensure(ctx, "bucket", cfg.Bucket, "KV_"+cfg.Bucket, func(ctx context.Context, replicas int) (err error) {
		cfg.Replicas = replicas
		kv, err = e.JS.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	return kv, err
}

// ensure reads the replicas of stream (the one behind the asset called
// name), has create make or update the asset with the wanted count or that
// one, whichever is more, and logs a raise; field is "stream" or "bucket".
func (e *Ensurer) ensure(ctx context.Context, field, name, stream string, create func(context.Context, int) error) error {
	return e.Retry(ctx, field+" "+strconv.Quote(name), func(ctx context.Context) error {
		have, err := e.currentReplicas(ctx, stream)
		if err != nil {
			return err
		}
		want := max(e.replicas(), have)
		if err := create(ctx, want); err != nil {
			return err
		}
		if have > 0 && want > have {
			e.Log.Info().Str(field, name).Int("from", have).Int("to", want).Msg("replicas raised to NATS_REPLICAS")
		}
		return nil
	})
}

// CheckForeign warns, once, when a stream the provisioner reads but does not
// own (a producer's) keeps fewer replicas than wanted; it is left alone.
func (e *Ensurer) CheckForeign(ctx context.Context, name string) error {
	return e.Retry(ctx, fmt.Sprintf("stream %q", name), func(ctx context.Context) error {
		have, err := e.currentReplicas(ctx, name)
		if err != nil {
			return err
		}
		if have < e.replicas() {
			e.Log.Warn().Str("stream", name).Int("replicas", have).Int("wanted", e.replicas()).
				Msg("a stream the producers own keeps fewer replicas than NATS_REPLICAS; left alone: losing a node can lose or stall its events")
		}
		return nil
	})
}

// currentReplicas is the stream's replica count, 0 when there is no such stream.
func (e *Ensurer) currentReplicas(ctx context.Context, stream string) (int, error) {
	s, err := e.JS.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return max(1, s.CachedInfo().Config.Replicas), nil
}

// Retry runs fn, each call under a context bounded by the request timeout,
// until it succeeds, fails for good, or ctx ends. what names the asset in
// the error.
func (e *Ensurer) Retry(ctx context.Context, what string, fn func(context.Context) error) error {
	timeout := e.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0),
	), ctx)
	var last error
	err := backoff.Retry(func() error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		last = fn(rctx)
		if last != nil && Permanent(last) {
			return backoff.Permanent(last)
		}
		return last
	}, b)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && last != nil {
		err = last // the request's own failure says more than the setup deadline
	}
	return fmt.Errorf("streams: %s: %w", what, err)
}

// Permanent reports whether a setup request failed for a reason a retry
// cannot mend: JetStream refused the configuration (HTTP 400, except "no
// peers for placement", which a cluster that is still forming answers), or
// replicas were asked of a server that is not clustered.
func Permanent(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case codeReplicasNotSupported:
			return true
		case codeNoPeers, codeStreamNameInUse:
			return false
		}
		return api.Code == http.StatusBadRequest
	}
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrPermissionViolation)
}

// JetStream error codes setup retries: "no suitable peers" while a cluster
// forms, and "stream name in use with another configuration" when another
// worker created it a moment before with older settings.
const (
	codeReplicasNotSupported jetstream.ErrorCode = 10074 // replicas > 1 on a server that is not clustered
	codeNoPeers              jetstream.ErrorCode = 10005
	codeStreamNameInUse      jetstream.ErrorCode = 10058
)
