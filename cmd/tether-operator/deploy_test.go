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
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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

// generatedRules are the operator's rules as controller-gen writes them from
// the +kubebuilder:rbac markers.
func generatedRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cr rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &cr); err != nil || len(cr.Rules) == 0 {
		t.Fatalf("config/rbac/role.yaml: %v (%d rules)", err, len(cr.Rules))
	}
	return cr.Rules
}

// With watchNamespaces the operator gets a Role and RoleBinding in each
// watched namespace and nothing cluster-wide; without, a ClusterRole. Either
// way the rules are the generated ones and the subject is the chart's
// service account.
func TestHelmChartRBACScope(t *testing.T) {
	want := generatedRules(t)
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: "tether-operator", Namespace: "tether-system"}
	checkBinding := func(kind string, roleRef rbacv1.RoleRef, subjects []rbacv1.Subject, roleKind, roleName string) {
		t.Helper()
		if roleRef.Kind != roleKind || roleRef.Name != roleName || len(subjects) != 1 || subjects[0] != sa {
			t.Errorf("%s binds %+v to %+v; want %s %s to %+v", kind, subjects, roleRef, roleKind, roleName, sa)
		}
	}

	for _, tc := range []struct {
		name   string
		set    []string
		scoped []string
	}{
		{"cluster-wide", nil, nil},
		{"watchNamespaces", []string{"watchNamespaces={team-a,team-b}"}, []string{"team-a", "team-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := splitManifests(t, helmTemplate(t, tc.set...))
			roles := map[string]*rbacv1.Role{} // by namespace, leader election left out
			bindings := map[string]*rbacv1.RoleBinding{}
			var clusterRoles []*rbacv1.ClusterRole
			var clusterBindings []*rbacv1.ClusterRoleBinding
			for _, m := range ms {
				switch m.Kind {
				case "Role":
					if r := decodeAs[rbacv1.Role](t, m); r.Name != "tether-operator-leader-election" {
						roles[r.Namespace] = r
					}
				case "RoleBinding":
					if b := decodeAs[rbacv1.RoleBinding](t, m); b.Name != "tether-operator-leader-election" {
						bindings[b.Namespace] = b
					}
				case "ClusterRole":
					clusterRoles = append(clusterRoles, decodeAs[rbacv1.ClusterRole](t, m))
				case "ClusterRoleBinding":
					clusterBindings = append(clusterBindings, decodeAs[rbacv1.ClusterRoleBinding](t, m))
				}
			}
			flags := checkOperatorDeployment(t, onlyDeployment(t, ms))
			if tc.scoped == nil {
				if len(clusterRoles) != 1 || len(clusterBindings) != 1 || len(roles) != 0 || len(bindings) != 0 {
					t.Fatalf("cluster-wide: %d ClusterRoles, %d ClusterRoleBindings, %d Roles, %d RoleBindings; want 1, 1, 0, 0",
						len(clusterRoles), len(clusterBindings), len(roles), len(bindings))
				}
				if !equality.Semantic.DeepEqual(clusterRoles[0].Rules, want) {
					t.Errorf("ClusterRole rules %+v differ from config/rbac/role.yaml %+v", clusterRoles[0].Rules, want)
				}
				checkBinding("ClusterRoleBinding", clusterBindings[0].RoleRef, clusterBindings[0].Subjects, "ClusterRole", clusterRoles[0].Name)
				return
			}
			if len(clusterRoles) != 0 || len(clusterBindings) != 0 {
				t.Fatalf("watchNamespaces set, yet %d ClusterRoles and %d ClusterRoleBindings rendered", len(clusterRoles), len(clusterBindings))
			}
			if flags["watch-namespaces"] != "["+strings.Join(tc.scoped, ",")+"]" {
				t.Errorf("--watch-namespaces %s; want %v", flags["watch-namespaces"], tc.scoped)
			}
			if len(roles) != len(tc.scoped) || len(bindings) != len(tc.scoped) {
				t.Fatalf("Roles in %v, RoleBindings in %v; want one each in %v", keys(roles), keys(bindings), tc.scoped)
			}
			for _, ns := range tc.scoped {
				r, b := roles[ns], bindings[ns]
				if r == nil || b == nil {
					t.Fatalf("namespace %s: Role %v, RoleBinding %v", ns, r != nil, b != nil)
				}
				if !equality.Semantic.DeepEqual(r.Rules, want) {
					t.Errorf("Role in %s: rules %+v differ from config/rbac/role.yaml %+v", ns, r.Rules, want)
				}
				checkBinding("RoleBinding in "+ns, b.RoleRef, b.Subjects, "Role", r.Name)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
