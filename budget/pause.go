package budget

import (
	"fmt"
	"time"
)

// Why the workers stop taking events.
const (
	// ReasonQuotaExhausted: DingTalk answered that the organisation's monthly
	// quota is used up (90020, Forbidden.AccessDenied.ApiCountLimitForOrg).
	ReasonQuotaExhausted = "quota_exhausted"
	// ReasonQuotaReached: the workers together made DINGTALK_MONTHLY_QUOTA calls this month.
	ReasonQuotaReached = "quota_reached"
	// ReasonOperator: someone ran provisioner pause.
	ReasonOperator = "operator"
)

// Pause says that, why and until when the workers stopped taking events.
type Pause struct {
	Reason string    `json:"reason"` // one of the Reason constants
	Detail string    `json:"detail,omitempty"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

func (p Pause) String() string {
	s := fmt.Sprintf("%s until %s", p.Reason, p.Until.Format(time.RFC3339))
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// PausedError is what a call refused because of a pause returns: the event
// is to be handed back, not failed, and the workers paused until Pause.Until.
type PausedError struct {
	Pause Pause
}

func (e *PausedError) Error() string {
	return "budget: work paused: " + e.Pause.String()
}
