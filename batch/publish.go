package batch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// PublishOptions tune Publish. Zero fields take the defaults.
type PublishOptions struct {
	// Parallel is how many publishes are in flight at once; 32. Each waits
	// a round trip for the stream's answer, so thousands of rows take
	// seconds; the batch's pace is the worker's.
	Parallel int
	// RetryFor is how long one row's publish is retried while the stream does
	// not answer or says it cannot store now (a leader election, a full
	// stream); 1 min.
	RetryFor time.Duration
	// Published is called for each row the stream has stored, from several
	// goroutines.
	Published func(*Row)
}

// Publish publishes each row's event on s.Subject, with Nats-Msg-Id MsgID
// and the expectation that s.Events stores it, so a repeat within the
// stream's duplicate window is dropped. It stops at the first row whose
// publish fails for good or outlasts its retries, and says which.
func Publish(ctx context.Context, js jetstream.JetStream, s Streams, rows []*Row, o PublishOptions) error {
	if o.Parallel <= 0 {
		o.Parallel = 32
	}
	if o.RetryFor <= 0 {
		o.RetryFor = time.Minute
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Parallel)
	for _, row := range rows {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := publishRow(gctx, js, s, row, o.RetryFor); err != nil {
				return err
			}
			if o.Published != nil {
				o.Published(row)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

func publishRow(ctx context.Context, js jetstream.JetStream, s Streams, row *Row, retryFor time.Duration) error {
	msg := &nats.Msg{Subject: s.Subject, Data: row.Body, Header: nats.Header{}}
	b := backoff.NewExponentialBackOff()
	b.MaxElapsedTime = retryFor
	b.MaxInterval = 5 * time.Second
	return backoff.Retry(func() error {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := js.PublishMsg(attempt, msg, jetstream.WithMsgID(MsgID(s.Subject, row.Key)), jetstream.WithExpectStream(s.Events))
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return backoff.Permanent(ctx.Err())
		case temporary(err):
			return fmt.Errorf("batch: publishing line %d: %w", row.Line, err)
		default:
			return backoff.Permanent(fmt.Errorf("batch: publishing line %d: %w", row.Line, err))
		}
	}, backoff.WithContext(b, ctx))
}

// temporary reports whether a publish may succeed if sent again: no answer
// in time, no stream listening (yet), or the stream saying it cannot store
// now (a 503: a full stream, no quorum).
func temporary(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.As(err, &api):
		return api.Code >= 500
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}
