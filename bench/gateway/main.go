// Command gateway measures the figures of the proxy issue on loopback, with
// the real gateway, a bolt file, a real origin and a push service that
// decrypts and checks VAPID, all in this process:
//
//	go run ./bench/gateway -scenario wake     # wake latency, 1,000 sleeping devices, 100 events/s
//	go run ./bench/gateway -scenario replay   # a device that missed 10,000 events reconnects
//	go run ./bench/gateway -scenario fanout   # 5,000 live devices, p99 delivery latency
//
// The push service and the clients share the machine's cores with the
// gateway, so the figures are conservative.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"
)

func main() {
	scenario := flag.String("scenario", "all", "wake, replay, fanout or all")
	devices := flag.Int("devices", 0, "devices (default: 1000 for wake, 5000 for fanout)")
	rate := flag.Int("rate", 100, "events per second (wake, fanout)")
	seconds := flag.Int("seconds", 10, "how long to send events (wake, fanout)")
	missed := flag.Int("missed", 10000, "events a device missed (replay)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	raiseFileLimit()
	fmt.Printf("cores: %d (GOMAXPROCS %d)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	ctx := context.Background()
	failed := false
	defer func() {
		if failed {
			pprof.StopCPUProfile()
			os.Exit(1)
		}
	}()
	run := func(name string, fn func(context.Context) error) {
		if *scenario != "all" && *scenario != name {
			return
		}
		if err := fn(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			failed = true
		}
	}
	run("wake", func(ctx context.Context) error { return benchWake(ctx, or(*devices, 1000), *rate, *seconds) })
	run("replay", func(ctx context.Context) error { return benchReplay(ctx, *missed) })
	run("fanout", func(ctx context.Context) error { return benchFanout(ctx, or(*devices, 5000), *rate, *seconds) })
}

func or(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// raiseFileLimit lifts the soft limit on open files to the hard one: each
// live device holds two sockets here (client and server side).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// quantiles prints p50, p99 and max of ds.
func quantiles(what string, ds []time.Duration) {
	if len(ds) == 0 {
		fmt.Printf("%s: no samples\n", what)
		return
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	fmt.Printf("%s: n=%d p50=%v p99=%v max=%v\n", what, len(ds), q(0.50).Round(10*time.Microsecond),
		q(0.99).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
}
