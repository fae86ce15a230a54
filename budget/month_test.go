package budget

import (
	"testing"
	"time"
)

func TestMonthFollowsShanghai(t *testing.T) {
	tests := []struct {
		at        time.Time
		month     string
		nextMonth time.Time
	}{
		{time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), "2026-11", time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)},
		// 16:00 UTC on the 30th is already December in Shanghai.
		{time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC), "2026-12", time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)},
		{time.Date(2026, 12, 31, 15, 59, 59, 0, time.UTC), "2026-12", time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.at.Format(time.RFC3339), func(t *testing.T) {
			if got := Month(tt.at); got != tt.month {
				t.Errorf("Month = %s, want %s", got, tt.month)
			}
			if got := NextMonth(tt.at); !got.Equal(tt.nextMonth) {
				t.Errorf("NextMonth = %v, want %v", got.UTC(), tt.nextMonth)
			}
		})
	}
}
