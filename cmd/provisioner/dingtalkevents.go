package main

import (
	"context"
	"sync"

	"github.com/rs/zerolog"

	"provisioner/dingtalk/stream"
	"provisioner/worker"
)

// followDingTalk holds this worker's one Stream-mode connection
// (DINGTALK_EVENTS=stream): DingTalk's group events are stored through the
// worker, which then follows them. stop waits for the connection to close
// with every event it took answered.
func (e *env) followDingTalk(ctx context.Context, w *worker.Worker, log zerolog.Logger) (stop func(), err error) {
	c, err := stream.New(stream.Config{
		BaseURL: e.DingTalkAPIBaseURL, ClientID: e.DingTalkAppKey, ClientSecret: e.DingTalkAppSecret,
		UserAgent: "provisioner", Handler: w.StoreDingTalkEvent, Log: log,
	})
	if err != nil {
		return nil, usageError("provisioner: " + err.Error())
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	log.Info().Msg("following DingTalk's group events over Stream mode")
	return wg.Wait, nil
}
