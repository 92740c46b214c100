package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// signalRig runs relaySignals with fakes for the signal channel and exit.
type signalRig struct {
	sigs   chan os.Signal
	stop   chan struct{}
	exits  chan int
	ctx    context.Context
	stderr strings.Builder
	wg     sync.WaitGroup
}

func startRelay(t *testing.T) *signalRig {
	r := &signalRig{sigs: make(chan os.Signal), stop: make(chan struct{}), exits: make(chan int, 1)}
	ctx, cancel := context.WithCancelCause(t.Context())
	r.ctx = ctx
	exit := func(code int) { r.exits <- code }
	r.wg.Go(func() { relaySignals(r.stop, r.sigs, cancel, exit, &r.stderr) })
	return r
}

// finish stops the relay and waits for it, so no goroutine outlives the test.
func (r *signalRig) finish() {
	close(r.stop)
	r.wg.Wait()
}

func TestFirstSignalCancelsSecondExits(t *testing.T) {
	r := startRelay(t)
	r.sigs <- syscall.SIGTERM // unbuffered: returns once the relay has it
	<-r.ctx.Done()
	if cause := context.Cause(r.ctx); cause == nil || !strings.Contains(cause.Error(), "terminated") {
		t.Errorf("cause = %v, want one naming the signal", cause)
	}
	select {
	case code := <-r.exits:
		t.Fatalf("exit(%d) after the first signal", code)
	default:
	}
	r.sigs <- os.Interrupt
	if code := <-r.exits; code != exitRuntime {
		t.Errorf("exit code %d, want %d", code, exitRuntime)
	}
	r.wg.Wait() // the fake exit returns, and so does the relay
	if !strings.Contains(r.stderr.String(), "exiting at once") {
		t.Errorf("stderr %q does not say why it exits", r.stderr.String())
	}
}

func TestRelayStopsWithoutSignals(t *testing.T) {
	r := startRelay(t)
	r.finish()
	if r.ctx.Err() != nil || len(r.exits) != 0 {
		t.Errorf("stopping the relay cancelled (%v) or exited (%d)", r.ctx.Err(), len(r.exits))
	}
}

func TestRelayStopsAfterOneSignal(t *testing.T) {
	r := startRelay(t)
	r.sigs <- os.Interrupt
	<-r.ctx.Done()
	r.finish()
	if len(r.exits) != 0 {
		t.Error("exit called after a single signal")
	}
	if errors.Is(context.Cause(r.ctx), context.Canceled) {
		t.Error("cause is plain Canceled, want the signal")
	}
}

// The whole program, with a signal channel standing in for the OS: serve
// runs until the first signal, then returns exit code 0.
func TestServeStopsOnFirstSignal(t *testing.T) {
	clearEnv(t)
	t.Setenv("WAKELINE_STORE_PATH", t.TempDir()+"/w.db")
	t.Setenv("WAKELINE_LISTEN", "127.0.0.1:0")
	r := startRelay(t)
	defer r.finish()
	done := make(chan int)
	go func() { done <- run(r.ctx, []string{"serve"}, io.Discard, io.Discard) }()
	r.sigs <- syscall.SIGTERM
	if code := <-done; code != exitOK {
		t.Errorf("serve exited %d after SIGTERM, want 0", code)
	}
}
