// Command heldstreams measures what holding idle origin streams costs the
// gateway. For each protocol it starts a loopback origin in a child process
// (so the origin's sockets and memory are not counted, and each process has
// its own file descriptor limit), opens N upstream.Client streams to it with
// the package's default transport settings, waits until every one is open,
// and prints resident memory (VmRSS) and Go heap and stack per stream.
//
// Each protocol runs in a fresh client process, so memory freed by one run
// does not flatter the next.
//
//	go run ./bench/heldstreams                    # 10000 streams, h1 h1tls h2 h2c
//	go run ./bench/heldstreams -n 2000 -modes h2
//
// Modes: h1 (HTTP/1.1, plain TCP), h1tls (HTTP/1.1 over TLS), h2 (HTTP/2
// over TLS), h2c (HTTP/2 over plain TCP, prior knowledge). HTTP/1.1 needs a
// socket per stream: N must fit under the hard RLIMIT_NOFILE (`ulimit -Hn`);
// the program raises the soft limit itself.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wakeline/wakeline/upstream"
)

// gcCycles is how many collections run before a measurement.
const gcCycles = 8

// envRole tells a re-executed copy of this program what it is.
const envRole = "HELDSTREAMS_ROLE"

type options struct {
	n            int
	modes        []string
	batch        int
	h2MaxStreams int
	heartbeat    time.Duration
	memprofile   string
	raw          bool
	events       int
	gate         int
}

func main() {
	log.SetFlags(0)
	var o options
	var modes string
	flag.IntVar(&o.n, "n", 10000, "streams to hold")
	flag.StringVar(&modes, "modes", "h1,h1tls,h2,h2c", "protocols to measure, comma-separated")
	flag.IntVar(&o.batch, "batch", 1000, "streams started at a time (the listen backlog is finite)")
	flag.IntVar(&o.h2MaxStreams, "h2-max-streams", 250, "origin's HTTP/2 concurrent stream limit (Go's server default is 250)")
	flag.DurationVar(&o.heartbeat, "heartbeat", 30*time.Second, "origin's comment interval on idle streams")
	flag.IntVar(&o.events, "events", 0, "events each stream gets before going idle; the handler uses 16 KiB of stack, as a store write might")
	flag.IntVar(&o.gate, "gate", 0, "share an upstream.Gate of this size among the streams (0: none)")
	flag.BoolVar(&o.raw, "raw", false, "hold bare net/http streams (Do, then Read until EOF) instead of upstream.Client: the floor net/http sets")
	flag.StringVar(&o.memprofile, "memprofile", "", "write heap and goroutine profiles of the held streams to this prefix (+mode)")
	flag.Parse()
	o.modes = strings.Split(modes, ",")

	role, mode, _ := strings.Cut(os.Getenv(envRole), ":")
	var err error
	switch role {
	case "":
		err = orchestrate(o)
	case "client":
		err = client(o, mode)
	case "origin":
		err = serveOrigin(o, mode)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		log.Fatalf("heldstreams: %v", err)
	}
}

// orchestrate runs one client process per mode and prints their lines.
func orchestrate(o options) error {
	fmt.Printf("heldstreams: %d idle streams per mode, GOMAXPROCS=%d, NumCPU=%d, %s\n",
		o.n, runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	fmt.Printf("%-7s %7s %6s %6s %6s %8s %8s %9s %9s %7s %5s\n",
		"mode", "streams", "conns", "dials", "open_s", "rss/str", "heap/str", "stack/str", "total/str", "gor/str", "drops")
	for _, mode := range o.modes {
		cmd := exec.Command(self(), os.Args[1:]...)
		cmd.Env = append(os.Environ(), envRole+"=client:"+mode)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("mode %s: %w", mode, err)
		}
	}
	fmt.Println("conns: sockets held open; dials: connections the origin accepted in all; " +
		"*/str: growth per stream in KiB of VmRSS, Go HeapInuse, StackInuse, Sys; gor/str: goroutines per stream")
	return nil
}

func self() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// raiseNoFile lifts the soft file descriptor limit to the hard one and
// reports it.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}

// serveOrigin serves idle streams until its stdin closes (the client process
// is done), then prints how many connections it accepted and exits.
func serveOrigin(o options, mode string) error {
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idleStream(w, r, o.heartbeat, o.events)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: o.h2MaxStreams}
	var accepted atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	switch mode {
	case "h1":
		srv.Start()
	case "h2c":
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	case "h1tls":
		srv.StartTLS()
	case "h2":
		srv.EnableHTTP2 = true
		srv.StartTLS()
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	cert := ""
	if c := srv.Certificate(); c != nil {
		cert = base64.StdEncoding.EncodeToString(c.Raw)
	}
	fmt.Printf("%s %s\n", srv.URL, cert)
	_, _ = io.Copy(io.Discard, os.Stdin)
	fmt.Printf("%d\n", accepted.Load())
	return nil
}

// idleStream opens a stream, sends the given number of events, then only
// heartbeat comments, like an origin with nothing more to say.
func idleStream(w http.ResponseWriter, r *http.Request, heartbeat time.Duration, events int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": open\n\n")
	for i := range events {
		fmt.Fprintf(w, "id: %d\ndata: {\"n\":%d}\n\n", i+1, i)
	}
	w.(http.Flusher).Flush()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			_, _ = io.WriteString(w, ": beat\n\n")
			w.(http.Flusher).Flush()
		}
	}
}

// startOrigin runs the origin child and returns its URL and certificate;
// stop ends it and returns how many connections it accepted.
func startOrigin(mode string) (url string, cert *x509.Certificate, stop func() int, err error) {
	cmd := exec.Command(self(), os.Args[1:]...)
	cmd.Env = append(os.Environ(), envRole+"=origin:"+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	out := bufio.NewReader(stdout)
	stop = func() int {
		_ = stdin.Close()
		line, _ := out.ReadString('\n')
		_ = cmd.Wait()
		n, _ := strconv.Atoi(strings.TrimSpace(line))
		return n
	}
	line, err := out.ReadString('\n')
	if err != nil {
		stop()
		return "", nil, nil, fmt.Errorf("origin did not start: %w", err)
	}
	url, certB64, _ := strings.Cut(strings.TrimSpace(line), " ")
	if certB64 != "" {
		der, err := base64.StdEncoding.DecodeString(certB64)
		if err == nil {
			cert, err = x509.ParseCertificate(der)
		}
		if err != nil {
			stop()
			return "", nil, nil, err
		}
	}
	return url, cert, stop, nil
}

// httpClient is the upstream package's default client, trusting the
// origin's certificate, and for h2c told to speak HTTP/2 without TLS.
func httpClient(mode string, cert *x509.Certificate) *http.Client {
	var tc *tls.Config
	if cert != nil {
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		tc = &tls.Config{RootCAs: pool}
	}
	hc := upstream.NewHTTPClient(tc)
	if mode == "h2c" {
		t := hc.Transport.(*http.Transport)
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return hc
}

// snapshot is the process's memory at one moment, after a full GC that
// returned what it could to the OS.
type snapshot struct {
	rss, heap, stack, sys uint64
	goroutines, fds       int
}

func takeSnapshot() snapshot {
	// Each GC cycle halves the stack of a goroutine using less than a
	// quarter of it, so a stack grown while connecting reaches its idle
	// size only after several cycles; a long-running gateway gets there
	// by itself (the runtime forces a GC at least every two minutes).
	for range gcCycles {
		runtime.GC()
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, _ := os.ReadDir("/proc/self/fd")
	return snapshot{
		rss: vmRSS(), heap: ms.HeapInuse, stack: ms.StackInuse, sys: ms.Sys,
		goroutines: runtime.NumGoroutine(), fds: len(fds),
	}
}

// vmRSS reads the resident set size from /proc/self/status, in bytes.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// client measures one mode in this process.
func client(o options, mode string) error {
	limit, err := raiseNoFile()
	if err != nil {
		return err
	}
	if (mode == "h1" || mode == "h1tls") && limit < uint64(o.n)+64 {
		return fmt.Errorf("%s needs a socket per stream: %d streams, RLIMIT_NOFILE hard limit %d (raise ulimit -Hn)", mode, o.n, limit)
	}
	if o.memprofile != "" {
		runtime.MemProfileRate = 1
	}
	url, cert, stopOrigin, err := startOrigin(mode)
	if err != nil {
		return err
	}
	hc := httpClient(mode, cert)

	before := takeSnapshot()
	h := newHolder(url, hc, o.raw, o.events)
	if o.gate > 0 {
		h.gate = upstream.NewGate(o.gate)
	}
	began := time.Now()
	if err := h.open(o.n, o.batch); err != nil {
		h.close()
		stopOrigin()
		return fmt.Errorf("%s: %w", mode, err)
	}
	openFor := time.Since(began)
	held := takeSnapshot()
	drops := h.drops.Load()
	if o.memprofile != "" {
		writeProfiles(o.memprofile + "." + mode)
	}
	h.close()
	hc.CloseIdleConnections()
	dials := stopOrigin()

	n := float64(o.n)
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / n / 1024 }
	if o.raw {
		mode += "-raw"
	}
	fmt.Printf("%-7s %7d %6d %6d %6.1f %8.1f %8.1f %9.1f %9.1f %7.2f %5d\n",
		mode, o.n, held.fds-before.fds, dials, openFor.Seconds(),
		per(held.rss, before.rss), per(held.heap, before.heap), per(held.stack, before.stack),
		per(held.sys, before.sys), float64(held.goroutines-before.goroutines)/n, drops)
	return nil
}

// holder runs the streams.
type holder struct {
	url    string
	hc     *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	opened chan struct{}
	drops  atomic.Int64
	raw    bool
	events int
	gate   *upstream.Gate
}

func newHolder(url string, hc *http.Client, raw bool, events int) *holder {
	ctx, cancel := context.WithCancel(context.Background())
	return &holder{url: url, hc: hc, ctx: ctx, cancel: cancel, opened: make(chan struct{}, 1<<16), raw: raw, events: events}
}

// open starts n streams, a batch at a time, and waits until all are open.
// The first stream opens alone, so that HTTP/2 streams find its connection
// instead of racing to dial their own.
func (h *holder) open(n, batch int) error {
	for started := 0; started < n; {
		size := min(batch, n-started)
		if started == 0 {
			size = 1
		}
		for range size {
			h.wg.Go(h.run)
		}
		timeout := time.NewTimer(2 * time.Minute)
		for range size {
			select {
			case <-h.opened:
			case <-timeout.C:
				return errors.New("streams did not open within 2 minutes")
			}
		}
		timeout.Stop()
		started += size
	}
	return nil
}

func (h *holder) run() {
	if h.raw {
		h.runRaw()
		return
	}
	c := &upstream.Client{
		URL:        h.url,
		HTTPClient: h.hc,
		Gate:       h.gate,
		OnState: func(s upstream.State, err error) {
			switch s {
			case upstream.Open:
				if h.events == 0 {
					h.opened <- struct{}{}
				}
			case upstream.BackingOff:
				h.drops.Add(1)
			}
		},
	}
	got := 0
	_ = c.Run(h.ctx, nil, func(context.Context, upstream.Event) error {
		got++
		if got == h.events {
			h.opened <- struct{}{}
		}
		deepWork(16)
		return nil
	})
}

// deepWork uses about depth KiB of stack, so that the stream's goroutine
// grows as it would in a real handler and has to shrink back when idle.
//
//go:noinline
func deepWork(depth int) byte {
	var pad [1000]byte
	pad[depth%len(pad)] = byte(depth)
	if depth == 0 {
		return pad[0]
	}
	return deepWork(depth-1) + pad[depth%len(pad)]
}

// runRaw holds one stream with nothing but net/http.
func (h *holder) runRaw() {
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodGet, h.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.hc.Do(req)
	if err != nil {
		h.drops.Add(1)
		return
	}
	defer resp.Body.Close()
	h.opened <- struct{}{}
	buf := make([]byte, 512)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			return
		}
	}
}

func (h *holder) close() {
	h.cancel()
	h.wg.Wait()
}

// writeProfiles saves the heap profile and the goroutine stacks, for tuning.
func writeProfiles(prefix string) {
	for name, debugLevel := range map[string]int{"heap": 0, "goroutine": 1} {
		f, err := os.Create(prefix + "." + name)
		if err != nil {
			log.Print(err)
			continue
		}
		if err := pprof.Lookup(name).WriteTo(f, debugLevel); err != nil {
			log.Print(err)
		}
		_ = f.Close()
	}
}
