package deploy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TestManifestsDecodeStrictly loads every example; loading fails on any
// field the API types do not have, any duplicate key, any wrong type.
func TestManifestsDecodeStrictly(t *testing.T) {
	for _, b := range bundles(t) {
		if len(b.workloads) == 0 {
			t.Errorf("%s: no Deployment or StatefulSet", b.dir)
		}
		for _, m := range b.names {
			for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
				t.Errorf("%s: name %q: %s", b.dir, m.Name, msg)
			}
			if m.Namespace != "" {
				t.Errorf("%s: %s sets a namespace; leave it to kubectl -n or the kustomization", b.dir, m.Name)
			}
		}
	}
}

// TestWorkloadsAreConsistent checks what the API server would only find
// at apply time, or the pod at run time: selectors, references between
// objects, port names.
func TestWorkloadsAreConsistent(t *testing.T) {
	for _, b := range bundles(t) {
		for _, w := range b.workloads {
			where := b.dir + ": " + w.String()
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil || sel.Empty() {
				t.Errorf("%s: selector %v (%v)", where, w.selector, err)
			} else if !sel.Matches(labels.Set(w.template.Labels)) {
				t.Errorf("%s: selector %s does not match the pod template's labels %v", where, sel, w.template.Labels)
			}
			if w.replicas == nil {
				t.Errorf("%s: set replicas explicitly", where)
			}
			checkPodRefs(t, b, where, w)
		}
		for _, s := range b.services {
			checkService(t, b, s)
		}
		for _, p := range b.pdbs {
			if ws := b.selected(p.Spec.Selector.MatchLabels); len(ws) == 0 {
				t.Errorf("%s: PodDisruptionBudget %s selects no workload", b.dir, p.Name)
			}
		}
	}
}

func checkPodRefs(t *testing.T, b *bundle, where string, w workload) {
	t.Helper()
	spec := &w.template.Spec
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			cm := b.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Errorf("%s: volume %s: no ConfigMap %q in the bundle", where, v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s: volume %s: ConfigMap %s has no key %q", where, v.Name, cm.Name, it.Key)
				}
			}
		case v.Secret != nil:
			if b.secrets[v.Secret.SecretName] == nil {
				t.Errorf("%s: volume %s: no Secret %q in the bundle", where, v.Name, v.Secret.SecretName)
			}
		case v.PersistentVolumeClaim != nil:
			if b.claims[v.PersistentVolumeClaim.ClaimName] == nil {
				t.Errorf("%s: volume %s: no PersistentVolumeClaim %q in the bundle", where, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	for _, c := range w.claims {
		volumes[c.Name] = corev1.Volume{Name: c.Name}
	}
	for _, c := range spec.Containers {
		cw := where + " container " + c.Name
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				t.Errorf("%s: mounts undeclared volume %q", cw, m.Name)
			}
		}
		for _, e := range c.Env {
			checkEnvRef(t, b, cw, e)
		}
		for _, p := range c.Ports {
			if p.Name == "" {
				t.Errorf("%s: port %d has no name; probes and Services refer to ports by name", cw, p.ContainerPort)
			}
			for _, msg := range validation.IsValidPortName(p.Name) {
				t.Errorf("%s: port name %q: %s", cw, p.Name, msg)
			}
		}
		for name, p := range probes(&c) {
			if port, ok := probePort(p); ok && containerPort(&c, port) == 0 {
				t.Errorf("%s: %s probe port %s is not a port of the container", cw, name, port.String())
			}
		}
	}
}

func checkEnvRef(t *testing.T, b *bundle, where string, e corev1.EnvVar) {
	t.Helper()
	if e.ValueFrom == nil {
		return
	}
	if r := e.ValueFrom.SecretKeyRef; r != nil && !(r.Optional != nil && *r.Optional) && !b.secretHas(r.Name, r.Key) {
		t.Errorf("%s: env %s: Secret %q has no key %q in the bundle", where, e.Name, r.Name, r.Key)
	}
	if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !(r.Optional != nil && *r.Optional) {
		if cm := b.configMaps[r.Name]; cm == nil || cm.Data[r.Key] == "" {
			t.Errorf("%s: env %s: ConfigMap %q has no key %q in the bundle", where, e.Name, r.Name, r.Key)
		}
	}
}

func probes(c *corev1.Container) map[string]*corev1.Probe {
	out := map[string]*corev1.Probe{}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p != nil {
			out[name] = p
		}
	}
	return out
}

func probePort(p *corev1.Probe) (intstr.IntOrString, bool) {
	switch {
	case p.HTTPGet != nil:
		return p.HTTPGet.Port, true
	case p.TCPSocket != nil:
		return p.TCPSocket.Port, true
	}
	return intstr.IntOrString{}, false
}

// containerPort resolves a named or numbered port of c; 0 if c has none.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func checkService(t *testing.T, b *bundle, s *corev1.Service) {
	t.Helper()
	where := fmt.Sprintf("%s: Service %s", b.dir, s.Name)
	ws := b.selected(s.Spec.Selector)
	if len(ws) == 0 {
		t.Errorf("%s: selector %v selects no workload of the bundle", where, s.Spec.Selector)
		return
	}
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, w := range ws {
			if !slices.ContainsFunc(w.template.Spec.Containers, func(c corev1.Container) bool {
				return containerPort(&c, target) != 0
			}) {
				t.Errorf("%s: port %s targets %s, which no container of %s has", where, p.Name, target.String(), w)
			}
		}
	}
}

// selected returns the workloads whose pods a selector picks.
func (b *bundle) selected(sel map[string]string) []workload {
	if len(sel) == 0 {
		return nil
	}
	var out []workload
	for _, w := range b.workloads {
		if labels.SelectorFromSet(sel).Matches(labels.Set(w.template.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// TestPodsAreLockedDown: every container runs as non-root on a read-only
// root filesystem, without privilege escalation or capabilities, with
// resource requests and a memory limit.
func TestPodsAreLockedDown(t *testing.T) {
	for _, b := range bundles(t) {
		for _, w := range b.workloads {
			spec := &w.template.Spec
			for _, c := range spec.Containers {
				where := b.dir + ": " + w.String() + " container " + c.Name
				for _, problem := range lockdownProblems(spec.SecurityContext, c) {
					t.Errorf("%s: %s", where, problem)
				}
			}
		}
	}
}

func lockdownProblems(pod *corev1.PodSecurityContext, c corev1.Container) []string {
	var p []string
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil && pod != nil {
		nonRoot = pod.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		p = append(p, "runAsNonRoot is not true")
	}
	user := sc.RunAsUser
	if user == nil && pod != nil {
		user = pod.RunAsUser
	}
	if user != nil && *user == 0 {
		p = append(p, "runAsUser is 0")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p = append(p, "readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p = append(p, "allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		p = append(p, "privileged")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		p = append(p, "capabilities: drop [ALL] and add none")
	}
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
		p = append(p, "no cpu and memory requests")
	}
	if r.Limits.Memory().IsZero() {
		p = append(p, "no memory limit")
	} else if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 {
		p = append(p, "memory limit below the request")
	}
	if strings.HasSuffix(c.Image, ":latest") {
		p = append(p, "image tag :latest")
	}
	return p
}
