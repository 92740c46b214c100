package redis_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/redis"
)

// server is a redis-server of the test's own, with its AOF in dir.
type server struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startServer(t *testing.T) *server {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("no redis-server to start: %v", err)
	}
	s := &server{t: t, port: freePort(t), dir: t.TempDir()}
	s.start(bin)
	t.Cleanup(s.kill)
	return s
}

func (s *server) url() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0" }

// start runs redis-server on the server's port and dir, and waits until it
// answers.
func (s *server) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	waitFor(s.t, "redis-server answers", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill ends the server with SIGKILL: what it acknowledged is in the AOF
// (written before the reply; fsync does not matter when only the process
// dies).
func (s *server) kill() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func (s *server) signal(sig os.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// bounded runs call and checks that it fails within limit.
func bounded(t *testing.T, what string, limit time.Duration, call func(ctx context.Context) error) {
	t.Helper()
	start := time.Now()
	err := call(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Fatalf("%s with Redis away: no error", what)
	}
	if took > limit {
		t.Fatalf("%s with Redis away took %v (%v), want at most %v", what, took, err, limit)
	}
}

// storeCalls are a few calls of each kind, for the outage checks. The
// append goes to a stream of its own: a stopped Redis runs it when it
// resumes (the client gave up on the reply, not on the command).
func storeCalls(st *redis.Store) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"Append": func(ctx context.Context) error {
			_, err := st.Append(ctx, "u/away", []store.Event{{Type: "t", Data: "maybe"}}, "x")
			return err
		},
		"Read":   func(ctx context.Context) error { _, err := st.Read(ctx, "u/o", 0, 10); return err },
		"Head":   func(ctx context.Context) error { _, _, err := st.Head(ctx, "u/o"); return err },
		"Device": func(ctx context.Context) error { _, err := st.Device(ctx, "dev1"); return err },
		"ClaimWake": func(ctx context.Context) error {
			_, err := st.ClaimWake(ctx, "dev1", "news", time.Now(), time.Minute)
			return err
		},
		"Ping": st.Ping,
	}
}

// TestRedisAway stops Redis (SIGSTOP: nothing answers), kills it (nothing
// listens), and restarts it on its AOF: calls fail within the timeouts
// meanwhile, lease contexts end, and afterwards the store works again with
// everything it had acknowledged.
func TestRedisAway(t *testing.T) {
	srv := startServer(t)
	bin := srv.cmd.Path
	const timeout = 300 * time.Millisecond
	st := openStore(t, srv.url(), redis.Options{Prefix: "wl:", DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	ctx := t.Context()
	must(t, st.CreateDevice(ctx, store.Device{ID: "dev1", Subscriptions: []store.Subscription{{Upstream: "news", Stream: "u/o"}}}))
	in := []store.Event{{ID: "1", HasID: true, Type: "t", Data: "one"}, {ID: "2", HasID: true, Type: "t", Data: "two"}}
	if _, err := st.Append(ctx, "u/o", in, "2"); err != nil {
		t.Fatal(err)
	}
	m := startMember(t, st, "a", clusterOpts())
	held, release, err := m.c.Lead(ctx, "u/o")
	must(t, err)
	defer release()

	// Stopped: connections open, nothing answers.
	srv.signal(syscall.SIGSTOP)
	for name, call := range storeCalls(st) {
		bounded(t, name+" (Redis stopped)", 3*timeout, call)
	}
	select {
	case <-held.Done():
	case <-time.After(ttl + time.Second):
		t.Fatal("lease context still alive with Redis stopped")
	}
	srv.signal(syscall.SIGCONT)
	waitFor(t, "store answers again", 5*time.Second, func() bool { return st.Ping(ctx) == nil })

	// Killed: nothing listens.
	srv.kill()
	for name, call := range storeCalls(st) {
		bounded(t, name+" (Redis killed)", 3*timeout, call)
	}
	_, release2, err := leadWithin(m, "u/o", ttl)
	if err == nil {
		release2()
		t.Fatalf("Lead succeeded with Redis down")
	}

	// Back, from its AOF.
	srv.start(bin)
	waitFor(t, "store answers after the restart", 10*time.Second, func() bool { return st.Ping(ctx) == nil })
	p, err := st.Read(ctx, "u/o", 0, 10)
	must(t, err)
	if len(p.Events) != 2 || p.Events[1].Data != "two" || p.Last != 2 {
		t.Fatalf("after the restart: %+v", p)
	}
	if _, err := st.Device(ctx, "dev1"); err != nil {
		t.Fatalf("device after the restart: %v", err)
	}
	// The cluster rejoins and leads again; appends go on from position 3.
	held, release3, err := leadWithin(m, "u/o", 5*time.Second)
	must(t, err)
	defer release3()
	out, err := st.Append(held, "u/o", []store.Event{{Type: "t", Data: "three"}}, "3")
	must(t, err)
	if out[0].Pos != 3 {
		t.Fatalf("append after the restart at %d, want 3", out[0].Pos)
	}
}

// leadWithin calls Lead with a deadline.
func leadWithin(m *member, stream string, d time.Duration) (context.Context, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	held, release, err := m.c.Lead(ctx, stream)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if errors.Is(held.Err(), context.Canceled) {
		cancel()
		return nil, nil, held.Err()
	}
	// The lease context lives on ctx: keep ctx until released.
	return held, func() { release(); cancel() }, nil
}
