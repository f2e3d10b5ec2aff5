package aethercache

import (
	"encoding/json"
	"math"
	"time"
)

// fromEpoch turns the library's epoch seconds (a double, as Aether stores
// them) into a time.Time; the zero value stays the zero time.
func fromEpoch(s float64) time.Time {
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return time.Time{}
	}
	sec, frac := math.Modf(s)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9)))
}

// toEpoch is fromEpoch's inverse (0 for the zero time).
func toEpoch(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// epochTime is a time.Time whose JSON form is epoch seconds (a number, or
// null for the zero time), the form of every timestamp in the library's JSON.
type epochTime time.Time

func (e *epochTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*e = epochTime{}
		return nil
	}
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*e = epochTime(fromEpoch(s))
	return nil
}

func (e epochTime) MarshalJSON() ([]byte, error) {
	if time.Time(e).IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(toEpoch(time.Time(e)))
}
