package worker

import (
	"context"
	"fmt"
)

// expire forgets the closed projects whose close is more than Retention
// old (see projects.Store.Expire); every worker does it now and then, and
// doing it twice forgets nothing twice.
func (w *Worker) expire(ctx context.Context) {
	n, err := w.Expire(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		w.log.Warn().Err(err).Msg("forgetting closed projects past RETENTION; trying again later")
	case n > 0:
		w.log.Info().Int("projects", n).Dur("retention", w.cfg.Retention).Msg("closed projects past RETENTION forgotten")
	}
}

// Expire forgets, now, every closed project whose close is more than
// Config.Retention old, and returns how many. Workers do it on their own
// every Config.ExpireInterval.
func (w *Worker) Expire(ctx context.Context) (int, error) {
	n, err := w.proj.Expire(ctx, w.cfg.Retention)
	if err != nil {
		return n, fmt.Errorf("worker: %w", err)
	}
	return n, nil
}
