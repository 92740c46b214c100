package proxy

import (
	"errors"

	"github.com/wakeline/wakeline/push"
	"github.com/wakeline/wakeline/store"
	"strconv"
)

// Log attribute keys.
const (
	keyDevice   = "device"
	keyUpstream = "upstream"
	keyStream   = "stream"
	keyErr      = "err"
)

// wakeType is the type field of every wake message.
const wakeType = "wakeline.wake"

// isGone reports a device or stream deleted while something was in flight.
func isGone(err error) bool { return errors.Is(err, store.ErrNotFound) }

// shortReason describes a push failure for the device state without the
// endpoint or anything else secret.
func shortReason(err error) string {
	var se *push.StatusError
	if errors.As(err, &se) {
		return "push service answered " + strconv.Itoa(se.Code)
	}
	return "push request failed"
}
