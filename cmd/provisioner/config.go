package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/worker"
)

// env is the worker's configuration, read from the environment. The table in
// docs/configuration.md lists the same variables; keep them in step. Those
// the worker has a default for take it from worker.DefaultConfig when unset
// (see workerDefaults); the others' defaults are their tags.
type env struct {
	BudgetEnv
	TopologyEnv
	NATSStoreDir string `envconfig:"NATS_STORE_DIR" default:"data/nats"`

	DingTalkAPI             string `envconfig:"DINGTALK_API" default:"v1"`
	DingTalkAPIBaseURL      string `envconfig:"DINGTALK_API_BASE_URL" default:"https://api.dingtalk.com"`
	DingTalkSceneTemplateID string `envconfig:"DINGTALK_SCENE_TEMPLATE_ID"`
	DingTalkBaseURL         string `envconfig:"DINGTALK_BASE_URL" default:"https://oapi.dingtalk.com"`
	DingTalkAppKey          string `envconfig:"DINGTALK_APP_KEY"`
	DingTalkAppSecret       string `envconfig:"DINGTALK_APP_SECRET"`

	Concurrency   int           `envconfig:"CONCURRENCY"`
	AckWait       time.Duration `envconfig:"ACK_WAIT"`
	RetryBudget   time.Duration `envconfig:"RETRY_BUDGET"`
	Retention     time.Duration `envconfig:"RETENTION"`
	ShutdownGrace time.Duration `envconfig:"SHUTDOWN_GRACE"`

	OnClose          string `envconfig:"ON_CLOSE"`
	ClosedNamePrefix string `envconfig:"CLOSED_NAME_PREFIX"`

	// DingTalkEvents is off, or stream: follow DingTalk's group events
	// over Stream mode (see docs/configuration.md before turning it on).
	DingTalkEvents string `envconfig:"DINGTALK_EVENTS" default:"off"`
	OnHandDisband  string `envconfig:"ON_HAND_DISBAND"`

	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8080"`
}

// loadEnv reads and checks the configuration. Its error is one line that
// names the variable and what is wrong with it.
func loadEnv() (*env, error) {
	var e env
	if err := readEnv(&e); err != nil {
		return nil, err
	}
	defaults := newWorkerDefaults()
	defaults.topology(&e.TopologyEnv, &e.BudgetEnv)
	defaults.run(&e)
	bad := func(name, problem string) error { return usageError("provisioner: " + name + " " + problem) }
	switch {
	case e.DingTalkAppKey == "":
		return nil, bad("DINGTALK_APP_KEY", "is required: the DingTalk app's key")
	case e.DingTalkAppSecret == "":
		return nil, bad("DINGTALK_APP_SECRET", "is required: the DingTalk app's secret")
	case e.DingTalkAPI != string(dingtalk.V1) && e.DingTalkAPI != string(dingtalk.Legacy):
		return nil, bad("DINGTALK_API", fmt.Sprintf("must be v1 (an app created today) or legacy (an app that holds chat/create), got %q", e.DingTalkAPI))
	case e.DingTalkSceneTemplateID != "" && e.DingTalkAPI != string(dingtalk.V1):
		return nil, bad("DINGTALK_SCENE_TEMPLATE_ID", "needs DINGTALK_API=v1: scene groups exist only in the v1.0 API")
	case len(e.DingTalkSceneTemplateID) > 128 || strings.ContainsAny(e.DingTalkSceneTemplateID, " \t\r\n"):
		return nil, bad("DINGTALK_SCENE_TEMPLATE_ID", fmt.Sprintf("must be a template id from the developer console, got %q", e.DingTalkSceneTemplateID))
	case !isHTTPURL(e.DingTalkBaseURL):
		return nil, bad("DINGTALK_BASE_URL", fmt.Sprintf("must be an absolute http(s) URL, got %q", e.DingTalkBaseURL))
	case !isHTTPURL(e.DingTalkAPIBaseURL):
		return nil, bad("DINGTALK_API_BASE_URL", fmt.Sprintf("must be an absolute http(s) URL, got %q", e.DingTalkAPIBaseURL))
	case e.DingTalkQPS < 1:
		return nil, bad("DINGTALK_QPS", fmt.Sprintf("must be at least 1 call per second per API (the app's budget, shared by every worker), got %v", e.DingTalkQPS))
	case e.Concurrency < 1 || e.Concurrency > 10000:
		return nil, bad("CONCURRENCY", fmt.Sprintf("must be between 1 and 10000, got %d", e.Concurrency))
	case e.AckWait < time.Second:
		return nil, bad("ACK_WAIT", fmt.Sprintf("must be at least 1s, got %v", e.AckWait))
	case e.RetryBudget <= 0:
		return nil, bad("RETRY_BUDGET", fmt.Sprintf("must be positive, got %v", e.RetryBudget))
	case e.Retention < time.Hour:
		return nil, bad("RETENTION", fmt.Sprintf("must be at least 1h (it is how long duplicates are recognised), got %v", e.Retention))
	case e.ShutdownGrace < 0:
		return nil, bad("SHUTDOWN_GRACE", fmt.Sprintf("must not be negative, got %v", e.ShutdownGrace))
	case e.DingTalkMonthlyQuota < 0:
		return nil, bad("DINGTALK_MONTHLY_QUOTA", fmt.Sprintf("must be 0 (no cap of our own) or more, got %d", e.DingTalkMonthlyQuota))
	case e.OnClose != worker.CloseArchive && e.OnClose != worker.CloseDisband && e.OnClose != worker.CloseKeep:
		return nil, bad("ON_CLOSE", fmt.Sprintf("must be archive, disband or keep, got %q", e.OnClose))
	case strings.TrimSpace(e.ClosedNamePrefix) == "":
		return nil, bad("CLOSED_NAME_PREFIX", "must not be blank: an archived group is told apart by it")
	case e.DingTalkEvents != eventsOff && e.DingTalkEvents != eventsStream:
		return nil, bad("DINGTALK_EVENTS", fmt.Sprintf("must be off or stream (follow DingTalk's group events over Stream mode), got %q", e.DingTalkEvents))
	case e.OnHandDisband != worker.HandDisbandReport && e.OnHandDisband != worker.HandDisbandRecreate:
		return nil, bad("ON_HAND_DISBAND", fmt.Sprintf("must be report or recreate, got %q", e.OnHandDisband))
	}
	seen := map[string]string{}
	for _, nv := range e.TopologyEnv.subjects(&e.BudgetEnv) {
		name, v := nv[0], nv[1]
		if v == "" || strings.ContainsAny(v, "*> \t") {
			return nil, bad(name, fmt.Sprintf("must be a literal NATS subject (no wildcards or spaces), got %q", v))
		}
		if other, dup := seen[v]; dup {
			return nil, bad(name, fmt.Sprintf("must differ from %s (both are %q)", other, v))
		}
		seen[v] = name
	}
	if err := e.NATSEnv.check(); err != nil {
		return nil, err
	}
	if _, err := zerolog.ParseLevel(strings.ToLower(e.LogLevel)); err != nil || e.LogLevel == "" {
		return nil, bad("LOG_LEVEL", fmt.Sprintf("must be one of trace, debug, info, warn, error, got %q", e.LogLevel))
	}
	return &e, nil
}

func (e *env) workerConfig() worker.Config {
	cfg := e.TopologyEnv.workerConfig(&e.BudgetEnv)
	cfg.QPS, cfg.Concurrency, cfg.AckWait, cfg.RetryBudget, cfg.Retention = e.DingTalkQPS, e.Concurrency, e.AckWait, e.RetryBudget, e.Retention
	cfg.ShutdownGrace, cfg.MaxAckPending, cfg.Storage = e.ShutdownGrace, max(1000, e.Concurrency), jetstream.FileStorage
	cfg.OnClose, cfg.ClosedNamePrefix = e.OnClose, e.ClosedNamePrefix
	cfg.HandEvents, cfg.OnHandDisband = e.DingTalkEvents == eventsStream, e.OnHandDisband
	return cfg
}

// DINGTALK_EVENTS values.
const (
	eventsOff    = "off"
	eventsStream = "stream"
)

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func typeName(t string) string {
	switch t {
	case "float64":
		return "a number"
	case "int":
		return "a whole number"
	case "time.Duration", "Duration":
		return "a duration such as 30s or 5m"
	}
	return t
}

// groups builds the DingTalk client and the kind of group the worker makes:
// plain groups in the configured family, or scene groups from the template.
func (e *env) groups(obs dingtalk.Observer) (dingtalk.Groups, string, error) {
	client, err := dingtalk.NewClient(dingtalk.Options{
		Family: dingtalk.Family(e.DingTalkAPI), BaseURL: e.DingTalkBaseURL, APIBaseURL: e.DingTalkAPIBaseURL,
		AppKey: e.DingTalkAppKey, AppSecret: e.DingTalkAppSecret, // paced by the workers' shared budget, not per client
		Observer: obs,
	})
	if err != nil {
		return nil, "", usageError("provisioner: " + err.Error())
	}
	if e.DingTalkSceneTemplateID == "" {
		return dingtalk.NewChatGroups(client), describeMode(client.Family(), false), nil
	}
	g, err := dingtalk.NewSceneGroups(client, e.DingTalkSceneTemplateID)
	if err != nil {
		return nil, "", usageError("provisioner: " + err.Error())
	}
	return g, describeMode(client.Family(), true), nil
}

// describeMode names the API family and the kind of group, for logs and the demo.
func describeMode(f dingtalk.Family, scene bool) string {
	switch {
	case scene:
		return "v1 scene groups (sceneGroup/create, de-duplicated by uuid)"
	case f == dingtalk.Legacy:
		return "legacy (gettoken, chat/create, chat/update)"
	default:
		return "v1 (oauth2/accessToken, v1.0/im/group/create and update)"
	}
}
