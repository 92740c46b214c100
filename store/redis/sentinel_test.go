package redis_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/wakeline/wakeline/store"
	"github.com/wakeline/wakeline/store/redis"
)

// TestSentinel opens the store through a Redis Sentinel (a URL with
// master_name) in front of a server of the test's own.
func TestSentinel(t *testing.T) {
	master := startServer(t)
	bin := master.cmd.Path
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor wl 127.0.0.1 %d 1\n",
		port, dir, filepath.Join(dir, "sentinel.log"), master.port)
	must(t, os.WriteFile(conf, []byte(body), 0o600))
	cmd := exec.Command(bin, conf, "--sentinel")
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "sentinel answers", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	url := "redis://127.0.0.1:" + strconv.Itoa(port) + "/0?master_name=wl"
	st := openStore(t, url, redis.Options{Prefix: "wl:"})
	ctx := context.Background()
	out, err := st.Append(ctx, "u/s", []store.Event{{ID: "1", HasID: true, Type: "t", Data: "via sentinel"}}, "1")
	must(t, err)
	p, err := st.Read(ctx, "u/s", 0, 10)
	must(t, err)
	if len(p.Events) != 1 || p.Events[0].Pos != out[0].Pos || p.Events[0].Data != "via sentinel" {
		t.Fatalf("read through the sentinel: %+v", p)
	}
}
