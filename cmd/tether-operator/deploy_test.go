package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/operator"
)

// The shipped manifests (Helm chart and config/) are checked against the
// operator's real flag set: a flag they pass that the binary does not know,
// or pod labels the NetworkPolicies would not match, fails here instead of in
// a cluster where the runner is silently unreachable.

const repoRoot = "../.."

// helmBin is the pinned helm that `make helm-template` builds; the version is
// read from mk/operator.mk so a bump cannot leave this test on an old binary.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TETHER_HELM"); p != "" {
		return p
	}
	mk, err := os.ReadFile(filepath.Join(repoRoot, "mk", "operator.mk"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HELM_VERSION := (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("mk/operator.mk: no HELM_VERSION line")
	}
	cache := os.Getenv("TETHER_CACHE_DIR")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "tether")
	}
	p := filepath.Join(cache, "bin", "helm-"+string(m[1]))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm not found at %s: run `make helm-template` once (it builds it), or set TETHER_HELM", p)
	}
	return p
}

// helmTemplate renders the chart as release "tether" in namespace
// tether-system with the given --set-string values.
func helmTemplate(t *testing.T, set ...string) []byte {
	t.Helper()
	args := []string{"template", "tether", filepath.Join(repoRoot, "charts", "tether-operator"), "--namespace", "tether-system"}
	for _, s := range set {
		args = append(args, "--set-string", s)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// manifest is one YAML document, decoded into the typed object of its kind
// when the test needs it.
type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw []byte
}

func splitManifests(t *testing.T, b []byte) []manifest {
	t.Helper()
	var out []manifest
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var m manifest
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("decode manifest: %v\n%s", err, doc)
		}
		if m.Kind == "" {
			continue
		}
		m.raw = []byte(doc)
		out = append(out, m)
	}
	return out
}

func decodeAs[T any](t *testing.T, m manifest) *T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict(m.raw, &v); err != nil {
		t.Fatalf("decode %s %s: %v", m.Kind, m.Metadata.Name, err)
	}
	return &v
}

func onlyDeployment(t *testing.T, ms []manifest) *appsv1.Deployment {
	t.Helper()
	var ds []*appsv1.Deployment
	for _, m := range ms {
		if m.Kind == "Deployment" {
			ds = append(ds, decodeAs[appsv1.Deployment](t, m))
		}
	}
	if len(ds) != 1 {
		t.Fatalf("%d Deployments rendered, want 1", len(ds))
	}
	return ds[0]
}

// checkOperatorDeployment checks what the NetworkPolicies depend on in an
// operator Deployment, and returns the operator's flags as parsed by the
// binary's own flag set.
func checkOperatorDeployment(t *testing.T, d *appsv1.Deployment) map[string]string {
	t.Helper()
	var c *corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == "operator" {
			c = &d.Spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("Deployment has no container named operator")
	}
	// ownNamespace reads POD_NAMESPACE first; without it the policies'
	// peer would come from the service account mount, which
	// automountServiceAccountToken=false would take away.
	var podNS *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "POD_NAMESPACE" {
			podNS = &c.Env[i]
		}
	}
	if podNS == nil || podNS.ValueFrom == nil || podNS.ValueFrom.FieldRef == nil || podNS.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE is not set from the downward API's metadata.namespace: %+v", podNS)
	}
	if len(c.Args) == 0 || c.Args[0] != "operator" {
		t.Fatalf("args %q: want `tether operator` (the image's entrypoint is tether)", c.Args)
	}
	cmd := newRootCmd()
	if err := cmd.Flags().Parse(c.Args[1:]); err != nil {
		t.Fatalf("the operator refuses the manifest's args %q: %v", c.Args[1:], err)
	}
	flags := map[string]string{}
	for _, name := range []string{"operator-pod-labels", "operator-namespace", "runner-client-pod-selector", "runner-client-namespace-selector", "watch-namespaces", "runner-port"} {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			t.Fatalf("the operator has no --%s flag", name)
		}
		flags[name] = f.Value.String()
	}
	if flags["operator-namespace"] != "" {
		t.Errorf("--operator-namespace=%q is fixed in the manifest; it must come from POD_NAMESPACE so it follows the install namespace", flags["operator-namespace"])
	}

	// The operator peer of a session's NetworkPolicy, built from these
	// flags exactly as root.go does, must select the Deployment's pods.
	lbls, err := labels.ConvertSelectorToLabelsMap(flags["operator-pod-labels"])
	if err != nil || len(lbls) == 0 {
		t.Fatalf("--operator-pod-labels %q: %v", flags["operator-pod-labels"], err)
	}
	cfg := operator.DefaultPodConfig()
	cfg.OperatorNamespace, cfg.OperatorPodLabels = "tether-system", lbls
	s := &tetherv1.AgenticSession{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "team"}}
	np := operator.BuildNetworkPolicy(s, cfg)
	sel, err := metav1.LabelSelectorAsSelector(np.Spec.Ingress[0].From[0].PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the NetworkPolicy's operator peer %s does not select the operator pods (labels %v)", sel, d.Spec.Template.Labels)
	}
	return flags
}

func TestHelmChartDeploymentFeedsNetworkPolicy(t *testing.T) {
	flags := checkOperatorDeployment(t, onlyDeployment(t, splitManifests(t, helmTemplate(t))))
	if flags["runner-client-pod-selector"] != "" || flags["runner-client-namespace-selector"] != "" {
		t.Errorf("default values admit runner clients: %v", flags)
	}
	// Two releases in one namespace must not admit each other's pods.
	if l, _ := labels.ConvertSelectorToLabelsMap(flags["operator-pod-labels"]); l["app.kubernetes.io/instance"] != "tether" {
		t.Errorf("--operator-pod-labels %q does not name the release", flags["operator-pod-labels"])
	}

	const pods, nss = "app in (ui,backend)", "kubernetes.io/metadata.name=tether-ui"
	flags = checkOperatorDeployment(t, onlyDeployment(t, splitManifests(t, helmTemplate(t,
		`runnerClients.podSelector=app in (ui\,backend)`, "runnerClients.namespaceSelector="+nss))))
	if flags["runner-client-pod-selector"] != pods || flags["runner-client-namespace-selector"] != nss {
		t.Errorf("runner-client flags %q, %q; want %q, %q", flags["runner-client-pod-selector"], flags["runner-client-namespace-selector"], pods, nss)
	}
	if _, err := operator.RunnerClientPeer(flags["runner-client-pod-selector"], flags["runner-client-namespace-selector"]); err != nil {
		t.Errorf("the rendered selectors do not parse: %v", err)
	}
}

// config/ is what `make deploy` renders with kustomize, which only sets the
// namespace and image on this Deployment.
func TestKustomizeDeploymentFeedsNetworkPolicy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	flags := checkOperatorDeployment(t, onlyDeployment(t, splitManifests(t, b)))
	if flags["runner-client-pod-selector"] != "" || flags["runner-client-namespace-selector"] != "" {
		t.Errorf("config/ admits runner clients by default: %v", flags)
	}
}
