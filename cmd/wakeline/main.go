// Command wakeline is a connectionless push gateway: it holds Server-Sent
// Events connections for sleeping devices and wakes them with Web Push.
//
// The commands are built in root.go; run is the whole program minus the
// process: it takes arguments, writers and a context, and returns the exit
// code, so tests drive it in-process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1 // the command ran and failed
	exitUsage   = 2 // bad arguments, flags or configuration
)

// exitError carries the exit code of an error a command returns. Errors
// without one come from cobra itself (unknown command or flag) and are
// usage errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error   { return &exitError{code: exitUsage, err: err} }
func runtimeError(err error) error { return &exitError{code: exitRuntime, err: err} }

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain is run with the process's signals: the first SIGINT or SIGTERM
// cancels ctx, a second exits at once.
func runMain(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { relaySignals(stop, sigs, cancel, os.Exit, stderr) })
	defer wg.Wait()
	defer close(stop)

	return run(ctx, args, stdout, stderr)
}

// run executes the command line args and returns the exit code. Errors go
// to stderr: a command's own as they are (config errors are one
// "config: key: problem" per line), cobra's followed by a pointer to --help.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, err)
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}
