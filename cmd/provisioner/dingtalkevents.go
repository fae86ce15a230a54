package main

import (
	"github.com/rs/zerolog"

	"provisioner/dingtalk/stream"
	"provisioner/worker"
)

// dingtalkEvents is this worker's one Stream-mode connection
// (DINGTALK_EVENTS=stream), not yet running: DingTalk's group events are
// stored through the worker, which then follows them.
func (e *env) dingtalkEvents(w *worker.Worker, log zerolog.Logger) (*stream.Client, error) {
	c, err := stream.New(stream.Config{
		BaseURL: e.DingTalkAPIBaseURL, ClientID: e.DingTalkAppKey, ClientSecret: e.DingTalkAppSecret,
		UserAgent: "provisioner", Handler: w.StoreDingTalkEvent, Log: log,
	})
	if err != nil {
		return nil, usageError("provisioner: " + err.Error())
	}
	return c, nil
}
