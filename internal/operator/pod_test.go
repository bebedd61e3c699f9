package operator

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

func testSession() *tetherv1.AgenticSession {
	return &tetherv1.AgenticSession{
		ObjectMeta: metav1.ObjectMeta{Name: "s1", Namespace: "team-a"},
		Spec: tetherv1.AgenticSessionSpec{
			Agent: tetherv1.AgentSpec{
				Image:   "ghcr.io/acme/agent:1",
				Command: []string{"claude"},
				Args:    []string{"--model", "opus"},
				Env: []tetherv1.EnvVar{
					{Name: "ANTHROPIC_API_KEY", SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "anthropic"}, Key: "key"}},
					{Name: "MODEL_HINT", ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "agent-cfg"}, Key: "model"}},
				},
				EnvFrom: []tetherv1.SecretEnvSource{{SecretName: "git-token"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
				},
			},
			InitialPrompt: "fix the flaky test",
			Repos:         []tetherv1.RepoSpec{{URL: "https://github.com/acme/app.git", Branch: "main"}, {URL: "git@github.com:acme/lib.git"}},
			Storage: tetherv1.StorageSpec{URL: "s3://bucket/tether",
				CredentialsSecret: &corev1.LocalObjectReference{Name: "s3-creds"}},
			Sync: tetherv1.SyncSpec{FinalBudget: &metav1.Duration{Duration: 90 * time.Second}},
		},
	}
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q in %v", name, names(cs))
	return corev1.Container{}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestBuildPodLayout(t *testing.T) {
	s := testSession()
	cfg := DefaultPodConfig()
	pod := BuildPod(s, cfg, 3, nil)

	if pod.Name != "s1-3" || pod.Namespace != "team-a" || pod.Labels[LabelSession] != "s1" || pod.Labels[LabelAttempt] != "3" {
		t.Fatalf("name/labels: %s/%s %v", pod.Namespace, pod.Name, pod.Labels)
	}
	if got, want := names(pod.Spec.InitContainers), []string{ContainerInstall, ContainerHydrate, ContainerSync}; !slices.Equal(got, want) {
		t.Fatalf("init containers %v, want %v (sync after hydrate, so it never snapshots an empty workspace)", got, want)
	}
	if got := names(pod.Spec.Containers); !slices.Equal(got, []string{ContainerRunner}) {
		t.Fatalf("containers %v", got)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %s: the operator, not the kubelet, must restart the runner", pod.Spec.RestartPolicy)
	}

	sync := container(t, pod.Spec.InitContainers, ContainerSync)
	if sync.RestartPolicy == nil || *sync.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sync is not a native sidecar: restartPolicy %v", sync.RestartPolicy)
	}
	wantSync := []string{"sync", "--store", "s3://bucket/tether", "--namespace", "team-a", "--session", "s1", "--workspace", "/workspace", "--final-budget", "1m30s", "--listen", ":9464", "--termination-log", "/dev/termination-log"}
	if !slices.Equal(sync.Args, wantSync) {
		t.Errorf("sync args\n got %q\nwant %q", sync.Args, wantSync)
	}
	hydrate := container(t, pod.Spec.InitContainers, ContainerHydrate)
	wantHydrate := []string{"hydrate", "--store", "s3://bucket/tether", "--namespace", "team-a", "--session", "s1", "--workspace", "/workspace",
		"--repo", "https://github.com/acme/app.git#main", "--repo", "git@github.com:acme/lib.git", "--termination-log", "/dev/termination-log"}
	if !slices.Equal(hydrate.Args, wantHydrate) {
		t.Errorf("hydrate args\n got %q\nwant %q", hydrate.Args, wantHydrate)
	}
	for _, c := range []corev1.Container{hydrate, sync} {
		if c.TerminationMessagePolicy != corev1.TerminationMessageReadFile || c.TerminationMessagePath != corev1.TerminationMessagePathDefault {
			t.Errorf("%s: termination message %s %s: the operator reads its report from the file", c.Name, c.TerminationMessagePolicy, c.TerminationMessagePath)
		}
	}
	for _, c := range []corev1.Container{hydrate, sync} {
		if c.Image != cfg.TetherImage || len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef.Name != "s3-creds" {
			t.Errorf("%s: image %s envFrom %+v; want the tether image and the store credentials Secret", c.Name, c.Image, c.EnvFrom)
		}
	}

	install := container(t, pod.Spec.InitContainers, ContainerInstall)
	runner := container(t, pod.Spec.Containers, ContainerRunner)
	if install.Image != cfg.TetherImage || !slices.Equal(install.Args, []string{"copy-self", "/opt/tether/tether"}) {
		t.Errorf("install: %s %q", install.Image, install.Args)
	}
	if runner.Image != "ghcr.io/acme/agent:1" || !slices.Equal(runner.Command, []string{"/opt/tether/tether"}) {
		t.Errorf("runner must run the copied tether binary in the user's image: %s %q", runner.Image, runner.Command)
	}
	wantRunner := []string{"runner", "--workspace", "/workspace", "--listen", ":8080", "--", "claude", "--model", "opus"}
	if !slices.Equal(runner.Args, wantRunner) {
		t.Errorf("runner args\n got %q\nwant %q", runner.Args, wantRunner)
	}
	// The store credentials stay out of the runner: the agent runs arbitrary tools.
	for _, e := range runner.EnvFrom {
		if e.SecretRef != nil && e.SecretRef.Name == "s3-creds" {
			t.Errorf("runner gets the store credentials")
		}
	}

	// Grace: runner stop + final budget + margin.
	if got, want := *pod.Spec.TerminationGracePeriodSeconds, int64((15 + 90 + 15)); got != want {
		t.Errorf("grace %d, want %d", got, want)
	}
}

func TestBuildPodEnvOnlyFromReferences(t *testing.T) {
	s := testSession()
	runner := container(t, BuildPod(s, DefaultPodConfig(), 0, nil).Spec.Containers, ContainerRunner)
	for _, e := range runner.Env {
		if e.Name == EnvInitialPrompt {
			if e.Value != "fix the flaky test" {
				t.Errorf("prompt env %q", e.Value)
			}
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || (e.ValueFrom.SecretKeyRef == nil && e.ValueFrom.ConfigMapKeyRef == nil) {
			t.Errorf("env %s is not a Secret/ConfigMap reference: %+v", e.Name, e)
		}
	}
	if len(runner.Env) != 4 {
		t.Errorf("want prompt + 2 referenced vars + the runner token, got %+v", runner.Env)
	}
	if len(runner.EnvFrom) != 1 || runner.EnvFrom[0].SecretRef.Name != "git-token" {
		t.Errorf("envFrom %+v", runner.EnvFrom)
	}
	// A spec that slipped past admission with neither reference must not
	// become a literal.
	s.Spec.Agent.Env = append(s.Spec.Agent.Env, tetherv1.EnvVar{Name: "BROKEN"})
	runner = container(t, BuildPod(s, DefaultPodConfig(), 0, nil).Spec.Containers, ContainerRunner)
	for _, e := range runner.Env {
		if e.Name == "BROKEN" {
			t.Errorf("env without a reference was passed on: %+v", e)
		}
	}
}

func TestBuildPodSecurityDefaults(t *testing.T) {
	pod := BuildPod(testSession(), DefaultPodConfig(), 0, nil)
	psc := pod.Spec.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("pod security context %+v", psc)
	}
	if ptr.Deref(pod.Spec.AutomountServiceAccountToken, true) {
		t.Errorf("service account token mounted without a user-chosen service account")
	}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.RunAsNonRoot, false) ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: security context %+v", c.Name, sc)
		}
		wantRO := c.Name != ContainerRunner
		if ptr.Deref(sc.ReadOnlyRootFilesystem, false) != wantRO {
			t.Errorf("%s: readOnlyRootFilesystem %v, want %v", c.Name, ptr.Deref(sc.ReadOnlyRootFilesystem, false), wantRO)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
			t.Errorf("volume %s has no size limit", v.Name)
		}
		if v.Name == volumeWorkspace && v.EmptyDir.SizeLimit.String() != DefaultWorkspaceSize {
			t.Errorf("workspace size %s", v.EmptyDir.SizeLimit)
		}
	}
}

func TestBuildPodMemoryOverride(t *testing.T) {
	s := testSession()
	limit := resource.MustParse("3Gi")
	runner := container(t, BuildPod(s, DefaultPodConfig(), 1, &limit).Spec.Containers, ContainerRunner)
	if got := runner.Resources.Limits[corev1.ResourceMemory]; got.Cmp(limit) != 0 {
		t.Errorf("memory limit %s, want 3Gi", got.String())
	}
	// The spec is not modified by building a pod.
	if got := s.Spec.Agent.Resources.Limits[corev1.ResourceMemory]; got.String() != "2Gi" {
		t.Errorf("spec limit changed to %s", got.String())
	}
	// A request above a (lowered) limit is clamped, never invalid.
	low := resource.MustParse("1Gi")
	runner = container(t, BuildPod(s, DefaultPodConfig(), 1, &low).Spec.Containers, ContainerRunner)
	if got := runner.Resources.Requests[corev1.ResourceMemory]; got.Cmp(low) != 0 {
		t.Errorf("request %s above limit 1Gi", got.String())
	}
}

func TestBuildPodRegularSidecar(t *testing.T) {
	s := testSession()
	s.Spec.Sync.NativeSidecar = ptr.To(false)
	pod := BuildPod(s, DefaultPodConfig(), 0, nil)
	if got := names(pod.Spec.InitContainers); !slices.Equal(got, []string{ContainerInstall, ContainerHydrate}) {
		t.Errorf("init containers %v", got)
	}
	sync := container(t, pod.Spec.Containers, ContainerSync)
	if sync.RestartPolicy != nil {
		t.Errorf("regular sidecar has a restartPolicy")
	}
}

func TestBuildPodNoAgentCommand(t *testing.T) {
	s := testSession()
	s.Spec.Agent.Command, s.Spec.Agent.Args, s.Spec.InitialPrompt = nil, nil, ""
	runner := container(t, BuildPod(s, DefaultPodConfig(), 0, nil).Spec.Containers, ContainerRunner)
	if slices.Contains(runner.Args, "--") {
		t.Errorf("args %q: no agent command, so no '--'", runner.Args)
	}
	for _, e := range runner.Env {
		if e.Name == EnvInitialPrompt {
			t.Errorf("empty prompt passed")
		}
	}
}

func TestBuildService(t *testing.T) {
	svc := BuildService(testSession(), DefaultPodConfig())
	if svc.Name != "s1" || svc.Spec.Selector[LabelSession] != "s1" || len(svc.Spec.Selector) != 1 {
		t.Fatalf("service %s selector %v: must select every attempt of the session", svc.Name, svc.Spec.Selector)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service is not headless: clusterIP %q", svc.Spec.ClusterIP)
	}
	if p := svc.Spec.Ports[0]; p.Port != 8080 || p.TargetPort.StrVal != RunnerPortName {
		t.Errorf("port %+v", p)
	}
}

func TestBuildPodDeterministic(t *testing.T) {
	a := BuildPod(testSession(), DefaultPodConfig(), 2, nil)
	b := BuildPod(testSession(), DefaultPodConfig(), 2, nil)
	if a.String() != b.String() {
		t.Fatal("two builds of the same session differ")
	}
	if strings.Contains(a.String(), "AWS_SECRET") {
		t.Fatal("credentials in pod spec")
	}
}
