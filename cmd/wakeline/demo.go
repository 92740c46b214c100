package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/wakeline/wakeline"
	"github.com/wakeline/wakeline/config"
	"github.com/wakeline/wakeline/proxy/proxytest"
	"github.com/wakeline/wakeline/push/pushtest"
	"github.com/wakeline/wakeline/upstream/upstreamtest"
)

// demoTimeout bounds the whole demo: it is a story, not a server.
const demoTimeout = 30 * time.Second

// demoToken is the registration token of the demo's gateway.
const demoToken = "demo-registration-token"

// runDemo shows the whole loop on loopback, telling the story on out: an
// origin, the gateway on a temporary store, and a simulated phone with its
// own push service that decrypts the wake message. It stops early when
// ctx is cancelled.
func runDemo(ctx context.Context, out io.Writer, opts demoOptions) error {
	storyCtx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	p := &printer{out: out, start: time.Now()}

	origin := upstreamtest.New()
	defer origin.Close()
	p.say("An origin server publishes a news feed as Server-Sent Events at %s", origin.URL)
	pushSvc := pushtest.New()
	defer pushSvc.Close()
	p.say("A push service (like the browser vendor's) listens at %s; it checks VAPID and decrypts what it gets", pushSvc.URL)

	base, stop, err := startDemoGateway(storyCtx, origin.URL, opts.listen)
	if err != nil {
		return err
	}
	defer stop()
	p.say("The wakeline gateway runs at %s with a temporary bolt store", base)

	phone := &demoPhone{base: base, p: p}
	if err := phone.story(storyCtx, origin, pushSvc); err != nil {
		return err
	}
	p.say("The end: the phone slept through the burst, was woken once, and missed nothing.")
	if !opts.serve {
		return nil
	}
	return keepServing(ctx, p, base, origin, pushSvc)
}

// demoOptions are the demo command's flags.
type demoOptions struct {
	serve  bool   // keep running, with the example web page, until interrupted
	listen string // the gateway's address
}

// startDemoGateway runs a gateway on a temporary store; stop shuts it
// down and removes the store.
func startDemoGateway(ctx context.Context, originURL, listen string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "wakeline-demo-")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	g, err := proxytest.Start(ctx, proxytest.Options{Config: demoConfig(originURL), Path: filepath.Join(dir, "demo.db")})
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- g.ServeHandler(sctx, ln, wakeline.WebHandler(g.Handler())) }()
	stop := func() {
		cancel()
		<-done
		_ = g.Close(context.Background())
		os.RemoveAll(dir)
	}
	return "http://" + ln.Addr().String(), stop, nil
}

func demoConfig(originURL string) config.Config {
	cfg := config.Default()
	cfg.Auth.RegistrationTokens = []string{demoToken}
	cfg.Push.Subject = "mailto:demo@wakeline.example"
	cfg.Push.AllowInsecureEndpoints = true // the demo's push service is plain http on loopback
	up := config.DefaultUpstream()
	up.Name, up.URL = "news", originURL
	up.Retry = config.RetryConfig{Initial: 50 * time.Millisecond, Max: time.Second}
	cfg.Upstreams = []config.Upstream{up}
	return cfg
}

// printer tells the story with the time since the start.
type printer struct {
	out   io.Writer
	start time.Time
}

func (p *printer) say(format string, args ...any) {
	ms := time.Since(p.start).Milliseconds()
	fmt.Fprintf(p.out, "[%5d ms] %s\n", ms, fmt.Sprintf(format, args...))
}

var errDemo = errors.New("demo: the story went wrong")
