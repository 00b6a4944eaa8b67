package dhcp

import iclock "github.com/vigil-lb/vigil/internal/clock"

// The time seam; tests drive a fake clock.
type (
	clock     = iclock.Clock
	timer     = iclock.Timer
	realClock = iclock.Real
)
