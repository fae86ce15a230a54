package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/budget"
	"provisioner/worker"
)

// BudgetEnv is what the worker and the pause, resume and budget commands
// share: where NATS is and which consumer and budget they act on. The
// commands need no DingTalk credentials. (Exported so that envconfig fills
// it when embedded in env.)
type BudgetEnv struct {
	NATSEnv
	Consumer              string  `envconfig:"CONSUMER"`
	SubjectProjectCreated string  `envconfig:"SUBJECT_PROJECT_CREATED"`
	KVBudgetBucket        string  `envconfig:"KV_BUDGET_BUCKET"`
	DingTalkMonthlyQuota  int     `envconfig:"DINGTALK_MONTHLY_QUOTA" default:"0"`
	DingTalkQPS           float64 `envconfig:"DINGTALK_QPS" default:"20"`
}

// paceBucket holds the workers sharing the per-second budget.
func (b *BudgetEnv) paceBucket() string {
	return worker.Config{BudgetBucket: b.KVBudgetBucket}.PaceBucket()
}

// budgetConn is what the pause, resume and budget commands work with.
type budgetConn struct {
	keeper *budget.Keeper
	js     jetstream.JetStream
	env    BudgetEnv
}

// budgetOptions are the Keeper's options for this configuration.
func (b *BudgetEnv) budgetOptions(log zerolog.Logger) budget.Options {
	return budget.Options{Bucket: b.KVBudgetBucket, Consumer: b.Consumer, Subject: b.SubjectProjectCreated,
		MonthlyQuota: b.DingTalkMonthlyQuota, Storage: jetstream.FileStorage, Replicas: b.NATSReplicas, Log: log}
}

// openKeeper reads the environment and opens the budget on the NATS the
// workers use (NATS_URL, else a worker's embedded server on NATS_LISTEN).
// done closes the connection.
func openKeeper(ctx context.Context, log zerolog.Logger) (bc *budgetConn, done func(), err error) {
	o, err := readOps()
	if err != nil {
		return nil, nil, err
	}
	b := o.BudgetEnv
	if b.DingTalkMonthlyQuota < 0 {
		return nil, nil, usageError(fmt.Sprintf("provisioner: DINGTALK_MONTHLY_QUOTA must be 0 (no cap of our own) or more, got %d", b.DingTalkMonthlyQuota))
	}
	js, done, err := o.connect()
	if err != nil {
		return nil, nil, err
	}
	k, err := budget.Open(ctx, js, b.budgetOptions(log))
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("provisioner: %w", err)
	}
	return &budgetConn{keeper: k, js: js, env: b}, done, nil
}
