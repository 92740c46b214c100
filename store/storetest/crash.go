package storetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wakeline/wakeline/store"
)

// crashEnv, when set, makes RunCrash the child: it names the place to
// append to.
const crashEnv = "WAKELINE_STORETEST_CRASH_PLACE"

const (
	crashRounds  = 20
	crashStreams = 4
	crashKeep    = 300 // the child evicts beyond this many events
)

// RunCrash checks that a store survives SIGKILL at any instant. It runs the
// calling test again in a child process (os.Args[0], selected with
// -test.run) that appends batches with resume ids from several goroutines
// and evicts meanwhile, and kills it after a random number of acknowledged
// appends, crashRounds times. After each kill the parent opens place and
// checks: positions contiguous from the oldest kept to the last, every
// event whole and the one that was appended at its position, the resume id
// equal to the id of the last event, and every acknowledged append kept.
//
// place is a fresh path in a temporary directory (a backend may use it as
// a file name, or as a key prefix); open must open the same store for the
// same place in both processes. The test calling RunCrash must do nothing
// before it that the child should not repeat (the child is killed, so it
// never runs cleanups: no t.TempDir).
func RunCrash(t *testing.T, open func(place string) (store.Store, error)) {
	if p := os.Getenv(crashEnv); p != "" {
		crashChild(p, open)
		return // not reached: the child exits
	}
	place := filepath.Join(t.TempDir(), "crash")
	seed := rand.Uint64()
	t.Logf("crash seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	acked := make([]uint64, crashStreams)
	for round := range crashRounds {
		crashRound(t, place, rng.IntN(40)+1, acked)
		s, err := open(place)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		for k := range crashStreams {
			checkCrashStream(t, s, k, acked[k])
		}
		must(t, "Close", s.Close())
	}
	t.Logf("acknowledged positions per stream after %d kills: %v", crashRounds, acked)
}

func crashStream(k int) string { return "u/crash" + strconv.Itoa(k) }

// crashPayload is the data of the event at pos: recognisable and of varying
// length, so a torn write cannot pass for a whole event.
func crashPayload(pos uint64) string {
	return strconv.FormatUint(pos, 10) + ":" + strings.Repeat(string(rune('a'+pos%26)), 64+int(pos%700))
}

// crashRound starts a child, waits for acks acknowledged appends on its
// stdout and kills it, raising acked to what the child reported.
func crashRound(t *testing.T, place string, acks int, acked []uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+place)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // the child exits when it closes
	must(t, "stdin pipe", err)
	stdout, err := cmd.StdoutPipe()
	must(t, "stdout pipe", err)
	must(t, "start child", cmd.Start())
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	for seen := 0; seen < acks && lines.Scan(); {
		var k int
		var pos uint64
		if _, err := fmt.Sscanf(lines.Text(), "ack %d %d", &k, &pos); err != nil || k < 0 || k >= crashStreams {
			continue // test framework output
		}
		acked[k] = max(acked[k], pos)
		seen++
	}
	// Kill, then drain: the child may have acknowledged more before dying.
	if err := cmd.Process.Kill(); err != nil {
		_ = cmd.Wait()
		t.Fatalf("child ended before the kill: %v\n%s", err, stderr.String())
	}
	for lines.Scan() {
		var k int
		var pos uint64
		if _, err := fmt.Sscanf(lines.Text(), "ack %d %d", &k, &pos); err == nil && k >= 0 && k < crashStreams {
			acked[k] = max(acked[k], pos)
		}
	}
	if err := cmd.Wait(); err == nil || strings.Contains(stderr.String(), "crash child:") {
		t.Fatalf("child did not die by the kill: %v\n%s", err, stderr.String())
	}
}

// runPattern selects exactly the test named name with -test.run.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func checkCrashStream(t *testing.T, s store.Store, k int, acked uint64) {
	t.Helper()
	ctx := context.Background()
	stream := crashStream(k)
	resume, last, err := s.Head(ctx, stream)
	must(t, "Head", err)
	if last < acked {
		t.Fatalf("%s: last position %d, but the child had an ack for %d", stream, last, acked)
	}
	wantResume := ""
	if last > 0 {
		wantResume = strconv.FormatUint(last, 10)
	}
	if resume != wantResume {
		t.Fatalf("%s: resume id %q with last position %d", stream, resume, last)
	}
	p := mustRead(t, s, stream, 0, 1)
	if last > 0 && (p.Oldest == 0 || p.Oldest > last) {
		t.Fatalf("%s: last %d but oldest kept %d", stream, last, p.Oldest)
	}
	got := readAll(t, s, stream)
	if len(got) > 0 {
		wantPositions(t, stream, got, seq(p.Oldest, last))
	}
	for _, e := range got {
		id := strconv.FormatUint(e.Pos, 10)
		if e.ID != id || !e.HasID || e.Type != "crash" || e.Data != crashPayload(e.Pos) {
			t.Fatalf("%s: event %d is not the one appended there: id %q, %d bytes of data", stream, e.Pos, e.ID, len(e.Data))
		}
	}
	if last > 0 {
		if pos, err := s.Lookup(ctx, stream, wantResume); err != nil || pos != last {
			t.Fatalf("%s: Lookup of the resume id = %d, %v", stream, pos, err)
		}
	}
}

// crashChild appends until killed (or until its stdin closes: the parent is
// gone). It reports each acknowledged append as "ack <stream> <last pos>".
func crashChild(place string, open func(string) (store.Store, error)) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	s, err := open(place)
	if err != nil {
		fail(err)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for k := range crashStreams {
		go func() {
			if err := crashAppender(s, k, func(last uint64) {
				mu.Lock()
				fmt.Fprintf(out, "ack %d %d\n", k, last)
				_ = out.Flush()
				mu.Unlock()
			}); err != nil {
				fail(err)
			}
		}()
	}
	select {} // until killed
}

// crashAppender appends batches of 1 to 5 events to its stream, and evicts
// now and then; the id of an event is its position, so the parent can tell
// what belongs where.
func crashAppender(s store.Store, k int, ack func(last uint64)) error {
	ctx := context.Background()
	stream := crashStream(k)
	_, last, err := s.Head(ctx, stream)
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		batch := make([]store.Event, 1+i%5)
		for j := range batch {
			pos := last + uint64(j) + 1
			batch[j] = store.Event{ID: strconv.FormatUint(pos, 10), HasID: true, Type: "crash", Data: crashPayload(pos)}
		}
		out, err := s.Append(ctx, stream, batch, batch[len(batch)-1].ID)
		if err != nil {
			return err
		}
		if out[0].Pos != last+1 {
			return fmt.Errorf("%s: appended at %d, expected %d", stream, out[0].Pos, last+1)
		}
		last = out[len(out)-1].Pos
		ack(last)
		if i%8 == 7 {
			if _, err := s.Evict(ctx, stream, store.Retention{MaxEvents: crashKeep}, t0, 37); err != nil {
				return err
			}
		}
	}
}
