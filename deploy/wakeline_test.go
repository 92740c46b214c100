package deploy_test

import (
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	// imageWorkdir is the image's WORKDIR (TestDockerfile checks it), where
	// a relative store.path lands.
	imageWorkdir = "/var/lib/wakeline"
	// configEnv names the config file (INTERFACE.md).
	configEnv = "WAKELINE_CONFIG"
)

// secretEnv are the variables that must come from a Secret, never a literal.
var secretEnv = []string{
	"WAKELINE_PUSH_VAPID_PUBLIC_KEY",
	"WAKELINE_PUSH_VAPID_PRIVATE_KEY",
	"WAKELINE_AUTH_REGISTRATION_TOKENS",
}

// topLevelKeys are the documented top-level keys of the config.
var topLevelKeys = []string{"listen", "store", "auth", "push", "stream", "upstreams"}

var upstreamName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// gateway is the wakeline container of a bundle and what it reads.
type gateway struct {
	b      *bundle
	w      workload
	c      *corev1.Container
	env    map[string]corev1.EnvVar
	config map[string]any
	where  string
}

// TestGatewayContainers checks, in every example, what wakeline needs of
// its pod: its config from a ConfigMap, its secrets from a Secret, probes
// on /healthz and /readyz at the port it listens on, and a store that
// suits the number of replicas.
func TestGatewayContainers(t *testing.T) {
	drivers := map[string]bool{}
	for _, b := range bundles(t) {
		g := findGateway(t, b)
		if g == nil {
			continue
		}
		g.checkCommand(t)
		g.checkEnv(t)
		g.config = g.loadConfig(t)
		if g.config == nil {
			continue
		}
		port := g.checkListen(t)
		g.checkProbes(t, port)
		g.checkUpstreams(t)
		driver, _ := dig(g.config, "store", "driver").(string)
		if driver == "" {
			driver = "bolt"
		}
		drivers[driver] = true
		switch driver {
		case "bolt":
			g.checkBolt(t)
		case "redis":
			g.checkRedis(t)
		default:
			t.Errorf("%s: store.driver %q", g.where, driver)
		}
		if filepath.Base(b.dir) == "sidecar" && len(g.w.template.Spec.Containers) < 2 {
			t.Errorf("%s: the sidecar example has no app container beside wakeline", g.where)
		}
	}
	if !drivers["bolt"] || !drivers["redis"] {
		t.Errorf("examples cover store drivers %v; want both bolt and redis", drivers)
	}
}

func findGateway(t *testing.T, b *bundle) *gateway {
	t.Helper()
	var found []*gateway
	for _, w := range b.workloads {
		for i := range w.template.Spec.Containers {
			if c := &w.template.Spec.Containers[i]; c.Name == "wakeline" {
				found = append(found, &gateway{b: b, w: w, c: c, where: b.dir + ": " + w.String() + " container wakeline"})
			}
		}
	}
	if len(found) != 1 {
		t.Errorf("%s: %d containers named wakeline, want 1", b.dir, len(found))
		return nil
	}
	g := found[0]
	g.env = map[string]corev1.EnvVar{}
	for _, e := range g.c.Env {
		if _, dup := g.env[e.Name]; dup {
			t.Errorf("%s: env %s set twice", g.where, e.Name)
		}
		g.env[e.Name] = e
	}
	return g
}

func (g *gateway) checkCommand(t *testing.T) {
	t.Helper()
	// The image has no shell: keep its ENTRYPOINT, /wakeline.
	if len(g.c.Command) > 0 {
		t.Errorf("%s: command %v replaces the image's entrypoint", g.where, g.c.Command)
	}
	if len(g.c.Args) > 0 && !slices.Equal(g.c.Args[:1], []string{"serve"}) {
		t.Errorf("%s: args %v; want serve", g.where, g.c.Args)
	}
	if !slices.ContainsFunc(g.b.kust.Images, func(i kustImage) bool { return i.Name == g.c.Image && i.NewName != "" }) {
		t.Errorf("%s: image %q is not set by the kustomization's images", g.where, g.c.Image)
	}
}

func (g *gateway) checkEnv(t *testing.T) {
	t.Helper()
	for _, name := range secretEnv {
		e, ok := g.env[name]
		if !ok {
			t.Errorf("%s: env %s missing", g.where, name)
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: env %s must come from a Secret (valueFrom.secretKeyRef)", g.where, name)
		}
	}
}

// loadConfig follows WAKELINE_CONFIG to the mounted ConfigMap key and
// parses it: YAML, a mapping of exactly the documented top-level keys.
func (g *gateway) loadConfig(t *testing.T) map[string]any {
	t.Helper()
	file := g.env[configEnv].Value
	if !path.IsAbs(file) {
		t.Errorf("%s: %s = %q, want an absolute path", g.where, configEnv, file)
		return nil
	}
	text, ok := g.configMapFile(file)
	if !ok {
		t.Errorf("%s: %s = %s is not a file of a mounted ConfigMap", g.where, configEnv, file)
		return nil
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Errorf("%s: config: %v", g.where, err)
		return nil
	}
	for k := range cfg {
		if !slices.Contains(topLevelKeys, k) {
			t.Errorf("%s: config: unknown top-level key %q", g.where, k)
		}
	}
	for _, k := range topLevelKeys {
		if _, ok := cfg[k]; !ok {
			t.Errorf("%s: config: top-level key %q missing (spell the example out)", g.where, k)
		}
	}
	// Secrets belong in the Secret, not in a ConfigMap anyone may read.
	for _, k := range [][]string{{"auth", "registration_tokens"}, {"push", "vapid_private_key"}, {"store", "redis_url"}} {
		if v := dig(cfg, k...); v != nil && v != "" && !(isList(v) && len(v.([]any)) == 0) {
			t.Errorf("%s: config: %s is set in the ConfigMap; take it from the Secret", g.where, strings.Join(k, "."))
		}
	}
	return cfg
}

// configMapFile returns the content of the file at p as mounted from a
// ConfigMap volume.
func (g *gateway) configMapFile(p string) (string, bool) {
	for _, m := range g.c.VolumeMounts {
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
		if m.SubPath != "" {
			rel, ok = m.SubPath, p == m.MountPath
		}
		if !ok {
			continue
		}
		for _, v := range g.w.template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil || g.b.configMaps[v.ConfigMap.Name] == nil {
				continue
			}
			key := rel
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
			text, ok := g.b.configMaps[v.ConfigMap.Name].Data[key]
			return text, ok
		}
	}
	return "", false
}

// checkListen returns the port the gateway listens on, which must be
// reachable from the kubelet and the Service: not loopback.
func (g *gateway) checkListen(t *testing.T) int32 {
	t.Helper()
	listen, _ := g.config["listen"].(string)
	if e, ok := g.env["WAKELINE_LISTEN"]; ok {
		listen = e.Value // the environment wins over the file
	}
	host, portStr, err := net.SplitHostPort(listen)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		t.Errorf("%s: listen %q is not host:port", g.where, listen)
		return 0
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("%s: listen %q is loopback: probes and the Service cannot reach it", g.where, listen)
	}
	if !slices.ContainsFunc(g.c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port }) {
		t.Errorf("%s: listens on %d, which is not a declared container port", g.where, port)
	}
	return int32(port)
}

func (g *gateway) checkProbes(t *testing.T, port int32) {
	t.Helper()
	want := []struct {
		name, path string
		probe      *corev1.Probe
		required   bool
	}{
		{"liveness", "/healthz", g.c.LivenessProbe, true},
		{"readiness", "/readyz", g.c.ReadinessProbe, true},
		{"startup", "/healthz", g.c.StartupProbe, false}, // if any, it waits for liveness
	}
	for _, w := range want {
		switch {
		case w.probe == nil:
			if w.required {
				t.Errorf("%s: no %s probe", g.where, w.name)
			}
		case w.probe.HTTPGet == nil || w.probe.HTTPGet.Path != w.path:
			t.Errorf("%s: the %s probe is not an HTTP GET of %s", g.where, w.name, w.path)
		case containerPort(g.c, w.probe.HTTPGet.Port) != port:
			t.Errorf("%s: the %s probe goes to port %s, the gateway listens on %d", g.where, w.name, w.probe.HTTPGet.Port.String(), port)
		}
	}
}

func (g *gateway) checkUpstreams(t *testing.T) {
	t.Helper()
	ups, ok := g.config["upstreams"].([]any)
	if !ok || len(ups) == 0 {
		t.Errorf("%s: config: upstreams is not a non-empty list", g.where)
		return
	}
	for i, u := range ups {
		m, _ := u.(map[string]any)
		name, _ := m["name"].(string)
		raw, _ := m["url"].(string)
		if !upstreamName.MatchString(name) {
			t.Errorf("%s: config: upstreams[%d].name %q", g.where, i, name)
		}
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Errorf("%s: config: upstreams[%d].url %q", g.where, i, raw)
		}
	}
}

// checkBolt: the bolt file is on a persistent volume, writable by the
// non-root user, and only one pod opens it at a time.
func (g *gateway) checkBolt(t *testing.T) {
	t.Helper()
	p, _ := dig(g.config, "store", "path").(string)
	if p == "" {
		p = "wakeline.db"
	}
	if !path.IsAbs(p) {
		dir := g.c.WorkingDir
		if dir == "" {
			dir = imageWorkdir
		}
		p = path.Join(dir, p)
	}
	if !g.onClaim(path.Dir(p)) {
		t.Errorf("%s: the bolt file %s is not on a PersistentVolumeClaim", g.where, p)
	}
	if sc := g.w.template.Spec.SecurityContext; sc == nil || sc.FSGroup == nil {
		t.Errorf("%s: no pod fsGroup: the volume may not be writable by the non-root user", g.where)
	}
	d := g.w.deployment
	if d == nil {
		return
	}
	if g.w.replicas == nil || *g.w.replicas != 1 {
		t.Errorf("%s: a bolt store serves one replica", g.where)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("%s: strategy %q: with a ReadWriteOnce volume and bolt's file lock, use Recreate", g.where, d.Spec.Strategy.Type)
	}
}

// onClaim reports whether dir is on a volume from a PersistentVolumeClaim.
func (g *gateway) onClaim(dir string) bool {
	for _, m := range g.c.VolumeMounts {
		if dir != m.MountPath && !strings.HasPrefix(dir, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		if slices.ContainsFunc(g.w.claims, func(c corev1.PersistentVolumeClaim) bool { return c.Name == m.Name }) {
			return true
		}
		for _, v := range g.w.template.Spec.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil {
				return true
			}
		}
	}
	return false
}

// checkRedis: several replicas, no volume of their own, the Redis URL
// (it holds the password) from a Secret.
func (g *gateway) checkRedis(t *testing.T) {
	t.Helper()
	e, ok := g.env["WAKELINE_STORE_REDIS_URL"]
	if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Errorf("%s: WAKELINE_STORE_REDIS_URL must come from a Secret", g.where)
	}
	if g.w.replicas == nil || *g.w.replicas < 2 {
		t.Errorf("%s: the Redis example should run several replicas", g.where)
	}
	for _, v := range g.w.template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("%s: volume %s: replicas on Redis need no PersistentVolumeClaim", g.where, v.Name)
		}
	}
}

// dig returns the value at a key path of a decoded YAML mapping, or nil.
func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func isList(v any) bool { _, ok := v.([]any); return ok }
