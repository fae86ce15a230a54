package sim

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// QPSModel is how the simulator counts an API's calls against Faults.QPS.
// DingTalk's docs describe a count per wall-clock second; the exact
// algorithm is undocumented, so a client should be safe under all of these.
type QPSModel string

// The counting models.
const (
	PerSecond   QPSModel = "second"  // per wall-clock second (the default; what the docs describe)
	Sliding     QPSModel = "sliding" // over any one-second window
	HalfSeconds QPSModel = "halves"  // two half-second buckets: the current one and the one before
	TokenBucket QPSModel = "bucket"  // a token bucket: QPS tokens a second, burst QPS
)

// ParseQPSModel reads a model's name; empty is PerSecond.
func ParseQPSModel(s string) (QPSModel, error) {
	switch m := QPSModel(s); m {
	case "":
		return PerSecond, nil
	case PerSecond, Sliding, HalfSeconds, TokenBucket:
		return m, nil
	}
	return "", fmt.Errorf("sim: QPS model must be %s, %s, %s or %s, got %q", PerSecond, Sliding, HalfSeconds, TokenBucket, s)
}

// qpsCounter admits or refuses one API's calls; refused calls are not counted.
type qpsCounter interface {
	allow(now time.Time) bool
}

func newQPSCounter(m QPSModel, qps int) qpsCounter {
	switch m {
	case Sliding:
		return &slidingCounter{qps: qps}
	case HalfSeconds:
		return &halvesCounter{qps: qps}
	case TokenBucket:
		return &bucketCounter{lim: rate.NewLimiter(rate.Limit(qps), qps)}
	default:
		return &secondCounter{qps: qps}
	}
}

type secondCounter struct {
	qps    int
	second int64
	n      int
}

func (c *secondCounter) allow(now time.Time) bool {
	if s := now.Unix(); s != c.second {
		c.second, c.n = s, 0
	}
	if c.n >= c.qps {
		return false
	}
	c.n++
	return true
}

type slidingCounter struct {
	qps   int
	times []time.Time // admitted calls of the last second, oldest first
}

func (c *slidingCounter) allow(now time.Time) bool {
	cut := 0
	for cut < len(c.times) && !c.times[cut].After(now.Add(-time.Second)) {
		cut++
	}
	c.times = c.times[cut:]
	if len(c.times) >= c.qps {
		return false
	}
	c.times = append(c.times, now)
	return true
}

type halvesCounter struct {
	qps        int
	half       int64 // index of the current half-second
	cur, prior int
}

func (c *halvesCounter) allow(now time.Time) bool {
	h := now.UnixMilli() / 500
	switch {
	case h == c.half+1:
		c.prior, c.cur = c.cur, 0
	case h != c.half:
		c.prior, c.cur = 0, 0
	}
	c.half = h
	if c.cur+c.prior >= c.qps {
		return false
	}
	c.cur++
	return true
}

type bucketCounter struct {
	lim *rate.Limiter
}

func (c *bucketCounter) allow(now time.Time) bool { return c.lim.AllowN(now, 1) }
