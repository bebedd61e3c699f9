package operator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// Who may reach a session's runner: only holders of the per-session token, and
// on the network only the operator's pods and the configured runner clients.
// The runner serves POST /agui, which runs an agent turn with shell access, so
// both fences are needed: the NetworkPolicy is not enforced by every CNI, and
// the token alone would still let any pod try.

// The secrets and networkpolicies rules: the operator creates one Secret and
// one NetworkPolicy per session and reads them back through its cache, which is
// restricted to its own objects by label (list and watch feed that cache). The
// Secret is immutable, so no update or delete: the garbage collector removes
// both with the session. Reading Secrets adds nothing to what pod creation in
// the same namespace already allows (a pod can mount any Secret there).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update

const (
	// EnvRunnerToken is the variable the runner reads its bearer token from
	// (cmd/tether runner, and tether send).
	EnvRunnerToken = "TETHER_RUNNER_TOKEN"
	// RunnerTokenKey is the key of the token in the session's Secret.
	RunnerTokenKey = "token"
	// runnerTokenBytes of crypto/rand: 256 bits, base64url without padding.
	runnerTokenBytes = 32
)

// RunnerTokenSecretName is the name of the Secret holding session s's runner
// token. Session names are at most 50 characters, so it always fits.
func RunnerTokenSecretName(s *tetherv1.AgenticSession) string {
	return s.Name + "-runner-token"
}

// runnerTokenEnv is the runner's token, by reference only: the value never
// appears in the pod spec, so nobody who can merely read pods learns it.
func runnerTokenEnv(s *tetherv1.AgenticSession) corev1.EnvVar {
	return corev1.EnvVar{Name: EnvRunnerToken, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: RunnerTokenSecretName(s)},
		Key:                  RunnerTokenKey,
	}}}
}

// newRunnerToken returns a fresh random token.
func newRunnerToken() (string, error) {
	b := make([]byte, runnerTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate runner token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// BuildRunnerTokenSecret returns the Secret holding token for session s.
// Immutable: nobody can swap the token of a running session for one they
// know, and the kubelet need not watch it.
func BuildRunnerTokenSecret(s *tetherv1.AgenticSession, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: RunnerTokenSecretName(s), Namespace: s.Namespace, Labels: sessionLabels(s)},
		Type:       corev1.SecretTypeOpaque,
		Immutable:  ptr.To(true),
		Data:       map[string][]byte{RunnerTokenKey: []byte(token)},
	}
}

// ensureRunnerToken makes sure session s has its token Secret, owned by s. A
// Secret of that name that s does not control is refused rather than used:
// whoever created it would know the token.
func (r *Reconciler) ensureRunnerToken(ctx context.Context, s *tetherv1.AgenticSession) error {
	key := types.NamespacedName{Namespace: s.Namespace, Name: RunnerTokenSecretName(s)}
	var sec corev1.Secret
	err := r.Client.Get(ctx, key, &sec)
	if apierrors.IsNotFound(err) {
		// The cache may lag a Secret created a moment ago.
		err = r.APIReader.Get(ctx, key, &sec)
	}
	switch {
	case err == nil:
		return checkOwned(s, &sec, "Secret", len(sec.Data[RunnerTokenKey]) > 0)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("session %s/%s: get runner token Secret %s: %w", s.Namespace, s.Name, key.Name, err)
	}
	token, err := newRunnerToken()
	if err != nil {
		return fmt.Errorf("session %s/%s: %w", s.Namespace, s.Name, err)
	}
	want := BuildRunnerTokenSecret(s, token)
	if err := controllerutil.SetControllerReference(s, want, r.Scheme); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, want); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Another reconcile got there first; check it on the next pass.
			return fmt.Errorf("session %s/%s: runner token Secret %s was created concurrently; retrying", s.Namespace, s.Name, key.Name)
		}
		return fmt.Errorf("session %s/%s: create runner token Secret %s: %w (the operator needs create on secrets in this namespace)", s.Namespace, s.Name, key.Name, err)
	}
	return nil
}

// checkOwned refuses an object of the session's name that the session does
// not control, or whose content is unusable.
func checkOwned(s *tetherv1.AgenticSession, obj metav1.Object, kind string, usable bool) error {
	if ref := metav1.GetControllerOf(obj); ref == nil || ref.UID != s.UID {
		return fmt.Errorf("session %s/%s: %s %s exists but does not belong to this session (a leftover of a deleted session of the same name is removed by the garbage collector shortly; otherwise delete it): refusing to use it",
			s.Namespace, s.Name, kind, obj.GetName())
	}
	if !usable {
		return fmt.Errorf("session %s/%s: %s %s has no %q key; delete it and the operator creates a new one with the next pod",
			s.Namespace, s.Name, kind, obj.GetName(), RunnerTokenKey)
	}
	return nil
}

// BuildNetworkPolicy returns session s's NetworkPolicy: its pods accept
// connections to the runner port and the sync sidecar's metrics port only
// from the operator's pods and the configured runner clients; every other
// port of the pod is closed. The sidecar's /healthz names the store and the
// last snapshot and its /metrics the session's activity, which are not for
// every pod in the cluster; a Prometheus that scrapes it is admitted through
// the runner-client selector. The kubelet's probes and kubectl port-forward
// come from the node, which NetworkPolicies do not restrict.
func BuildNetworkPolicy(s *tetherv1.AgenticSession, cfg PodConfig) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	from := []networkingv1.NetworkPolicyPeer{{
		// Without a namespaceSelector a podSelector means "in the policy's
		// namespace"; the operator runs in its own.
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
			corev1.LabelMetadataName: cfg.OperatorNamespace,
		}},
		PodSelector: &metav1.LabelSelector{MatchLabels: cfg.OperatorPodLabels},
	}}
	for _, p := range cfg.RunnerClients {
		from = append(from, *p.DeepCopy())
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: sessionLabels(s)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{
				LabelSession: s.Name,
				labelManaged: "tether-operator",
			}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{
					{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(cfg.RunnerPort))},
					{Protocol: &tcp, Port: ptr.To(intstr.FromInt32(SyncMetricsPort))},
				},
				From: from,
			}},
		},
	}
}

// ensureNetworkPolicy creates session s's NetworkPolicy, and puts its spec
// back when it differs from what the operator's flags say (the flags changed,
// or someone edited it).
func (r *Reconciler) ensureNetworkPolicy(ctx context.Context, s *tetherv1.AgenticSession) error {
	want := BuildNetworkPolicy(s, r.Config)
	var np networkingv1.NetworkPolicy
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), &np)
	if apierrors.IsNotFound(err) {
		if err := controllerutil.SetControllerReference(s, want, r.Scheme); err != nil {
			return err
		}
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("session %s/%s: create NetworkPolicy %s: %w (the operator needs create on networkpolicies.networking.k8s.io in this namespace)", s.Namespace, s.Name, want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("session %s/%s: get NetworkPolicy %s: %w", s.Namespace, s.Name, want.Name, err)
	}
	if err := checkOwned(s, &np, "NetworkPolicy", true); err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(np.Spec, want.Spec) {
		return nil
	}
	np.Spec = want.Spec
	if err := r.Client.Update(ctx, &np); err != nil {
		return fmt.Errorf("session %s/%s: update NetworkPolicy %s: %w", s.Namespace, s.Name, np.Name, err)
	}
	return nil
}

// SecretTokens returns a token source for HTTPObserver: the runner token the
// pod's runner container was given (its TETHER_RUNNER_TOKEN secretKeyRef),
// read through c (the manager's client: its cache holds only the operator's
// own Secrets, by label). A pod without that reference (made by an operator
// before tokens) gets no token, which is what its runner expects.
//
// What the Secret holds is checked before it goes into a request header: it
// must be controlled by the pod's own session (a Secret someone else made,
// even with the operator's labels, is never sent anywhere) and be a token of
// bounded length in visible ASCII.
func SecretTokens(c client.Reader) func(context.Context, *corev1.Pod) (string, error) {
	return func(ctx context.Context, pod *corev1.Pod) (string, error) {
		ref := runnerTokenRef(pod)
		if ref == nil {
			return "", nil
		}
		var sec corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, &sec); err != nil {
			return "", fmt.Errorf("pod %s/%s: read runner token Secret %s: %w", pod.Namespace, pod.Name, ref.Name, err)
		}
		owner, secOwner := metav1.GetControllerOf(pod), metav1.GetControllerOf(&sec)
		if owner == nil || secOwner == nil || owner.UID != secOwner.UID {
			return "", fmt.Errorf("pod %s/%s: runner token Secret %s is not controlled by the pod's session; not sending it (delete the pod and the operator makes a new one with its own Secret)",
				pod.Namespace, pod.Name, ref.Name)
		}
		tok := sec.Data[ref.Key]
		if err := checkRunnerToken(tok); err != nil {
			return "", fmt.Errorf("pod %s/%s: runner token Secret %s, key %q: %v", pod.Namespace, pod.Name, ref.Name, ref.Key, err)
		}
		return string(tok), nil
	}
}

// minRunnerTokenBytes is runner.MinTokenLength (a test keeps them equal;
// importing the runner would link its HTTP stack into the operator).
const minRunnerTokenBytes = 16

// maxRunnerTokenBytes bounds what is read out of a Secret into a header; the
// operator's own tokens are 43 characters.
const maxRunnerTokenBytes = 512

// checkRunnerToken refuses what cannot be a runner token. The error never
// quotes the value.
func checkRunnerToken(tok []byte) error {
	switch {
	case len(tok) < minRunnerTokenBytes:
		return fmt.Errorf("%d bytes, want at least %d (missing or truncated); delete the Secret and the pod, and the operator makes a new pair", len(tok), minRunnerTokenBytes)
	case len(tok) > maxRunnerTokenBytes:
		return fmt.Errorf("%d bytes, more than the %d a runner token can have", len(tok), maxRunnerTokenBytes)
	}
	for _, b := range tok {
		if b < 0x21 || b > 0x7e {
			return fmt.Errorf("holds a byte (0x%02x) outside visible ASCII, which cannot be a bearer token", b)
		}
	}
	return nil
}

func runnerTokenRef(pod *corev1.Pod) *corev1.SecretKeySelector {
	for _, c := range pod.Spec.Containers {
		if c.Name != ContainerRunner {
			continue
		}
		for _, e := range c.Env {
			if e.Name == EnvRunnerToken && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				return e.ValueFrom.SecretKeyRef
			}
		}
	}
	return nil
}

// RunnerClientPeer builds the extra peer admitted to the runner port from two
// label selectors (kubectl syntax, e.g. "app=tether-ui"). An empty pod
// selector with a namespace selector admits every pod of those namespaces; an
// empty namespace selector means the session's own namespace, as in any
// NetworkPolicy. Both empty: no extra peer (nil).
func RunnerClientPeer(podSelector, namespaceSelector string) (*networkingv1.NetworkPolicyPeer, error) {
	if podSelector == "" && namespaceSelector == "" {
		return nil, nil
	}
	var peer networkingv1.NetworkPolicyPeer
	if podSelector != "" {
		sel, err := metav1.ParseToLabelSelector(podSelector)
		if err != nil {
			return nil, fmt.Errorf("pod selector %q: %w", podSelector, err)
		}
		peer.PodSelector = sel
	}
	if namespaceSelector != "" {
		sel, err := metav1.ParseToLabelSelector(namespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("namespace selector %q: %w", namespaceSelector, err)
		}
		peer.NamespaceSelector = sel
	}
	return &peer, nil
}
