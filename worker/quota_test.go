package worker_test

import (
	"context"
	"fmt"
	"testing"

	"provisioner/internal/natstest"

	"provisioner/budget"
	"provisioner/dingtalk/sim"
)

// When the month's quota runs out, DingTalk's or our own, no event fails:
// the consumer is paused (and stays paused for a worker started later),
// and after the quota is reset and work resumed, every event completes.
func TestQuotaPausesWorkInsteadOfFailing(t *testing.T) {
	natstest.Long(t)
	const events = 30 // 60 calls; the quota allows 25
	tests := []struct {
		name               string
		simQuota, ownQuota int
		reason             string
	}{
		{"DingTalk's quota", 25, 0, budget.ReasonQuotaExhausted},
		{"DINGTALK_MONTHLY_QUOTA", 0, 25, budget.ReasonQuotaReached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, sim.Config{MonthlyQuota: tt.simQuota})
			cfg := testConfig()
			cfg.MonthlyQuota = tt.ownQuota
			first := e.start(cfg, nil)
			for i := range events {
				e.publish("project.created", project(fmt.Sprint(i), "u1"))
			}
			keeper, err := budget.Open(ctx, e.js, budget.Options{Bucket: "provisioner_budget", Consumer: "provisioner", Subject: "project.created", MonthlyQuota: tt.ownQuota})
			if err != nil {
				t.Fatal(err)
			}
			var st budget.Status
			e.waitFor("work paused", func() bool {
				st, err = keeper.Status(ctx)
				return err == nil && st.Paused != nil && st.ConsumerPaused
			})
			if st.Paused.Reason != tt.reason || !st.Paused.Until.Equal(budget.NextMonth(st.Paused.Since)) {
				t.Errorf("paused %+v, want %s until the next month", st.Paused, tt.reason)
			}
			first.stop(t)

			later := e.start(cfg, nil) // a worker started later stays paused
			if st, err := keeper.Status(ctx); err != nil || !st.ConsumerPaused {
				t.Fatalf("after a worker started: %+v, %v; want the consumer still paused", st, err)
			}
			later.stop(t)

			e.sim.SetMonthlyQuota(0) // a new month, or a bigger plan
			cfg.MonthlyQuota = 0
			e.start(cfg, nil)
			if err := keeper.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			checkAllProvisioned(t, e, events)
			if st, err := keeper.Status(ctx); err != nil || st.Paused != nil || st.ConsumerPaused {
				t.Errorf("after resume: %+v, %v", st, err)
			}
		})
	}
}
