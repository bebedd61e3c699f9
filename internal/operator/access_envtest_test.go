package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/runner"
)

// waitTokenSecret returns the session's runner token once its Secret exists.
func waitTokenSecret(t *testing.T, ns, session string) (*corev1.Secret, string) {
	t.Helper()
	var sec corev1.Secret
	eventually(t, 10*time.Second, "runner token Secret", func() string {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: session + "-runner-token"}, &sec); err != nil {
			return err.Error()
		}
		return ""
	})
	return &sec, string(sec.Data[RunnerTokenKey])
}

// The session pod takes the runner token from a Secret the operator created
// and the session owns; the value is in no pod field, status or event.
func TestRunnerTokenFromOwnedSecret(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "tok"))
	pod := waitPod(t, ns, "tok-0")
	s := getSession(t, ns, "tok")
	sec, token := waitTokenSecret(t, ns, "tok")

	if len(token) < 40 {
		t.Fatalf("token of %d bytes; want 256 random bits", len(token))
	}
	if ref := metav1.GetControllerOf(sec); ref == nil || ref.UID != s.UID || ref.Kind != "AgenticSession" {
		t.Fatalf("Secret owner %+v; want the session (uid %s), so it is garbage-collected with it", sec.OwnerReferences, s.UID)
	}
	if sec.Immutable == nil || !*sec.Immutable {
		t.Errorf("Secret is mutable")
	}
	ref := runnerTokenRef(pod)
	if ref == nil || ref.Name != sec.Name || ref.Key != RunnerTokenKey {
		t.Fatalf("runner env has no secretKeyRef to %s: %+v", sec.Name, container(t, pod.Spec.Containers, ContainerRunner).Env)
	}
	podJSON, _ := json.Marshal(pod)
	if strings.Contains(string(podJSON), token) {
		t.Fatalf("the token is in the pod object")
	}
	// Run it and let the operator observe it, then nothing the session's
	// readers see holds the token.
	runPod(t, ns, "tok-0")
	waitPhase(t, ns, "tok", tetherv1.PhaseRunning)
	assertEvent(t, ns, "tok", "RunnerStarted")
	sessJSON, _ := json.Marshal(getSession(t, ns, "tok"))
	var events corev1.EventList
	if err := k8s.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	evJSON, _ := json.Marshal(events)
	if strings.Contains(string(sessJSON), token) || strings.Contains(string(evJSON), token) {
		t.Fatalf("the token is in the session or its events")
	}

	// A restarted pod uses the same Secret; the token does not change under
	// the operator's feet.
	killRunner(t, ns, "tok-0", 137, "OOMKilled")
	pod1 := waitPod(t, ns, "tok-1")
	if r := runnerTokenRef(pod1); r == nil || r.Name != sec.Name {
		t.Fatalf("attempt 1 runner token ref %+v", r)
	}
	_, again := waitTokenSecret(t, ns, "tok")
	if again != token {
		t.Fatalf("the token changed between attempts")
	}
}

// A Secret of the token's name that the session does not own is never used:
// whoever made it knows its value. The session makes no pod until it is gone.
func TestForeignTokenSecretRefused(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	planted := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "planted-runner-token"},
		Data: map[string][]byte{RunnerTokenKey: []byte("known-to-the-attacker")}}
	if err := k8s.Create(context.Background(), planted); err != nil {
		t.Fatal(err)
	}
	create(t, newSession(ns, "planted"))
	assertEvent(t, ns, "planted", "RunnerTokenFailed")
	if podExists(t, ns, "planted-0") {
		t.Fatal("a pod was created with a token Secret the session does not own")
	}
	if err := k8s.Delete(context.Background(), planted); err != nil {
		t.Fatal(err)
	}
	pod := waitPod(t, ns, "planted-0")
	_, token := waitTokenSecret(t, ns, "planted")
	if token == "known-to-the-attacker" || runnerTokenRef(pod) == nil {
		t.Fatalf("the session runs with the planted token")
	}
}

// The operator's real HTTP observer reads the token from the Secret (through
// its own cache and RBAC) and authenticates to a runner that answers 401
// without it.
func TestObserverAuthenticates(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	var token atomic.Value
	token.Store("")
	var authorized, refused atomic.Int32
	port := serve(t, func(w http.ResponseWriter, r *http.Request) {
		want := token.Load().(string)
		if want == "" || r.Header.Get("Authorization") != "Bearer "+want {
			refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="tether runner"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		authorized.Add(1)
		json.NewEncoder(w).Encode(runner.Status{State: runner.StateReady, SessionID: "authed-session",
			Resume: runner.ResumeStatus{Outcome: runner.ResumeResumed}, UpdatedAt: time.Now()})
	})
	fakeObs.useReal(ns, &HTTPObserver{RunnerPort: port, SyncPort: 1, RunnerToken: SecretTokens(opClient),
		Client: &http.Client{Timeout: 2 * time.Second}})

	create(t, newSession(ns, "obs"))
	waitPod(t, ns, "obs-0")
	_, tok := waitTokenSecret(t, ns, "obs")
	token.Store(tok)
	// Without the token, this runner answers nothing useful.
	expect401(t, port)
	runPodOnLoopback(t, ns, "obs-0")
	eventually(t, 15*time.Second, "the observed session id in status", func() string {
		st := getSession(t, ns, "obs").Status
		if st.AgentSessionID != "authed-session" || st.LastResumeOutcome != "resumed" {
			return fmt.Sprintf("status %+v; runner answered %d authorized, %d refused", st, authorized.Load(), refused.Load())
		}
		return ""
	})
	if refused.Load() != 1 {
		t.Errorf("the runner refused %d requests; want only the test's own unauthenticated one", refused.Load())
	}
}

// The session's NetworkPolicy selects its runner pod and admits only the
// operator's pods to the runner port and the sync sidecar's metrics port;
// deleted, it comes back.
func TestNetworkPolicyGuardsRunner(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "np"))
	pod := waitPod(t, ns, "np-0")
	s := getSession(t, ns, "np")
	var np networkingv1.NetworkPolicy
	getNP := func() string {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "np"}, &np); err != nil {
			return err.Error()
		}
		return ""
	}
	eventually(t, 10*time.Second, "NetworkPolicy", getNP)
	if ref := metav1.GetControllerOf(&np); ref == nil || ref.UID != s.UID {
		t.Fatalf("NetworkPolicy owner %+v", np.OwnerReferences)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Fatalf("policy selector %s does not select the runner pod's labels %v", sel, pod.Labels)
	}
	cfg := DefaultPodConfig()
	var runnerRule *networkingv1.NetworkPolicyIngressRule
	for i, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.IntValue() == int(cfg.RunnerPort) {
				runnerRule = &np.Spec.Ingress[i]
			}
		}
	}
	if runnerRule == nil {
		t.Fatalf("no rule for the runner port %d: %+v", cfg.RunnerPort, np.Spec.Ingress)
	}
	if len(runnerRule.From) != 1 {
		t.Fatalf("runner port admits %+v; want only the operator", runnerRule.From)
	}
	peer := runnerRule.From[0]
	nsSel, _ := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
	podSel, _ := metav1.LabelSelectorAsSelector(peer.PodSelector)
	operatorPod := labels.Set{"app.kubernetes.io/name": "tether-operator"}
	if peer.NamespaceSelector == nil || peer.PodSelector == nil ||
		!nsSel.Matches(labels.Set{corev1.LabelMetadataName: cfg.OperatorNamespace}) || nsSel.Matches(labels.Set{corev1.LabelMetadataName: ns}) ||
		!podSel.Matches(operatorPod) || podSel.Matches(labels.Set(pod.Labels)) || podSel.Matches(labels.Set{}) {
		t.Fatalf("runner peer %+v admits more than the operator's pods", peer)
	}
	// Every rule that opens the runner or the metrics port (a rule
	// without ports opens all of them) admits exactly the operator's pods:
	// an empty From would admit every pod in the cluster.
	for _, port := range []int{int(cfg.RunnerPort), SyncMetricsPort} {
		admitted := 0
		for _, r := range np.Spec.Ingress {
			opens := len(r.Ports) == 0
			for _, p := range r.Ports {
				opens = opens || p.Port == nil || p.Port.IntValue() == port
			}
			if !opens {
				continue
			}
			if len(r.From) != 1 || !equality.Semantic.DeepEqual(r.From[0], peer) {
				t.Fatalf("rule %+v opens port %d to more than the operator's pods", r, port)
			}
			admitted++
		}
		if admitted == 0 {
			t.Errorf("no rule admits the operator to port %d (its observer reads the runner's /status and the sidecar's /healthz)", port)
		}
	}

	uid := np.UID
	if err := k8s.Delete(context.Background(), &np); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "NetworkPolicy recreated", func() string {
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "np"}, &np)
		if apierrors.IsNotFound(err) || (err == nil && np.UID == uid) {
			return "not yet"
		}
		if err != nil {
			return err.Error()
		}
		return ""
	})
}

// What the observer reads out of a Secret goes into a request header: only a
// Secret controlled by the pod's own session, holding a token of bounded
// length in visible ASCII, is ever sent, and no refusal quotes the value.
func TestSecretTokensValidated(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	ctx := context.Background()
	s := testSession()
	s.Namespace, s.UID = ns, "uid-of-the-session"
	pod := BuildPod(s, DefaultPodConfig(), 0, nil)
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "tether.dev/v1alpha1", Kind: "AgenticSession",
		Name: s.Name, UID: s.UID, Controller: ptr.To(true)}}
	tokens := SecretTokens(k8s)
	const good = "a-good-token-0123456789-abcdefghijklmnopq"
	put := func(data string, owner types.UID) {
		t.Helper()
		sec := BuildRunnerTokenSecret(s, data)
		if owner != "" {
			sec.OwnerReferences = []metav1.OwnerReference{{APIVersion: "tether.dev/v1alpha1", Kind: "AgenticSession",
				Name: s.Name, UID: owner, Controller: ptr.To(true)}}
		}
		_ = k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sec.Name}})
		eventually(t, 10*time.Second, "old Secret gone", func() string {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(sec), &corev1.Secret{}); !apierrors.IsNotFound(err) {
				return fmt.Sprint(err)
			}
			return ""
		})
		if err := k8s.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tokens(ctx, pod); err == nil || !strings.Contains(err.Error(), "s1-runner-token") {
		t.Fatalf("missing Secret: %v", err)
	}
	put(good, s.UID)
	if tok, err := tokens(ctx, pod); err != nil || tok != good {
		t.Fatalf("the session's own Secret: %q, %v", tok, err)
	}
	for _, tc := range []struct {
		name, data string
		owner      types.UID
		want       string
	}{
		{"another session's", good, "uid-of-someone-else", "not controlled by the pod's session"},
		{"nobody's, with the operator's labels", good, "", "not controlled by the pod's session"},
		{"short", "short-secret", s.UID, "at least 16"},
		{"oversize", strings.Repeat("x", 513), s.UID, "more than the 512"},
		{"header injection", good + "\r\nX-Evil: 1", s.UID, "outside visible ASCII"},
		{"space", "two halves of-a-token with space", s.UID, "outside visible ASCII"},
	} {
		put(tc.data, tc.owner)
		tok, err := tokens(ctx, pod)
		if err == nil || tok != "" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q, %v; want refused with %q", tc.name, tok, err, tc.want)
		} else if strings.Contains(err.Error(), tc.data) {
			t.Errorf("%s: the refusal quotes the Secret's value: %v", tc.name, err)
		}
	}
	// A pod from before tokens carries no reference: no token, no error.
	old := pod.DeepCopy()
	for i := range old.Spec.Containers {
		old.Spec.Containers[i].Env = nil
	}
	if tok, err := tokens(ctx, old); tok != "" || err != nil {
		t.Fatalf("pod without a token reference: %q, %v", tok, err)
	}
}

// The operator refuses tokens the runner would refuse to listen with.
func TestMinRunnerTokenBytesIsTheRunners(t *testing.T) {
	if minRunnerTokenBytes != runner.MinTokenLength {
		t.Fatalf("operator minimum %d, runner minimum %d", minRunnerTokenBytes, runner.MinTokenLength)
	}
}

// expect401 checks that GET /status on the runner port, without a token, is
// refused with 401.
func expect401(t *testing.T, port int32) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /status without the token: %s, want 401", resp.Status)
	}
}

// runPodOnLoopback marks the pod running at 127.0.0.1, where the test's
// runner listens, for the real observer to reach.
func runPodOnLoopback(t *testing.T, ns, name string) {
	t.Helper()
	runPod(t, ns, name)
	kubelet(t, ns, name, func(p *corev1.Pod) {
		p.Status.PodIP = "127.0.0.1"
		p.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	})
}
