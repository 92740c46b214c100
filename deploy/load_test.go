package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization the examples use;
// decoded strictly, so a misspelt key fails.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Images []kustImage `json:"images,omitempty"`
}

// kustImage rewrites an image name of the manifests.
type kustImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

// workload is a Deployment or a StatefulSet: what the checks need of both.
type workload struct {
	kind, name string
	replicas   *int32
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
	deployment *appsv1.Deployment             // nil for a StatefulSet
}

func (w workload) String() string { return w.kind + "/" + w.name }

// bundle is one example directory: its kustomization and every object of
// the files it lists, decoded into the API types.
type bundle struct {
	dir        string
	kust       kustomization
	workloads  []workload
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	claims     map[string]*corev1.PersistentVolumeClaim
	pdbs       []*policyv1.PodDisruptionBudget
	names      []metav1.ObjectMeta // of every object, for the name checks
}

const kustomizationFile = "kustomization.yaml"

// bundles loads every directory under kubernetes/ that has a
// kustomization.yaml.
func bundles(t *testing.T) []*bundle {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("kubernetes", "*", kustomizationFile))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no kubernetes/*/%s found (%v)", kustomizationFile, err)
	}
	var out []*bundle
	for _, k := range dirs {
		out = append(out, loadBundle(t, filepath.Dir(k)))
	}
	return out
}

func loadBundle(t *testing.T, dir string) *bundle {
	t.Helper()
	b := &bundle{dir: dir, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, claims: map[string]*corev1.PersistentVolumeClaim{}}
	data, err := os.ReadFile(filepath.Join(dir, kustomizationFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &b.kust); err != nil {
		t.Fatalf("%s/%s: %v", dir, kustomizationFile, err)
	}
	if b.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || b.kust.Kind != "Kustomization" {
		t.Errorf("%s/%s: apiVersion/kind %s/%s", dir, kustomizationFile, b.kust.APIVersion, b.kust.Kind)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if base := filepath.Base(f); base != kustomizationFile && !slices.Contains(b.kust.Resources, base) {
			t.Errorf("%s: %s is not listed in %s resources", dir, base, kustomizationFile)
		}
	}
	for _, r := range b.kust.Resources {
		b.loadFile(t, filepath.Join(dir, r))
	}
	return b
}

// loadFile decodes every document of a multi-document YAML file.
func (b *bundle) loadFile(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: listed in %s but %v", b.dir, kustomizationFile, err)
		return
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Errorf("%s: document %d: %v", path, i, err)
			return
		}
		if err := b.add(doc); err != nil {
			t.Errorf("%s: document %d: %v", path, i, err)
		}
	}
}

var errUnknownKind = errors.New("a kind the test does not know; add it to bundle.add")

// add decodes one document strictly into its API type: unknown or
// duplicate fields and wrong types are errors.
func (b *bundle) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	if tm.Kind == "" && len(bytes.TrimSpace(stripComments(doc))) == 0 {
		return nil // an empty document between separators
	}
	var meta metav1.ObjectMeta
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(doc, &d); err != nil {
			return err
		}
		meta = d.ObjectMeta
		b.workloads = append(b.workloads, workload{kind: tm.Kind, name: d.Name, replicas: d.Spec.Replicas,
			selector: d.Spec.Selector, template: &d.Spec.Template, deployment: &d})
	case "apps/v1 StatefulSet":
		var s appsv1.StatefulSet
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			return err
		}
		meta = s.ObjectMeta
		b.workloads = append(b.workloads, workload{kind: tm.Kind, name: s.Name, replicas: s.Spec.Replicas,
			selector: s.Spec.Selector, template: &s.Spec.Template, claims: s.Spec.VolumeClaimTemplates})
	case "v1 Service":
		var s corev1.Service
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			return err
		}
		meta = s.ObjectMeta
		b.services = append(b.services, &s)
	case "v1 ConfigMap":
		var c corev1.ConfigMap
		if err := yaml.UnmarshalStrict(doc, &c); err != nil {
			return err
		}
		meta = c.ObjectMeta
		b.configMaps[c.Name] = &c
	case "v1 Secret":
		var s corev1.Secret
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			return err
		}
		meta = s.ObjectMeta
		b.secrets[s.Name] = &s
	case "v1 PersistentVolumeClaim":
		var c corev1.PersistentVolumeClaim
		if err := yaml.UnmarshalStrict(doc, &c); err != nil {
			return err
		}
		meta = c.ObjectMeta
		b.claims[c.Name] = &c
	case "policy/v1 PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		if err := yaml.UnmarshalStrict(doc, &p); err != nil {
			return err
		}
		meta = p.ObjectMeta
		b.pdbs = append(b.pdbs, &p)
	default:
		return errors.Join(errUnknownKind, errors.New(tm.APIVersion+" "+tm.Kind))
	}
	b.names = append(b.names, meta)
	return nil
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range strings.Lines(string(doc)) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			out = append(out, line...)
		}
	}
	return out
}

// secretHas reports whether the bundle's Secret name has key, in data or
// stringData.
func (b *bundle) secretHas(name, key string) bool {
	s := b.secrets[name]
	if s == nil {
		return false
	}
	_, inData := s.Data[key]
	_, inString := s.StringData[key]
	return inData || inString
}
