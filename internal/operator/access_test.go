package operator

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/runner"
)

// The runner gets its token by reference to the session's Secret, last, and a
// user entry of the same name cannot replace it.
func TestBuildPodRunnerTokenByReference(t *testing.T) {
	s := testSession()
	s.Spec.Agent.Env = append(s.Spec.Agent.Env, tetherv1.EnvVar{Name: EnvRunnerToken, SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "mine"}, Key: "k"}})
	pod := BuildPod(s, DefaultPodConfig(), 0, nil)
	r := container(t, pod.Spec.Containers, ContainerRunner)
	var refs []*corev1.SecretKeySelector
	for _, e := range r.Env {
		if e.Name == EnvRunnerToken {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Fatalf("runner token env is not a secretKeyRef: %+v", e)
			}
			refs = append(refs, e.ValueFrom.SecretKeyRef)
		}
	}
	if len(refs) != 1 || refs[0].Name != "s1-runner-token" || refs[0].Key != RunnerTokenKey {
		t.Fatalf("runner token refs %+v; want exactly one, to s1-runner-token/token", refs)
	}
	if got := runnerTokenRef(pod); got == nil || got.Name != "s1-runner-token" {
		t.Fatalf("runnerTokenRef = %+v", got)
	}
	// No other container gets the token: the sidecar and hydrate never talk
	// to the runner.
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, e := range c.Env {
			if e.Name == EnvRunnerToken && c.Name != ContainerRunner {
				t.Errorf("container %s has the runner token", c.Name)
			}
		}
	}
}

func TestRunnerTokenSecret(t *testing.T) {
	a, err := newRunnerToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newRunnerToken()
	if len(a) != 43 || a == b {
		t.Fatalf("tokens %q %q: want 43 characters (256 bits), different each time", a, b)
	}
	sec := BuildRunnerTokenSecret(testSession(), a)
	if sec.Name != "s1-runner-token" || sec.Namespace != "team-a" || string(sec.Data[RunnerTokenKey]) != a ||
		sec.Immutable == nil || !*sec.Immutable || sec.Labels[labelManaged] != "tether-operator" {
		t.Fatalf("secret %+v", sec.ObjectMeta)
	}
}

func TestBuildNetworkPolicy(t *testing.T) {
	s := testSession()
	cfg := DefaultPodConfig()
	peer, err := RunnerClientPeer("app=tether-ui", "kubernetes.io/metadata.name=ui")
	if err != nil {
		t.Fatal(err)
	}
	cfg.RunnerClients = []networkingv1.NetworkPolicyPeer{*peer}
	np := BuildNetworkPolicy(s, cfg)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	for attempt := int32(0); attempt < 3; attempt++ {
		if pod := BuildPod(s, cfg, attempt, nil); !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("policy selector %s does not select pod %s %v", sel, pod.Name, pod.Labels)
		}
	}
	other := testSession()
	other.Name = "s2"
	if pod := BuildPod(other, cfg, 0, nil); sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("policy of s1 selects s2's pod")
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Ingress) != 1 {
		t.Fatalf("spec %+v", np.Spec)
	}
	// One rule: the runner and the sidecar's metrics port, for the same
	// peers. No rule without peers, which would admit every pod.
	runnerRule := np.Spec.Ingress[0]
	if len(runnerRule.Ports) != 2 || runnerRule.Ports[0].Port.IntValue() != int(cfg.RunnerPort) || runnerRule.Ports[1].Port.IntValue() != SyncMetricsPort {
		t.Fatalf("rule ports %+v; want the runner's and the sidecar's", runnerRule.Ports)
	}
	if len(runnerRule.From) != 2 {
		t.Fatalf("runner rule peers %+v; want the operator and the configured client", runnerRule.From)
	}
	op := runnerRule.From[0]
	if op.NamespaceSelector == nil || op.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "tether-system" ||
		op.PodSelector == nil || op.PodSelector.MatchLabels[labelName] != "tether-operator" || op.IPBlock != nil {
		t.Errorf("operator peer %+v", op)
	}
	if c := runnerRule.From[1]; c.PodSelector.MatchLabels["app"] != "tether-ui" || c.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "ui" {
		t.Errorf("client peer %+v", c)
	}
}

func TestRunnerClientPeer(t *testing.T) {
	if p, err := RunnerClientPeer("", ""); p != nil || err != nil {
		t.Fatalf("empty: %+v %v", p, err)
	}
	p, err := RunnerClientPeer("", "team=ui")
	if err != nil || p.PodSelector != nil || p.NamespaceSelector.MatchLabels["team"] != "ui" {
		t.Fatalf("namespace only: %+v %v", p, err)
	}
	if _, err := RunnerClientPeer("app in (", ""); err == nil || !strings.Contains(err.Error(), "app in (") {
		t.Fatalf("bad selector: %v", err)
	}
}

// The observer sends the pod's token to the runner, and only to the runner.
func TestHTTPObserverSendsToken(t *testing.T) {
	const token = "s3cr3t-token"
	var unauthorized, syncSawToken atomic.Int32
	runnerPort := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			unauthorized.Add(1)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(runner.Status{State: runner.StateReady, SessionID: "sid-1"})
	})
	syncPort := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			syncSawToken.Add(1)
		}
		w.Write([]byte(`{"lastSnapshot":"0001"}`))
	})
	pod := &corev1.Pod{Status: corev1.PodStatus{PodIP: "127.0.0.1"}}
	o := &HTTPObserver{RunnerPort: runnerPort, SyncPort: syncPort,
		RunnerToken: func(context.Context, *corev1.Pod) (string, error) { return token, nil }}
	obs, err := o.Observe(context.Background(), pod)
	if err != nil || obs.AgentSessionID != "sid-1" || obs.SnapshotID != "0001" {
		t.Fatalf("with token: %+v %v", obs, err)
	}
	if unauthorized.Load() != 0 || syncSawToken.Load() != 0 {
		t.Fatalf("unauthorized %d, token sent to the sidecar %d times", unauthorized.Load(), syncSawToken.Load())
	}
	// Without the token the runner's part is missing and the error says why,
	// without any token in it.
	o.RunnerToken = func(context.Context, *corev1.Pod) (string, error) { return "wrong", nil }
	obs, _ = o.Observe(context.Background(), pod)
	if obs.AgentSessionID != "" || unauthorized.Load() != 1 {
		t.Fatalf("wrong token observed %+v (401s %d)", obs, unauthorized.Load())
	}
	o.SyncPort = 1
	_, err = o.Observe(context.Background(), pod)
	if err == nil || !strings.Contains(err.Error(), "refused the operator's token") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error %v", err)
	}
}
