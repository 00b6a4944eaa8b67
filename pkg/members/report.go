package members

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// report is what one agent tells the others in every datagram.
type report struct {
	Node      string    `json:"n"`
	Instance  string    `json:"i"`
	Seq       uint64    `json:"q"`
	Sent      int64     `json:"t"` // ns since the sender's start, by its own clock
	Reachable bool      `json:"r"` // the sender can reach the API server
	Since     time.Time `json:"s"` // when Reachable last changed (wall clock; display only)
	Held      []string  `json:"h,omitempty"`
	HeldCount int       `json:"c"`
	Echo      []echo    `json:"e,omitempty"`
}

// echo is the latest send time the reporter has heard from one agent.
type echo struct {
	Node     string `json:"n"`
	Instance string `json:"i"`
	Sent     int64  `json:"t"`
}

// maxHeld caps the Service names in one report (a datagram stays well
// under a typical 64 KiB UDP limit); HeldCount always counts all.
const maxHeld = 200

func encode(r report) ([]byte, error) {
	r.HeldCount = len(r.Held)
	if len(r.Held) > maxHeld {
		r.Held = r.Held[:maxHeld]
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("members: encode: %w", err)
	}
	return b, nil
}

func decode(b []byte) (report, error) {
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return report{}, fmt.Errorf("members: decode: %w", err)
	}
	if r.Node == "" || r.Instance == "" {
		return report{}, errors.New("members: report without node or instance")
	}
	return r, nil
}
