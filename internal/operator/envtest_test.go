package operator

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// envtestVersion must match KUBE_VERSION in hack/install-envtest.sh.
const envtestVersion = "1.37.2"

// The suite: one real kube-apiserver + etcd for all tests in this package, the
// operator's manager running against it, and each test in its own namespace.
// There is no kubelet: the tests play it by writing pod status, which is
// exactly the information the operator acts on.
var (
	k8s       client.Client // direct client, no cache: what a user's kubectl sees
	suiteErr  string        // why the suite could not start
	reconcMet *Metrics
	// opClient is the operator manager's client (its cache, its RBAC).
	opClient  client.Client
	nsCounter atomic.Int64
)

func envtestAssets() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	cache := os.Getenv("TETHER_CACHE_DIR")
	if cache == "" {
		cache = os.Getenv("CACHE")
	}
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "tether")
	}
	return filepath.Join(cache, "envtest", envtestVersion)
}

func TestMain(m *testing.M) {
	if kc := os.Getenv(envOperatorProcess); kc != "" {
		os.Exit(runOperatorProcess(kc))
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	flag.Parse()
	assets := envtestAssets()
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		suiteErr = fmt.Sprintf("envtest binaries not found in %s (run `make envtest` or hack/install-envtest.sh, or set KUBEBUILDER_ASSETS)", assets)
		return m.Run()
	}
	if os.Getenv("TETHER_TEST_LOG") != "" {
		logf.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		logf.SetLogger(zap.New(zap.WriteTo(ioDiscard{})))
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		suiteErr = "starting envtest: " + err.Error()
		return m.Run()
	}
	defer env.Stop()

	scheme, err := NewScheme()
	if err != nil {
		panic(err)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	cacheOpts, err := CacheOptions(nil)
	if err != nil {
		panic(err)
	}
	// The operator runs as a user that has only the generated ClusterRole, so
	// every test below also proves the RBAC in config/rbac is enough.
	opCfg, err := operatorUser(env)
	if err != nil {
		suiteErr = "operator user: " + err.Error()
		return m.Run()
	}
	mgr, err := ctrl.NewManager(opCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		panic(err)
	}
	r, err := Setup(mgr, DefaultPodConfig(), 4, prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	reconcMet = r.Metrics
	opClient = mgr.GetClient()
	r.Observer = fakeObs
	r.ObserveInterval = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	return code
}

// operatorUser creates a user bound to config/rbac/role.yaml and returns a
// rest config that authenticates as it.
func operatorUser(env *envtest.Environment) (*rest.Config, error) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(data, &role); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, &role); err != nil {
		return nil, err
	}
	const user = "tether-operator-under-test"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if err := k8s.Create(ctx, binding); err != nil {
		return nil, err
	}
	u, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// fakeObserver plays the runner's /status and the sidecar's /healthz, per pod;
// a namespace given a real observer (useReal) is observed over HTTP instead.
type fakeObserver struct {
	mu    sync.Mutex
	byPod map[string]Observation
	real  map[string]Observer
}

var fakeObs = &fakeObserver{byPod: map[string]Observation{}, real: map[string]Observer{}}

func (f *fakeObserver) useReal(ns string, o Observer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.real[ns] = o
}

func (f *fakeObserver) set(ns, pod string, o Observation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byPod[ns+"/"+pod] = o
}

func (f *fakeObserver) Observe(ctx context.Context, pod *corev1.Pod) (Observation, error) {
	f.mu.Lock()
	if real := f.real[pod.Namespace]; real != nil {
		f.mu.Unlock()
		return real.Observe(ctx, pod)
	}
	defer f.mu.Unlock()
	o, ok := f.byPod[pod.Namespace+"/"+pod.Name]
	if !ok {
		return Observation{}, fmt.Errorf("pod %s answers nothing", pod.Name)
	}
	return o, nil
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

// needEnvtest skips (or, in CI, fails) a test when the suite has no API server.
func needEnvtest(t *testing.T) {
	t.Helper()
	if suiteErr == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(suiteErr)
	}
	t.Skip(suiteErr)
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-")))
	if len(ns) > 60 {
		ns = ns[:60]
	}
	ns = strings.TrimRight(ns, "-")
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// newSession returns a valid session with fast recovery settings.
func newSession(ns, name string) *tetherv1.AgenticSession {
	return &tetherv1.AgenticSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tetherv1.AgenticSessionSpec{
			Agent: tetherv1.AgentSpec{
				Image: "ghcr.io/acme/agent:1",
				Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
				},
			},
			InitialPrompt: "write the release notes",
			Storage:       tetherv1.StorageSpec{URL: "s3://bucket/tether"},
			Recovery: tetherv1.RecoverySpec{
				MaxRestarts:     ptr.To[int32](3),
				InitialBackoff:  &metav1.Duration{Duration: 200 * time.Millisecond},
				MaxBackoff:      &metav1.Duration{Duration: time.Second},
				OOMMemoryFactor: ptr.To(1.5),
			},
		},
	}
}

func create(t *testing.T, s *tetherv1.AgenticSession) {
	t.Helper()
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatalf("create session: %v", err)
	}
}

// eventually polls cond every 20ms until it returns "" or the timeout passes,
// then fails with cond's last explanation.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getSession(t *testing.T, ns, name string) *tetherv1.AgenticSession {
	t.Helper()
	var s tetherv1.AgenticSession
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func waitPhase(t *testing.T, ns, name string, phase tetherv1.SessionPhase) *tetherv1.AgenticSession {
	t.Helper()
	var s *tetherv1.AgenticSession
	eventually(t, 20*time.Second, fmt.Sprintf("session %s phase %s", name, phase), func() string {
		s = getSession(t, ns, name)
		if s.Status.Phase != phase {
			return fmt.Sprintf("phase %q, conditions %+v", s.Status.Phase, s.Status.Conditions)
		}
		return ""
	})
	return s
}

func waitPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	eventually(t, 20*time.Second, "pod "+name, func() string {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &pod); err != nil {
			return err.Error()
		}
		return ""
	})
	return &pod
}

func waitPodGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, 20*time.Second, "pod "+name+" gone", func() string {
		var pod corev1.Pod
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &pod)
		if apierrors.IsNotFound(err) {
			return ""
		}
		return fmt.Sprintf("still there (err %v)", err)
	})
}

func podExists(t *testing.T, ns, name string) bool {
	var pod corev1.Pod
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &pod)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// kubelet writes a pod's status the way the kubelet would.
func kubelet(t *testing.T, ns, name string, mutate func(*corev1.Pod)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pod corev1.Pod
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &pod); err != nil {
			return err
		}
		mutate(&pod)
		return k8s.Status().Update(context.Background(), &pod)
	})
	if err != nil {
		t.Fatalf("kubelet: update pod %s status: %v", name, err)
	}
}

// runPod plays a kubelet that started every container of the pod.
func runPod(t *testing.T, ns, name string) {
	t.Helper()
	kubelet(t, ns, name, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{
			exited(ContainerInstall, 0, "Completed"), exited(ContainerHydrate, 0, "Completed")}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{running(ContainerRunner, true)}
		if isRestartable(p, ContainerSync) {
			p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, running(ContainerSync, true))
		} else {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, running(ContainerSync, true))
		}
	})
}

// killRunner plays the kubelet reporting the runner's death while the sync
// sidecar keeps running (and with it the pod's phase).
func killRunner(t *testing.T, ns, name string, code int32, reason string) time.Time {
	t.Helper()
	finished := time.Now()
	kubelet(t, ns, name, func(p *corev1.Pod) {
		st := findStatus(p.Status.ContainerStatuses, ContainerRunner)
		st.Ready = false
		st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, FinishedAt: metav1.NewTime(finished)}}
	})
	return finished
}

func runnerMemory(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerRunner {
			q := c.Resources.Limits[corev1.ResourceMemory]
			return q.String()
		}
	}
	t.Fatalf("pod %s has no runner", pod.Name)
	return ""
}

// The reference platform's failure: runner OOM-killed while the session is
// Running and a sidecar keeps the pod Running. Both sidecar kinds.
func TestOOMWhileRunningNativeSidecar(t *testing.T)  { testOOMWhileRunning(t, true) }
func TestOOMWhileRunningRegularSidecar(t *testing.T) { testOOMWhileRunning(t, false) }

func testOOMWhileRunning(t *testing.T, native bool) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	s := newSession(ns, "oom")
	s.Spec.Sync.NativeSidecar = ptr.To(native)
	// Long enough to see the Recovering phase before the new pod.
	s.Spec.Recovery.InitialBackoff = &metav1.Duration{Duration: 1500 * time.Millisecond}
	create(t, s)

	pod0 := waitPod(t, ns, "oom-0")
	if got := runnerMemory(t, pod0); got != "1Gi" {
		t.Fatalf("first pod memory %s, want 1Gi", got)
	}
	waitPhase(t, ns, "oom", tetherv1.PhaseCreating)
	runPod(t, ns, "oom-0")
	waitPhase(t, ns, "oom", tetherv1.PhaseRunning)

	killedAt := killRunner(t, ns, "oom-0", 137, "OOMKilled")
	// The pod is still Running (the sidecar is alive): the operator must see
	// the container, not the phase.
	var noticed time.Duration
	eventually(t, 10*time.Second, "restartCount 1", func() string {
		got := getSession(t, ns, "oom")
		if got.Status.RestartCount != 1 {
			return fmt.Sprintf("phase %s restartCount %d", got.Status.Phase, got.Status.RestartCount)
		}
		noticed = time.Since(killedAt)
		return ""
	})
	t.Logf("termination noticed within %s", noticed)

	got := getSession(t, ns, "oom")
	if got.Status.Phase != tetherv1.PhaseRecovering {
		t.Fatalf("phase %s after OOM, want Recovering", got.Status.Phase)
	}
	var rec *metav1.Condition
	for i := range got.Status.Conditions {
		if got.Status.Conditions[i].Type == tetherv1.ConditionRecovering {
			rec = &got.Status.Conditions[i]
		}
	}
	if rec == nil || rec.Status != metav1.ConditionTrue || rec.Reason != "OOMKilled" ||
		!strings.Contains(rec.Message, "memory limit 1Gi -> 1536Mi") || !strings.Contains(rec.Message, "restart 1 of 3") {
		t.Fatalf("Recovering condition %+v: want OOMKilled, the memory raise and the attempt count", rec)
	}
	if got.Status.NextRestartTime == nil {
		t.Fatal("no nextRestartTime while Recovering")
	}
	lt := got.Status.LastTermination
	if lt == nil || lt.Reason != "OOMKilled" || lt.Container != ContainerRunner || lt.ExitCode == nil || *lt.ExitCode != 137 ||
		lt.MemoryLimit == nil || lt.MemoryLimit.String() != "1Gi" || lt.Pod != "oom-0" {
		t.Fatalf("lastTermination %+v, want OOMKilled runner 137 with the old limit 1Gi", lt)
	}
	if got.Status.OOMCount != 1 {
		t.Errorf("oomCount %d", got.Status.OOMCount)
	}

	// The old pod is deleted (its sidecar gets SIGTERM for the final
	// snapshot), then a new one with more memory.
	waitPodGone(t, ns, "oom-0")
	pod1 := waitPod(t, ns, "oom-1")
	if got := runnerMemory(t, pod1); got != "1536Mi" {
		t.Fatalf("new pod memory %s, want 1536Mi (1Gi x 1.5)", got)
	}
	runPod(t, ns, "oom-1")
	got = waitPhase(t, ns, "oom", tetherv1.PhaseRunning)
	if got.Status.RestartCount != 1 || got.Status.PodName != "oom-1" || got.Status.RunnerMemoryLimit.String() != "1536Mi" {
		t.Fatalf("status after recovery: restarts %d pod %s memory %v", got.Status.RestartCount, got.Status.PodName, got.Status.RunnerMemoryLimit)
	}
	assertEvent(t, ns, "oom", "RunnerDied")
}

func TestRestartsExhausted(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	s := newSession(ns, "crashy")
	s.Spec.Recovery.MaxRestarts = ptr.To[int32](1)
	create(t, s)

	waitPod(t, ns, "crashy-0")
	runPod(t, ns, "crashy-0")
	waitPhase(t, ns, "crashy", tetherv1.PhaseRunning)
	killRunner(t, ns, "crashy-0", 3, "Error")

	waitPod(t, ns, "crashy-1")
	runPod(t, ns, "crashy-1")
	waitPhase(t, ns, "crashy", tetherv1.PhaseRunning)
	killRunner(t, ns, "crashy-1", 3, "Error")

	got := waitPhase(t, ns, "crashy", tetherv1.PhaseFailed)
	var failed *metav1.Condition
	for i := range got.Status.Conditions {
		if got.Status.Conditions[i].Type == tetherv1.ConditionFailed {
			failed = &got.Status.Conditions[i]
		}
	}
	if failed == nil || failed.Reason != "RestartsExhausted" ||
		!strings.Contains(failed.Message, "exited 3") || !strings.Contains(failed.Message, "maxRestarts=1") {
		t.Fatalf("Failed condition %+v: want the cause (exit 3) and the limit (maxRestarts=1)", failed)
	}
	if got.Status.RestartCount != 1 || got.Status.OOMCount != 0 {
		t.Errorf("restarts %d oom %d", got.Status.RestartCount, got.Status.OOMCount)
	}
	waitPodGone(t, ns, "crashy-1")
	if podExists(t, ns, "crashy-2") {
		t.Fatal("a third pod was created after the limit")
	}
}

func TestCleanExitCompletes(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "done"))
	waitPod(t, ns, "done-0")
	runPod(t, ns, "done-0")
	waitPhase(t, ns, "done", tetherv1.PhaseRunning)
	killRunner(t, ns, "done-0", 0, "Completed")
	got := waitPhase(t, ns, "done", tetherv1.PhaseCompleted)
	if got.Status.RestartCount != 0 || got.Status.CompletionTime == nil {
		t.Fatalf("completed status %+v", got.Status)
	}
	waitPodGone(t, ns, "done-0")
	time.Sleep(500 * time.Millisecond)
	if podExists(t, ns, "done-1") {
		t.Fatal("a completed session was restarted")
	}
}

func TestImagePullErrorFailsWithoutRetry(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "badimg"))
	waitPod(t, ns, "badimg-0")
	kubelet(t, ns, "badimg-0", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{exited(ContainerInstall, 0, "Completed"), exited(ContainerHydrate, 0, "Completed"), running(ContainerSync, true)}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerRunner, State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: `pull access denied for ghcr.io/acme/agent`}}}}
	})
	got := waitPhase(t, ns, "badimg", tetherv1.PhaseFailed)
	if got.Status.RestartCount != 0 || got.Status.LastTermination == nil || got.Status.LastTermination.Reason != "ImagePullFailed" {
		t.Fatalf("status %+v", got.Status)
	}
	time.Sleep(500 * time.Millisecond)
	if podExists(t, ns, "badimg-1") {
		t.Fatal("image pull error was retried")
	}
}

// A pod no node can take stays Pending without an error of its own: the
// session says why (Ready condition and a Warning event) instead of looking
// as if it were starting, keeps its pod (an autoscaler may add a node) and
// starts normally once the pod is scheduled.
func TestUnschedulableIsReported(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "nofit"))
	waitPod(t, ns, "nofit-0")
	const why = "0/3 nodes are available: 3 Insufficient memory."
	kubelet(t, ns, "nofit-0", func(p *corev1.Pod) { // the scheduler's verdict
		p.Status.Phase = corev1.PodPending
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: why, LastTransitionTime: metav1.Now()}}
	})
	eventually(t, 20*time.Second, "the Ready condition to say why", func() string {
		s := getSession(t, ns, "nofit")
		c := meta.FindStatusCondition(s.Status.Conditions, tetherv1.ConditionReady)
		if s.Status.Phase != tetherv1.PhaseCreating || c == nil || c.Reason != "Unschedulable" || !strings.Contains(c.Message, why) {
			return fmt.Sprintf("phase %q, conditions %+v", s.Status.Phase, s.Status.Conditions)
		}
		return ""
	})
	assertEvent(t, ns, "nofit", "Unschedulable")
	if !podExists(t, ns, "nofit-0") {
		t.Fatal("the unschedulable pod was deleted")
	}

	kubelet(t, ns, "nofit-0", func(p *corev1.Pod) { // a node was added
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	})
	runPod(t, ns, "nofit-0")
	got := waitPhase(t, ns, "nofit", tetherv1.PhaseRunning)
	if got.Status.RestartCount != 0 {
		t.Fatalf("restart count %d after a late schedule, want 0", got.Status.RestartCount)
	}
}

func TestPodDeletedIsRecreated(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "del"))
	pod := waitPod(t, ns, "del-0")
	runPod(t, ns, "del-0")
	waitPhase(t, ns, "del", tetherv1.PhaseRunning)
	if err := k8s.Delete(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ns, "del-1")
	runPod(t, ns, "del-1")
	got := waitPhase(t, ns, "del", tetherv1.PhaseRunning)
	if got.Status.RestartCount != 1 || got.Status.LastTermination == nil || got.Status.LastTermination.Reason != "PodDeleted" {
		t.Fatalf("status %+v", got.Status)
	}
}

func TestEvictionRecoversWithoutOOMBump(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "evict"))
	waitPod(t, ns, "evict-0")
	runPod(t, ns, "evict-0")
	waitPhase(t, ns, "evict", tetherv1.PhaseRunning)
	// What an eviction looks like: the DisruptionTarget condition, and the
	// runner killed with SIGKILL (137) after its grace.
	kubelet(t, ns, "evict-0", func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting", LastTransitionTime: metav1.Now()})
		st := findStatus(p.Status.ContainerStatuses, ContainerRunner)
		st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", FinishedAt: metav1.Now()}}
	})
	pod1 := waitPod(t, ns, "evict-1")
	if got := runnerMemory(t, pod1); got != "1Gi" {
		t.Fatalf("memory after eviction %s, want unchanged 1Gi", got)
	}
	runPod(t, ns, "evict-1")
	got := waitPhase(t, ns, "evict", tetherv1.PhaseRunning)
	if got.Status.OOMCount != 0 || got.Status.RestartCount != 1 || got.Status.LastTermination.Reason != "Evicted" {
		t.Fatalf("status: oom %d restarts %d last %+v", got.Status.OOMCount, got.Status.RestartCount, got.Status.LastTermination)
	}
}

func TestSuspendResume(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "sus"))
	pod0 := waitPod(t, ns, "sus-0")
	bindPod(t, ns, "sus-0")
	runPod(t, ns, "sus-0")
	waitPhase(t, ns, "sus", tetherv1.PhaseRunning)

	setSuspend(t, ns, "sus", true)
	// Suspending while the pod takes its final snapshot (graceful delete)...
	waitPhase(t, ns, "sus", tetherv1.PhaseSuspending)
	time.Sleep(500 * time.Millisecond)
	if p := getSession(t, ns, "sus").Status.Phase; p != tetherv1.PhaseSuspending || !podExists(t, ns, "sus-0") {
		t.Fatalf("phase %s before the pod finished, want Suspending", p)
	}
	// ...and Suspended once the kubelet confirms the pod is gone.
	if err := k8s.Delete(context.Background(), pod0, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, ns, "sus-0")
	got := waitPhase(t, ns, "sus", tetherv1.PhaseSuspended)
	if got.Status.RestartCount != 0 {
		t.Fatalf("suspend counted as a restart: %d", got.Status.RestartCount)
	}

	setSuspend(t, ns, "sus", false)
	pod1 := waitPod(t, ns, "sus-0")
	if pod1.UID == pod0.UID {
		t.Fatal("same pod after resume")
	}
	runPod(t, ns, "sus-0")
	waitPhase(t, ns, "sus", tetherv1.PhaseRunning)

	// The prompt reaches the new pod exactly as before: the runner's durable
	// marker, not the pod spec, decides that it is not delivered again.
	if a, b := envOf(pod0, EnvInitialPrompt), envOf(pod1, EnvInitialPrompt); a != "write the release notes" || a != b {
		t.Fatalf("prompt env before %q after %q", a, b)
	}
	for _, c := range pod1.Spec.Containers {
		for _, arg := range c.Args {
			if strings.Contains(arg, "prompt") {
				t.Fatalf("runner args force the prompt: %q", c.Args)
			}
		}
	}
}

// Suspend while a restart is pending keeps the session suspended, and never
// leaves a pod behind.
func TestSuspendWhileRecovering(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	s := newSession(ns, "susrec")
	s.Spec.Recovery.InitialBackoff = &metav1.Duration{Duration: time.Hour}
	s.Spec.Recovery.MaxBackoff = &metav1.Duration{Duration: time.Hour}
	create(t, s)
	waitPod(t, ns, "susrec-0")
	runPod(t, ns, "susrec-0")
	waitPhase(t, ns, "susrec", tetherv1.PhaseRunning)
	killRunner(t, ns, "susrec-0", 1, "Error")
	waitPhase(t, ns, "susrec", tetherv1.PhaseRecovering)
	setSuspend(t, ns, "susrec", true)
	waitPhase(t, ns, "susrec", tetherv1.PhaseSuspended)
	setSuspend(t, ns, "susrec", false)
	waitPod(t, ns, "susrec-1")
	got := waitPhase(t, ns, "susrec", tetherv1.PhaseCreating)
	if got.Status.RestartCount != 1 {
		t.Fatalf("restarts %d", got.Status.RestartCount)
	}
}

func TestServiceCreated(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "svc"))
	eventually(t, 10*time.Second, "service", func() string {
		var svc corev1.Service
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "svc"}, &svc); err != nil {
			return err.Error()
		}
		if svc.Spec.Selector[LabelSession] != "svc" || len(svc.OwnerReferences) != 1 {
			return fmt.Sprintf("service %+v", svc.Spec)
		}
		return ""
	})
}

func TestInvalidSpecsRejected(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	cases := []struct {
		name   string
		mutate func(*tetherv1.AgenticSession)
		want   string
	}{
		{"empty image", func(s *tetherv1.AgenticSession) { s.Spec.Agent.Image = "" }, "agent.image must name a container image"},
		{"blank image", func(s *tetherv1.AgenticSession) { s.Spec.Agent.Image = "   " }, "agent.image must name a container image"},
		{"negative restarts", func(s *tetherv1.AgenticSession) { s.Spec.Recovery.MaxRestarts = ptr.To[int32](-1) }, "recovery.maxRestarts must be 0 or more"},
		{"bump factor 1", func(s *tetherv1.AgenticSession) { s.Spec.Recovery.OOMMemoryFactor = ptr.To(1.0) }, "recovery.oomMemoryFactor must be greater than 1"},
		{"bump factor 0.5", func(s *tetherv1.AgenticSession) { s.Spec.Recovery.OOMMemoryFactor = ptr.To(0.5) }, "recovery.oomMemoryFactor must be greater than 1"},
		{"bad bucket URL", func(s *tetherv1.AgenticSession) { s.Spec.Storage.URL = "bucket-without-scheme" }, "storage.url must be an object-store URL"},
		{"unknown scheme", func(s *tetherv1.AgenticSession) { s.Spec.Storage.URL = "ftp://host/x" }, "storage.url must be an object-store URL"},
		{"literal env", func(s *tetherv1.AgenticSession) {
			s.Spec.Agent.Env = []tetherv1.EnvVar{{Name: "ANTHROPIC_API_KEY"}}
		}, "literal values are not allowed"},
		{"bad repo url", func(s *tetherv1.AgenticSession) {
			s.Spec.Repos = []tetherv1.RepoSpec{{URL: "not a url"}}
		}, "repos[].url must be a git URL"},
		{"long name", func(s *tetherv1.AgenticSession) { s.Name = strings.Repeat("a", 51) }, "at most 50 characters"},
		{"https token in repo url", func(s *tetherv1.AgenticSession) {
			s.Spec.Repos = []tetherv1.RepoSpec{{URL: "https://bot:ghp_TOKEN@github.com/acme/app.git"}}
		}, "repos[].url must not contain credentials"},
		{"https user in repo url", func(s *tetherv1.AgenticSession) {
			s.Spec.Repos = []tetherv1.RepoSpec{{URL: "https://x-access-token@github.com/acme/app.git"}}
		}, "put the token under the key TETHER_GIT_TOKEN in the Secret named by spec.storage.credentialsSecret"},
		{"userinfo in second repo", func(s *tetherv1.AgenticSession) {
			s.Spec.Repos = []tetherv1.RepoSpec{{URL: "https://github.com/acme/app.git"}, {URL: "http://u:p@git.internal/x.git"}}
		}, "repos[].url must not contain credentials"},
		{"ssh password in repo url", func(s *tetherv1.AgenticSession) {
			s.Spec.Repos = []tetherv1.RepoSpec{{URL: "ssh://git:hunter2@github.com/acme/app.git"}}
		}, "repos[].url must not contain a password"},
		{"ssh password names the token route", func(s *tetherv1.AgenticSession) {
			s.Spec.Repos = []tetherv1.RepoSpec{{URL: "ssh://git:hunter2@github.com/acme/app.git"}}
		}, "with the token under the key TETHER_GIT_TOKEN in the Secret named by spec.storage.credentialsSecret"},
	}
	for _, tc := range cases {
		s := newSession(ns, "bad")
		tc.mutate(s)
		err := k8s.Create(context.Background(), s)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			_ = k8s.Delete(context.Background(), s)
			continue
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\nwant an Invalid error containing %q", tc.name, err, tc.want)
		}
	}
	// And a valid one with every optional field passes.
	ok := newSession(ns, "good")
	// ssh user names are not credentials; an '@' in the path is not userinfo.
	ok.Spec.Repos = []tetherv1.RepoSpec{{URL: "git@github.com:acme/app.git", Branch: "main"},
		{URL: "ssh://git@github.com:22/acme/lib.git"}, {URL: "https://github.com/acme/tools.git"},
		{URL: "https://git.internal/acme/pkg@v2.git"}}
	ok.Spec.Agent.Env = []tetherv1.EnvVar{{Name: "ANTHROPIC_API_KEY", SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "anthropic"}, Key: "key"}}}
	ok.Spec.Storage.URL = "gs://my-bucket/tether/prod"
	ok.Spec.Suspend = true
	if err := k8s.Create(context.Background(), ok); err != nil {
		t.Fatalf("valid session rejected: %v", err)
	}
	waitPhase(t, ns, "good", tetherv1.PhaseSuspended)
}

func setSuspend(t *testing.T, ns, name string, v bool) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := getSession(t, ns, name)
		s.Spec.Suspend = v
		return k8s.Update(context.Background(), s)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func envOf(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

func assertEvent(t *testing.T, ns, session, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, "event "+reason, func() string {
		var list corev1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.InvolvedObject.Name == session && e.Reason == reason {
				return ""
			}
			seen = append(seen, e.Reason)
		}
		return fmt.Sprintf("events seen: %v", seen)
	})
}

// The sample in config/samples (and the README) is accepted by the real API
// server with the generated CRD.
func TestSampleIsValid(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "agenticsession.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s tetherv1.AgenticSession
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		t.Fatalf("sample does not match the Go types: %v", err)
	}
	s.Namespace = ns
	s.Spec.Suspend = true // no pod needed
	if err := k8s.Create(context.Background(), &s); err != nil {
		t.Fatalf("sample rejected: %v", err)
	}
	waitPhase(t, ns, s.Name, tetherv1.PhaseSuspended)
}

func TestRunnerReportInStatus(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	snapTime := time.Now().Add(-time.Minute).Truncate(time.Second)
	fakeObs.set(ns, "rep-0", Observation{AgentSessionID: "6c1f-uuid", ResumeOutcome: "resumed",
		LastActivity: time.Now(), SnapshotID: "0007", SnapshotTime: snapTime})
	create(t, newSession(ns, "rep"))
	waitPod(t, ns, "rep-0")
	runPod(t, ns, "rep-0")
	eventually(t, 10*time.Second, "observed fields in status", func() string {
		st := getSession(t, ns, "rep").Status
		if st.AgentSessionID != "6c1f-uuid" || st.LastResumeOutcome != "resumed" || st.LastSnapshot == nil ||
			st.LastSnapshot.ID != "0007" || !st.LastSnapshot.Time.Time.Equal(snapTime) {
			return fmt.Sprintf("%+v", st)
		}
		return ""
	})
}

// An idle session is suspended after spec.inactivityTimeout; one in the middle
// of a turn is not, however old its last state change.
func TestInactivitySuspends(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	long := time.Now().Add(-time.Hour)
	fakeObs.set(ns, "idle-0", Observation{LastActivity: long})
	fakeObs.set(ns, "busy-0", Observation{LastActivity: long, TurnOpen: true})
	for _, name := range []string{"idle", "busy"} {
		s := newSession(ns, name)
		s.Spec.InactivityTimeout = &metav1.Duration{Duration: 2 * time.Second}
		create(t, s)
		waitPod(t, ns, name+"-0")
		runPod(t, ns, name+"-0")
	}
	waitPhase(t, ns, "busy", tetherv1.PhaseRunning)
	got := waitPhase(t, ns, "idle", tetherv1.PhaseSuspended)
	if !got.Spec.Suspend {
		t.Fatal("inactivity suspended the session without setting spec.suspend")
	}
	assertEvent(t, ns, "idle", "InactivitySuspend")
	if b := getSession(t, ns, "busy"); b.Status.Phase != tetherv1.PhaseRunning || b.Spec.Suspend {
		t.Fatalf("busy session: phase %s suspend %v", b.Status.Phase, b.Spec.Suspend)
	}
	// Resuming starts the inactivity clock over instead of suspending at once
	// on the old, expired activity time.
	resumedAt := time.Now().Truncate(time.Second)
	setSuspend(t, ns, "idle", false)
	waitPod(t, ns, "idle-0")
	eventually(t, 10*time.Second, "activity clock restarted", func() string {
		st := getSession(t, ns, "idle").Status
		if st.LastActivityTime == nil || st.LastActivityTime.Time.Before(resumedAt) {
			return fmt.Sprintf("phase %s lastActivityTime %v, resumed at %v", st.Phase, st.LastActivityTime, resumedAt)
		}
		return ""
	})
}

// bindPod schedules a pod onto a node, as the scheduler would. A bound pod is
// deleted gracefully: it stays, Terminating, until its kubelet (the test)
// confirms, which is how the final snapshot gets its time.
func bindPod(t *testing.T, ns, name string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
	if err := k8s.SubResource("binding").Create(context.Background(), pod, binding); err != nil {
		t.Fatalf("bind %s: %v", name, err)
	}
}

// The new pod waits until the old one has finished (its sidecar's final
// snapshot), and the old one is given the grace the final snapshot needs.
func TestRecoveryWaitsForFinalSnapshot(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "fin"))
	waitPod(t, ns, "fin-0")
	bindPod(t, ns, "fin-0")
	runPod(t, ns, "fin-0")
	waitPhase(t, ns, "fin", tetherv1.PhaseRunning)
	killRunner(t, ns, "fin-0", 137, "OOMKilled")

	var old corev1.Pod
	eventually(t, 10*time.Second, "old pod terminating", func() string {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "fin-0"}, &old); err != nil {
			return err.Error()
		}
		if old.DeletionTimestamp == nil {
			return "not being deleted"
		}
		return ""
	})
	want := int64(GracePeriod(newSession(ns, "fin")).Seconds())
	if old.DeletionGracePeriodSeconds == nil || *old.DeletionGracePeriodSeconds != want {
		t.Fatalf("deletion grace %v, want %ds (runner stop + final budget + margin)", old.DeletionGracePeriodSeconds, want)
	}
	// The backoff (200ms) passes; the old pod is still finishing its final
	// snapshot, so no new pod may start (hydrate would miss that snapshot).
	time.Sleep(1500 * time.Millisecond)
	if podExists(t, ns, "fin-1") {
		t.Fatal("new pod created while the old one was still taking its final snapshot")
	}
	if p := getSession(t, ns, "fin").Status.Phase; p != tetherv1.PhaseRecovering {
		t.Fatalf("phase %s while the old pod finishes, want Recovering", p)
	}
	// The kubelet: the sidecar's final snapshot is done, the pod is gone.
	kubelet(t, ns, "fin-0", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.InitContainerStatuses[2] = exited(ContainerSync, 0, "Completed")
	})
	if err := k8s.Delete(context.Background(), &old, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ns, "fin-1")
	runPod(t, ns, "fin-1")
	waitPhase(t, ns, "fin", tetherv1.PhaseRunning)
}
