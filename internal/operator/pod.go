package operator

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// Container and volume names in a session pod. The classifier and the tests key
// on them.
const (
	ContainerInstall = "install-tether"
	ContainerHydrate = "hydrate"
	ContainerSync    = "sync"
	ContainerRunner  = "runner"

	volumeWorkspace = "workspace"
	volumeTetherBin = "tether-bin"
	volumeTmp       = "tmp"

	// WorkspacePath is where the workspace is mounted in every container.
	WorkspacePath = "/workspace"
	// tetherBinDir holds the tether binary copied from the tether image, so the
	// user's agent image does not need to contain it.
	tetherBinDir = "/opt/tether"

	// SyncMetricsPort serves the sync sidecar's /metrics and /healthz.
	SyncMetricsPort = 9464

	// RunnerPortName is the runner's AG-UI HTTP port, exposed by the session Service.
	RunnerPortName = "agui"

	// Labels on every pod and Service the operator creates.
	LabelSession = "tether.dev/session"
	LabelAttempt = "tether.dev/attempt"
	labelName    = "app.kubernetes.io/name"
	labelManaged = "app.kubernetes.io/managed-by"

	// EnvInitialPrompt carries spec.initialPrompt to the runner. It is the same
	// on every attempt: the runner's durable marker, not the pod spec, keeps the
	// prompt from being delivered twice.
	EnvInitialPrompt = "TETHER_INITIAL_PROMPT"
)

// Defaults used when the spec leaves a field empty.
const (
	DefaultFinalBudget    = 60 * time.Second
	DefaultWorkspaceSize  = "10Gi"
	DefaultMaxRestarts    = 5
	DefaultInitialBackoff = 10 * time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultOOMFactor      = 1.5
	// runnerStopBudget is what the runner needs after SIGTERM to stop the CLI
	// and flush its event log; the sidecar's final snapshot starts after it.
	runnerStopBudget = 15 * time.Second
	// graceMargin covers process start-up of the final snapshot and kubelet lag.
	graceMargin = 15 * time.Second
)

// PodConfig is what the operator's flags decide for every session pod.
type PodConfig struct {
	// TetherImage contains the tether binary as its ENTRYPOINT; it runs the
	// install, hydrate and sync containers.
	TetherImage           string
	TetherImagePullPolicy corev1.PullPolicy
	// RunnerPort is the runner's AG-UI port.
	RunnerPort int32
	// RunAsUser is the UID of every container (the pod never runs as root).
	RunAsUser int64

	// OperatorNamespace and OperatorPodLabels identify the operator's own
	// pods, the only ones each session's NetworkPolicy admits to the runner
	// port besides RunnerClients.
	OperatorNamespace string
	OperatorPodLabels map[string]string
	// RunnerClients are further peers admitted to the runner port (a UI or
	// backend that talks AG-UI to the sessions).
	RunnerClients []networkingv1.NetworkPolicyPeer
}

// DefaultPodConfig returns the settings used when the operator is started without flags.
func DefaultPodConfig() PodConfig {
	return PodConfig{
		TetherImage:           "ghcr.io/tether-dev/tether:latest",
		TetherImagePullPolicy: corev1.PullIfNotPresent,
		RunnerPort:            8080,
		RunAsUser:             1000,
		OperatorNamespace:     "tether-system",
		OperatorPodLabels:     map[string]string{labelName: "tether-operator"},
	}
}

// PodName is the name of the session's pod for one attempt. A new name per
// attempt lets the next pod be created while the previous one is still
// finishing its final snapshot on a lost node.
func PodName(s *tetherv1.AgenticSession, attempt int32) string {
	return fmt.Sprintf("%s-%d", s.Name, attempt)
}

// FinalBudget is the sync sidecar's final-snapshot budget for s.
func FinalBudget(s *tetherv1.AgenticSession) time.Duration {
	if b := s.Spec.Sync.FinalBudget; b != nil && b.Duration > 0 {
		return b.Duration
	}
	return DefaultFinalBudget
}

// GracePeriod is the pod's termination grace period: the runner stops first,
// then the native sidecar gets SIGTERM and runs its final snapshot, so the pod
// must be given both budgets plus a margin, or the kubelet SIGKILLs the final
// snapshot half way.
func GracePeriod(s *tetherv1.AgenticSession) time.Duration {
	return runnerStopBudget + FinalBudget(s) + graceMargin
}

// InitialMemoryLimit is the runner's memory limit as the user wrote it (nil: none).
func InitialMemoryLimit(s *tetherv1.AgenticSession) *resource.Quantity {
	if q, ok := s.Spec.Agent.Resources.Limits[corev1.ResourceMemory]; ok {
		return &q
	}
	return nil
}

func nativeSidecar(s *tetherv1.AgenticSession) bool {
	return s.Spec.Sync.NativeSidecar == nil || *s.Spec.Sync.NativeSidecar
}

func sessionLabels(s *tetherv1.AgenticSession) map[string]string {
	return map[string]string{
		labelName:    "tether-session",
		labelManaged: "tether-operator",
		LabelSession: s.Name,
	}
}

// BuildPod returns the pod for one attempt of session s. memoryLimit overrides
// the runner's memory limit (after OOM bumps); nil keeps the spec's. It is a
// pure function of its arguments, so the same session always gives the same
// pod.
func BuildPod(s *tetherv1.AgenticSession, cfg PodConfig, attempt int32, memoryLimit *resource.Quantity) *corev1.Pod {
	lbl := sessionLabels(s)
	lbl[LabelAttempt] = fmt.Sprint(attempt)

	storeArgs := []string{
		"--store", s.Spec.Storage.URL,
		"--namespace", s.Namespace,
		"--session", s.Name,
		"--workspace", WorkspacePath,
	}
	var storeEnvFrom []corev1.EnvFromSource
	if c := s.Spec.Storage.CredentialsSecret; c != nil && c.Name != "" {
		storeEnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: *c}}}
	}
	// The root filesystem of tether's containers is read-only: git and the
	// snapshot stat cache write under $HOME, which is the per-container /tmp.
	tetherEnv := []corev1.EnvVar{{Name: "HOME", Value: "/tmp"}}
	workspaceMount := corev1.VolumeMount{Name: volumeWorkspace, MountPath: WorkspacePath}
	tmpMount := func(sub string) corev1.VolumeMount {
		return corev1.VolumeMount{Name: volumeTmp, MountPath: "/tmp", SubPath: sub}
	}

	install := corev1.Container{
		Name:            ContainerInstall,
		Image:           cfg.TetherImage,
		ImagePullPolicy: cfg.TetherImagePullPolicy,
		// The tether image's ENTRYPOINT is tether; copy-self needs no shell or cp,
		// so the image can be distroless. It is a command of the lean tether
		// itself, never of tether-operator: the copy is the binary that runs.
		Args:            []string{"copy-self", tetherBinDir + "/tether"},
		VolumeMounts:    []corev1.VolumeMount{{Name: volumeTetherBin, MountPath: tetherBinDir}},
		SecurityContext: containerSecurity(true),
		Resources:       smallResources("100m", "32Mi", "128Mi"),
	}

	hydrateArgs := append([]string{"hydrate"}, storeArgs...)
	for _, r := range s.Spec.Repos {
		ref := r.URL
		if r.Branch != "" {
			ref += "#" + r.Branch
		}
		hydrateArgs = append(hydrateArgs, "--repo", ref)
	}
	hydrateArgs = append(hydrateArgs, "--termination-log", corev1.TerminationMessagePathDefault)
	hydrate := corev1.Container{
		Name:            ContainerHydrate,
		Image:           cfg.TetherImage,
		ImagePullPolicy: cfg.TetherImagePullPolicy,
		Args:            hydrateArgs,
		Env:             tetherEnv,
		EnvFrom:         storeEnvFrom,
		VolumeMounts:    []corev1.VolumeMount{workspaceMount, tmpMount("hydrate")},
		SecurityContext: containerSecurity(true),
		Resources:       smallResources("200m", "128Mi", "1Gi"),
		// The report the operator reads (report.go); never the log tail,
		// which is not a record.
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}

	syncArgs := append([]string{"sync"}, storeArgs...)
	syncArgs = append(syncArgs, "--final-budget", FinalBudget(s).String(), "--listen", fmt.Sprintf(":%d", SyncMetricsPort),
		"--termination-log", corev1.TerminationMessagePathDefault)
	syncResources := smallResources("50m", "128Mi", "512Mi")
	if s.Spec.Sync.Resources != nil {
		syncResources = *s.Spec.Sync.Resources
	}
	sync := corev1.Container{
		Name:            ContainerSync,
		Image:           cfg.TetherImage,
		ImagePullPolicy: cfg.TetherImagePullPolicy,
		Args:            syncArgs,
		Env:             tetherEnv,
		EnvFrom:         storeEnvFrom,
		Ports: []corev1.ContainerPort{{
			Name: "sync-metrics", ContainerPort: SyncMetricsPort, Protocol: corev1.ProtocolTCP,
		}},
		VolumeMounts:             []corev1.VolumeMount{workspaceMount, tmpMount("sync")},
		SecurityContext:          containerSecurity(true),
		Resources:                syncResources,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}

	runner := corev1.Container{
		Name:            ContainerRunner,
		Image:           s.Spec.Agent.Image,
		ImagePullPolicy: s.Spec.Agent.ImagePullPolicy,
		Command:         []string{tetherBinDir + "/tether"},
		Args:            runnerArgs(s, cfg),
		WorkingDir:      WorkspacePath,
		Env:             runnerEnv(s),
		EnvFrom:         runnerEnvFrom(s),
		Ports: []corev1.ContainerPort{{
			Name: RunnerPortName, ContainerPort: cfg.RunnerPort, Protocol: corev1.ProtocolTCP,
		}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromString(RunnerPortName),
			}},
			PeriodSeconds: 5,
		},
		VolumeMounts: []corev1.VolumeMount{
			workspaceMount,
			{Name: volumeTetherBin, MountPath: tetherBinDir, ReadOnly: true},
			tmpMount("runner"),
		},
		// Agent images are the user's and their CLIs write caches under $HOME
		// and elsewhere, so the runner's root filesystem stays writable; all
		// other hardening applies.
		SecurityContext: containerSecurity(false),
		Resources:       *s.Spec.Agent.Resources.DeepCopy(),
	}
	if memoryLimit != nil {
		if runner.Resources.Limits == nil {
			runner.Resources.Limits = corev1.ResourceList{}
		}
		runner.Resources.Limits[corev1.ResourceMemory] = memoryLimit.DeepCopy()
		// A request above the limit is invalid; a raised limit never lowers it.
		if req, ok := runner.Resources.Requests[corev1.ResourceMemory]; ok && req.Cmp(*memoryLimit) > 0 {
			runner.Resources.Requests[corev1.ResourceMemory] = memoryLimit.DeepCopy()
		}
	}

	initContainers := []corev1.Container{install, hydrate}
	containers := []corev1.Container{runner}
	if nativeSidecar(s) {
		// After hydrate, so the first snapshot is of the restored workspace,
		// never of an empty one.
		sync.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		initContainers = append(initContainers, sync)
	} else {
		containers = append(containers, sync)
	}

	workspaceSize := resource.MustParse(DefaultWorkspaceSize)
	if s.Spec.WorkspaceSize != nil {
		workspaceSize = s.Spec.WorkspaceSize.DeepCopy()
	}
	binSize := resource.MustParse("256Mi")
	tmpSize := resource.MustParse("1Gi")

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      PodName(s, attempt),
			Namespace: s.Namespace,
			Labels:    lbl,
		},
		Spec: corev1.PodSpec{
			// The operator, not the kubelet, restarts a dead runner: it has to
			// let the final snapshot finish, raise memory after an OOM and
			// count attempts, none of which a container restart does.
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To(int64(GracePeriod(s).Seconds())),
			InitContainers:                initContainers,
			Containers:                    containers,
			RuntimeClassName:              s.Spec.RuntimeClassName,
			ServiceAccountName:            s.Spec.ServiceAccountName,
			// tether's containers never call the Kubernetes API; only a
			// user-chosen service account (cloud IAM) gets a token.
			AutomountServiceAccountToken: ptr.To(s.Spec.ServiceAccountName != ""),
			EnableServiceLinks:           ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To(cfg.RunAsUser),
				RunAsGroup:     ptr.To(cfg.RunAsUser),
				FSGroup:        ptr.To(cfg.RunAsUser),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: []corev1.Volume{
				{Name: volumeWorkspace, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &workspaceSize}}},
				{Name: volumeTetherBin, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &binSize}}},
				{Name: volumeTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &tmpSize}}},
			},
		},
	}
	return pod
}

// runnerArgs: the agent command, if the user gave one, follows "--" so the
// runner passes it through untouched.
func runnerArgs(s *tetherv1.AgenticSession, cfg PodConfig) []string {
	args := []string{"runner", "--workspace", WorkspacePath, "--listen", fmt.Sprintf(":%d", cfg.RunnerPort)}
	if len(s.Spec.Agent.Command) > 0 || len(s.Spec.Agent.Args) > 0 {
		args = append(args, "--")
		args = append(args, s.Spec.Agent.Command...)
		args = append(args, s.Spec.Agent.Args...)
	}
	return args
}

// runnerEnv only ever references Secrets and ConfigMaps (the API rejects literal
// values); the initial prompt is the one literal, and it is the user's text.
// The runner token comes last and a user entry of the same name is dropped, so
// the runner always holds the token the operator authenticates with.
func runnerEnv(s *tetherv1.AgenticSession) []corev1.EnvVar {
	var env []corev1.EnvVar
	if s.Spec.InitialPrompt != "" {
		env = append(env, corev1.EnvVar{Name: EnvInitialPrompt, Value: s.Spec.InitialPrompt})
	}
	for _, e := range s.Spec.Agent.Env {
		if e.Name == EnvRunnerToken {
			continue
		}
		v := corev1.EnvVar{Name: e.Name, ValueFrom: &corev1.EnvVarSource{}}
		switch {
		case e.SecretKeyRef != nil:
			v.ValueFrom.SecretKeyRef = e.SecretKeyRef.DeepCopy()
		case e.ConfigMapKeyRef != nil:
			v.ValueFrom.ConfigMapKeyRef = e.ConfigMapKeyRef.DeepCopy()
		default:
			continue // rejected at admission; never turn it into a literal
		}
		env = append(env, v)
	}
	return append(env, runnerTokenEnv(s))
}

func runnerEnvFrom(s *tetherv1.AgenticSession) []corev1.EnvFromSource {
	var out []corev1.EnvFromSource
	for _, e := range s.Spec.Agent.EnvFrom {
		out = append(out, corev1.EnvFromSource{
			Prefix:    e.Prefix,
			SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: e.SecretName}},
		})
	}
	return out
}

func containerSecurity(readOnlyRoot bool) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(readOnlyRoot),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func smallResources(cpu, memReq, memLimit string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse(memReq),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLimit)},
	}
}

// BuildService returns the per-session Service in front of the runner's AG-UI
// port. It selects by session, not attempt, so its name survives restarts. It
// is headless: DNS answers with the current pod's IP, so thousands of sessions
// use no cluster IPs and add no kube-proxy rules.
func BuildService(s *tetherv1.AgenticSession, cfg PodConfig) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: sessionLabels(s)},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{LabelSession: s.Name},
			Ports: []corev1.ServicePort{{
				Name: RunnerPortName, Port: cfg.RunnerPort, TargetPort: intstr.FromString(RunnerPortName),
				Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}
