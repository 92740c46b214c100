package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// redisServer is a redis-server of the test's own, with an AOF in dir, so
// that the test may kill and restart it.
type redisServer struct {
	t    testing.TB
	bin  string
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: the cluster test needs its own Redis to kill and restart")
	}
	r := &redisServer{t: t, bin: bin, addr: freeAddr(t), dir: t.TempDir()}
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start(bin string) {
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
		"--appendfsync", "always", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	defer c.Close()
	tick := time.NewTicker(10 * time.Millisecond) // a child's start: nothing to wait on
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		select {
		case <-deadline:
			r.t.Fatal("redis-server did not start")
		case <-tick.C:
		}
	}
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// live returns the replicas still running.
func (c *cluster) live() []*replica {
	var out []*replica
	for _, r := range c.replicas {
		select {
		case <-r.done:
		default:
			out = append(out, r)
		}
	}
	return out
}

// replica is one gateway process, this test binary run as wakeline.
type replica struct {
	id   string
	base string
	cmd  *exec.Cmd
	done chan struct{}
}

// cluster is three gateway processes sharing one Redis.
type cluster struct {
	t        *testing.T
	redis    *redisServer
	origin   *upstreamtest.Origin
	push     *pushtest.Server
	replicas []*replica
	dir      string
}

const clusterToken = "cluster-token"

func startCluster(t *testing.T, n int) *cluster {
	c := &cluster{t: t, redis: startRedis(t), origin: upstreamtest.New(), push: pushtest.New(), dir: t.TempDir()}
	t.Cleanup(c.origin.Close)
	t.Cleanup(c.push.Close)
	for i := range n {
		c.replicas = append(c.replicas, c.startReplica(fmt.Sprintf("r%d", i+1)))
	}
	t.Cleanup(func() {
		for _, r := range c.replicas {
			c.kill(r, syscall.SIGTERM)
		}
	})
	return c
}

func (c *cluster) startReplica(id string) *replica {
	t := c.t
	r := &replica{id: id, base: "http://" + freeAddr(t), done: make(chan struct{})}
	conf := fmt.Sprintf(`listen: %s
store: {driver: redis, redis_url: "redis://%s/0", lease_ttl: 1s, replica_id: %s}
auth: {registration_tokens: [%s]}
push: {subject: "mailto:ops@example.com", allow_insecure_endpoints: true}
stream: {heartbeat: 1s, retry: 100ms}
upstreams:
  - name: news
    url: %s
    retry: {initial: 50ms, max: 500ms}
`, strings.TrimPrefix(r.base, "http://"), c.redis.addr, id, clusterToken, c.origin.URL)
	path := filepath.Join(c.dir, id+".yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(os.Args[0], "serve", "--config", path)
	r.cmd.Env = append(os.Environ(), asMainEnv+"=1")
	logf, err := os.Create(filepath.Join(c.dir, id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); logf.Close(); close(r.done) }()
	c.eventually("replica "+id+" ready", func() bool { return probe(t.Context(), r.base+"/readyz") == nil })
	return r
}

func (c *cluster) kill(r *replica, sig syscall.Signal) {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(sig)
	<-r.done
}

// eventually polls cond on a ticker until it holds or 30 s pass: for what
// other processes do, which the test cannot wait on directly.
func (c *cluster) eventually(what string, cond func() bool) {
	c.t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// holder returns the replica whose origin connection is open.
func (c *cluster) holder() *replica {
	for _, r := range c.replicas {
		select {
		case <-r.done:
			continue
		default:
		}
		if scrape(r.base, `wakeline_origin_connections{state="open"}`) >= 1 {
			return r
		}
	}
	return nil
}

// scrape reads one series from a replica's /metrics; 0 if absent.
func scrape(base, series string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// clusterDevice reads its stream from one replica after another, resuming
// by Last-Event-ID, and checks every event is the next number.
type clusterDevice struct {
	id, token string
	mu        sync.Mutex
	last      int
	err       error
}

func (d *clusterDevice) got() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last, d.err
}

// follow reads until ctx ends, starting at replica start and moving on to
// the next live one whenever a stream ends.
func (d *clusterDevice) follow(ctx context.Context, c *cluster, start int) {
	for i := start; ctx.Err() == nil; i++ {
		r := c.replicas[i%len(c.replicas)]
		select {
		case <-r.done:
			continue
		default:
		}
		if err := d.read(ctx, r); err != nil {
			d.mu.Lock()
			d.err = err
			d.mu.Unlock()
			return
		}
	}
}

// read follows one stream until it ends; an error only for a wrong event.
func (d *clusterDevice) read(ctx context.Context, r *replica) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", r.base+"/v1/devices/"+d.id+"/streams/news", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	d.mu.Lock()
	if d.last > 0 {
		req.Header.Set("Last-Event-ID", strconv.Itoa(d.last))
	}
	d.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil // that replica is down or busy: try the next
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	dec := upstream.NewDecoder(resp.Body)
	for {
		ev, err := dec.Next()
		if err != nil {
			return nil
		}
		n, err := strconv.Atoi(ev.ID)
		d.mu.Lock()
		if err != nil || n != d.last+1 {
			d.mu.Unlock()
			return fmt.Errorf("device %s got id %q (%s) after %d from %s", d.id, ev.ID, ev.Type, d.last, r.id)
		}
		d.last = n
		d.mu.Unlock()
	}
}

func (c *cluster) register(n int) []*clusterDevice {
	c.t.Helper()
	var devs []*clusterDevice
	for range n {
		sub, err := c.push.NewSubscription()
		if err != nil {
			c.t.Fatal(err)
		}
		body := fmt.Sprintf(`{"push_subscription":{"endpoint":%q,"keys":{"p256dh":%q,"auth":%q}},"subscriptions":[{"upstream":"news"}]}`,
			sub.Endpoint, sub.Keys.P256dh, sub.Keys.Auth)
		req, _ := http.NewRequest("POST", c.replicas[0].base+"/v1/devices", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+clusterToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		var out struct{ ID, Token string }
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			c.t.Fatalf("register: %d %v", resp.StatusCode, err)
		}
		devs = append(devs, &clusterDevice{id: out.ID, token: out.Token})
	}
	return devs
}

func (c *cluster) emit(from, to int) {
	for i := from; i <= to; i++ {
		c.origin.Emit(upstreamtest.Event{ID: strconv.Itoa(i), Data: fmt.Sprintf(`{"n":%d}`, i)})
	}
}

// waitAll waits until every device has read up to n, or fails on the first
// wrong event.
func (c *cluster) waitAll(devs []*clusterDevice, n int) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("every device at event %d", n), func() bool {
		for _, d := range devs {
			last, err := d.got()
			if err != nil {
				c.t.Fatal(err)
			}
			if last < n {
				return false
			}
		}
		return true
	})
}

// Three replicas share one Redis: the one holding the origin connection is
// SIGKILLed, another takes over within the lease, and then Redis itself
// restarts under load; every device, reading through any replica, gets
// every event exactly once, in order.
func TestClusterFailoverAndRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three gateway processes and a redis-server")
	}
	c := startCluster(t, 3)
	devs := c.register(6)
	c.eventually("one replica holding the origin", func() bool { return c.holder() != nil })

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() { d.follow(ctx, c, i) })
	}
	defer func() { cancel(); wg.Wait() }()

	c.emit(1, 50)
	c.waitAll(devs, 50)
	if n := c.origin.Open(); n != 1 {
		t.Fatalf("%d origin connections for one shared upstream, want 1", n)
	}

	victim := c.holder()
	killed := time.Now()
	c.kill(victim, syscall.SIGKILL)
	go c.emit(51, 100)
	c.eventually("another replica holding the origin", func() bool {
		h := c.holder()
		return h != nil && h != victim
	})
	t.Logf("failover: %v from SIGKILL of %s to the origin held again", time.Since(killed).Round(time.Millisecond), victim.id)
	c.waitAll(devs, 100)

	// Redis goes away under load: replicas say they are not ready, store
	// nothing, and neither crash nor lose what the origin can replay.
	go c.emit(101, 125)
	c.redis.stop()
	live := c.live()
	c.eventually("every replica not ready", func() bool {
		for _, r := range live {
			if probe(t.Context(), r.base+"/readyz") == nil {
				return false
			}
		}
		return true
	})
	c.redis.start(c.redis.bin)
	for _, r := range live {
		select {
		case <-r.done:
			t.Fatalf("replica %s exited while Redis was away", r.id)
		default:
		}
	}
	c.emit(126, 150)
	c.waitAll(devs, 150)
	if n := c.origin.Open(); n != 1 {
		t.Fatalf("%d origin connections after the Redis restart, want 1", n)
	}

	// Every device goes to sleep: one wake each, whichever replica holds
	// the origin and whichever the device was last connected to.
	cancel()
	wg.Wait()
	drainWakes(c.push)
	c.eventually("every device asleep", func() bool { return c.awake(devs) == 0 })
	c.emit(151, 155)
	woken := map[string]int{}
	deadline := time.After(30 * time.Second)
	for len(woken) < len(devs) {
		select {
		case w := <-c.push.Received():
			if w.Err != nil {
				t.Fatalf("push service refused a wake: %v", w.Err)
			}
			woken[w.Msg.Device]++
		case <-deadline:
			t.Fatalf("woken %v, want all %d devices", woken, len(devs))
		}
	}
	c.eventually("155 pending for every device", func() bool { return c.pendingAll(devs, 5) })
	drainWakes(c.push) // count what came meanwhile
	for _, d := range devs {
		if woken[d.id] != 1 {
			t.Errorf("device %s woken %d times, want once", d.id, woken[d.id])
		}
	}
}

// drainWakes empties the push service's record.
func drainWakes(p *pushtest.Server) {
	for {
		select {
		case <-p.Received():
		default:
			return
		}
	}
}

// deviceState is what GET /v1/devices/{id} says of a device's one upstream.
func (c *cluster) deviceState(d *clusterDevice) (pending int64, connected bool) {
	for _, r := range c.live() {
		req, _ := http.NewRequest("GET", r.base+"/v1/devices/"+d.id, nil)
		req.Header.Set("Authorization", "Bearer "+d.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var st struct {
			Subscriptions []struct {
				Pending   int64 `json:"pending"`
				Connected bool  `json:"connected"`
			} `json:"subscriptions"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && len(st.Subscriptions) == 1 {
			return st.Subscriptions[0].Pending, st.Subscriptions[0].Connected
		}
	}
	return -1, true
}

func (c *cluster) awake(devs []*clusterDevice) int {
	n := 0
	for _, d := range devs {
		if _, connected := c.deviceState(d); connected {
			n++
		}
	}
	return n
}

func (c *cluster) pendingAll(devs []*clusterDevice, want int64) bool {
	for _, d := range devs {
		if p, _ := c.deviceState(d); p != want {
			return false
		}
	}
	return true
}
