package budget

import "time"

// shanghai is the zone DingTalk's monthly quota follows (UTC+8, no daylight
// saving), fixed so that no tz database is needed.
var shanghai = time.FixedZone("Asia/Shanghai", 8*60*60)

// Month names the natural month, in Asia/Shanghai, that t falls in: "2026-11".
func Month(t time.Time) string {
	return t.In(shanghai).Format("2006-01")
}

// NextMonth is 00:00 on the first of the month after t's, Asia/Shanghai:
// when DingTalk's monthly quota starts again.
func NextMonth(t time.Time) time.Time {
	s := t.In(shanghai)
	return time.Date(s.Year(), s.Month()+1, 1, 0, 0, 0, 0, shanghai)
}
