// Command failover measures how long a cluster of wakeline replicas on
// Redis takes to resume an origin stream when the replica holding it is
// SIGKILLed: from the kill to the origin seeing the next replica connect.
//
//	go run ./bench/failover                # 10 kills, lease TTL 2s
//	go run ./bench/failover -kills 20 -lease 1s
//
// It builds the wakeline binary, starts its own redis-server on a free port,
// an SSE origin in this process and three replicas, and restarts each
// killed replica so that three stay members.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

func main() {
	kills := flag.Int("kills", 10, "how many times to kill the holder")
	lease := flag.Duration("lease", 2*time.Second, "store.lease_ttl of the replicas")
	flag.Parse()
	if err := run(*kills, *lease); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

type replica struct {
	id, base, conf string
	cmd            *exec.Cmd
}

func run(kills int, lease time.Duration) error {
	dir, err := os.MkdirTemp("", "wakeline-failover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "wakeline")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/wakeline").CombinedOutput(); err != nil {
		return fmt.Errorf("go build (run from the repository root): %v\n%s", err, out)
	}
	redisAddr := freeAddr()
	_, port, _ := net.SplitHostPort(redisAddr)
	rs := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := rs.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	defer rs.Process.Kill()
	origin := upstreamtest.New()
	defer origin.Close()

	var reps []*replica
	for i := range 3 {
		r := &replica{id: fmt.Sprintf("r%d", i+1), base: "http://" + freeAddr()}
		r.conf = filepath.Join(dir, r.id+".yaml")
		conf := fmt.Sprintf("listen: %s\nstore: {driver: redis, redis_url: \"redis://%s/0\", lease_ttl: %s, replica_id: %s}\n"+
			"auth: {registration_tokens: [t]}\npush: {subject: \"mailto:ops@example.com\", allow_insecure_endpoints: true}\n"+
			"upstreams:\n  - {name: news, url: %q, retry: {initial: 50ms, max: 500ms}}\n",
			strings.TrimPrefix(r.base, "http://"), redisAddr, lease, r.id, origin.URL)
		if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
			return err
		}
		if err := r.start(bin); err != nil {
			return err
		}
		reps = append(reps, r)
	}
	defer func() {
		for _, r := range reps {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	}()
	// One device makes the stream wanted; registering through r1 is enough.
	if err := register(reps[0].base); err != nil {
		return err
	}
	if err := waitConnected(origin, 30*time.Second); err != nil {
		return err
	}
	var took []time.Duration
	for k := range kills {
		// A replica that rejoined may be taking its streams back: wait for
		// the cluster to settle on one holder.
		h := settled(reps)
		if h == nil {
			return fmt.Errorf("kill %d: no replica holds the origin", k)
		}
		drain(origin)
		start := time.Now()
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
		if err := waitConnected(origin, 10*lease+10*time.Second); err != nil {
			return fmt.Errorf("kill %d: %w", k, err)
		}
		d := time.Since(start)
		took = append(took, d)
		fmt.Printf("kill %2d: %s held the stream; resumed by another after %v\n", k+1, h.id, d.Round(time.Millisecond))
		if err := h.start(bin); err != nil {
			return err
		}
	}
	slices.Sort(took)
	fmt.Printf("failover over %d kills, lease TTL %v: median %v, max %v (aim: under %v)\n", len(took), lease,
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), lease+time.Second)
	return nil
}

func (r *replica) start(bin string) error {
	r.cmd = exec.Command(bin, "serve", "--config", r.conf)
	if err := r.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(r.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not become ready", r.id)
}

func register(base string) error {
	// A syntactically valid subscription; wakes to it fail, which is fine here.
	body := `{"push_subscription":{"endpoint":"http://127.0.0.1:9/push","keys":{` +
		`"p256dh":"BCXnHOzjmdXnqc5WMJVFVUJ7Q2S16qNadlvkWbCj5FTjqot_V8Jgjvunzecp4XEM6091poQCbscQ23oJl6Qgfy8",` +
		`"auth":"ThTUmCv5km-fIdhCX_ZPiA"}},"subscriptions":[{"upstream":"news"}]}`
	req, _ := http.NewRequest("POST", base+"/v1/devices", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("register: %d", resp.StatusCode)
	}
	return nil
}

// settled waits up to 30 s for one replica to hold the origin connection.
func settled(reps []*replica) *replica {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if h := holder(reps); h != nil {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func holder(reps []*replica) *replica {
	for _, r := range reps {
		resp, err := http.Get(r.base + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), `wakeline_origin_connections{state="open"} `); ok {
				if n, _ := strconv.ParseFloat(v, 64); n >= 1 {
					resp.Body.Close()
					return r
				}
			}
		}
		resp.Body.Close()
	}
	return nil
}

func drain(o *upstreamtest.Origin) {
	for {
		select {
		case <-o.Connected():
		default:
			return
		}
	}
}

func waitConnected(o *upstreamtest.Origin, limit time.Duration) error {
	select {
	case <-o.Connected():
		return nil
	case <-time.After(limit):
		return fmt.Errorf("no replica connected to the origin within %v", limit)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
