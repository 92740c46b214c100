package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/wakeline/wakeline/store"
)

// ownIDPrefix starts the ids the gateway gives events the origin sent
// without one: "wl:" and the event's position in its stream.
const ownIDPrefix = "wl:"

// eventID is the id a device sees: the origin's where it gave a non-empty
// one, else the gateway's own, so that every event can be resumed from.
func eventID(ev store.Event) string {
	if ev.HasID && ev.ID != "" {
		return ev.ID
	}
	return ownIDPrefix + strconv.FormatUint(ev.Pos, 10)
}

// resolve turns a resume id into the position to read after. known is
// false when the id is not (or no longer) in the stream: the caller sends
// the gap event and replays everything still kept.
func resolve(ctx context.Context, st store.Log, stream, id string) (pos uint64, known bool, err error) {
	pos, err = st.Lookup(ctx, stream, id)
	if err == nil {
		return pos, true, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return 0, false, err
	}
	if rest, ok := strings.CutPrefix(id, ownIDPrefix); ok {
		n, perr := strconv.ParseUint(rest, 10, 64)
		if perr == nil && n > 0 {
			_, last, err := st.Head(ctx, stream)
			if err != nil {
				return 0, false, err
			}
			if n <= last {
				// Read reports a gap if the event was evicted meanwhile.
				return n, true, nil
			}
		}
	}
	return 0, false, nil
}

// idAt returns the device-facing id of the event at pos, "" when pos is 0
// or the event is no longer kept (then its own id still names it).
func idAt(ctx context.Context, st store.Log, stream string, pos uint64) string {
	if pos == 0 {
		return ""
	}
	p, err := st.Read(ctx, stream, pos-1, 1)
	if err == nil && len(p.Events) == 1 && p.Events[0].Pos == pos {
		return eventID(p.Events[0])
	}
	return ownIDPrefix + strconv.FormatUint(pos, 10)
}
