package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// relaySignals turns the first signal on sigs into a graceful shutdown:
// cancel, with the signal in the cause (context.Cause) for the log. A
// second signal means "now": it writes one line to stderr and calls
// exit(exitRuntime). It returns when stop is closed, or after exit (which
// in the real program does not return).
func relaySignals(stop <-chan struct{}, sigs <-chan os.Signal, cancel context.CancelCauseFunc,
	exit func(code int), stderr io.Writer) {
	select {
	case <-stop:
		return
	case sig := <-sigs:
		cancel(fmt.Errorf("received %v, shutting down (send it again to exit at once)", sig))
	}
	select {
	case <-stop:
	case sig := <-sigs:
		fmt.Fprintf(stderr, "wakeline: received %v again, exiting at once\n", sig)
		exit(exitRuntime)
	}
}
