package operator

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kind is what the classifier concluded about a session pod.
type Kind int

const (
	// KindStarting: the pod exists and nothing has ended, but the runner is not running yet.
	KindStarting Kind = iota
	// KindRunning: the runner container is running.
	KindRunning
	// KindCompleted: the runner exited 0; the session's work is done.
	KindCompleted
	// KindOOM: a container was killed for memory (OOMKilled, or exit 137).
	KindOOM
	// KindError: a container exited non-zero for another reason. Retried.
	KindError
	// KindDisruption: the pod was evicted, preempted, lost with its node or
	// deleted by someone. Retried, with no memory raise.
	KindDisruption
	// KindUnrecoverable: image or configuration errors a restart cannot fix.
	// Not retried.
	KindUnrecoverable
)

func (k Kind) String() string {
	switch k {
	case KindStarting:
		return "Starting"
	case KindRunning:
		return "Running"
	case KindCompleted:
		return "Completed"
	case KindOOM:
		return "OOM"
	case KindError:
		return "Error"
	case KindDisruption:
		return "Disruption"
	case KindUnrecoverable:
		return "Unrecoverable"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Retryable reports whether a recovery should be attempted for k.
func (k Kind) Retryable() bool {
	return k == KindOOM || k == KindError || k == KindDisruption
}

// Ended reports whether k means the runner is gone for good in this pod.
func (k Kind) Ended() bool {
	return k != KindStarting && k != KindRunning
}

// Verdict is the classifier's result for one pod.
type Verdict struct {
	Kind Kind
	// Reason is a short CamelCase word for status and events: OOMKilled, Error,
	// Evicted, Preempted, NodeLost, PodDeleted, ImagePullFailed, ConfigError,
	// Completed; for KindStarting, Unschedulable or empty.
	Reason string
	// Container that ended; empty when the whole pod did.
	Container string
	ExitCode  *int32
	Message   string
	// Time the container finished or the disruption was recorded; zero if unknown.
	Time time.Time
	// Ready is true when KindRunning and the runner's readiness probe passes.
	Ready bool
}

// Waiting reasons that mean the kubelet cannot start a container and a restart
// would not help: the image or the pod's configuration must be fixed.
var unrecoverableWaiting = map[string]string{
	"ErrImagePull":               "ImagePullFailed",
	"ImagePullBackOff":           "ImagePullFailed",
	"InvalidImageName":           "ImagePullFailed",
	"ErrImageNeverPull":          "ImagePullFailed",
	"CreateContainerConfigError": "ConfigError",
	"CreateContainerError":       "ConfigError",
	"RunContainerError":          "ConfigError",
}

// disruptionReasons maps the DisruptionTarget condition's reasons to ours.
var disruptionReasons = map[string]string{
	"EvictionByEvictionAPI":  "Evicted",
	"PreemptionByScheduler":  "Preempted",
	"DeletionByTaintManager": "NodeLost",
	"DeletionByPodGC":        "NodeLost",
	"TerminationByKubelet":   "Evicted",
}

const exitSIGKILL = 137

// Classify reads every container state of a session pod (init containers,
// native sidecars and regular containers) and says what happened to it. It
// looks at containers, not at the pod phase: a sidecar keeps a pod Running
// after its runner died. A nil pod means the pod is gone (deleted by someone or
// garbage-collected with its node).
func Classify(pod *corev1.Pod) Verdict {
	if pod == nil {
		return Verdict{Kind: KindDisruption, Reason: "PodDeleted", Message: "the session's pod no longer exists"}
	}

	// Configuration and image errors first: they show as Waiting, forever.
	for _, st := range allStatuses(pod) {
		if w := st.State.Waiting; w != nil {
			if reason, ok := unrecoverableWaiting[w.Reason]; ok {
				return Verdict{Kind: KindUnrecoverable, Reason: reason, Container: st.Name,
					Message: fmt.Sprintf("container %s: %s: %s", st.Name, w.Reason, w.Message)}
			}
		}
	}

	// The kubelet or the control plane announcing a disruption wins over what
	// the containers show, because the exit codes of a killed pod (137, 143)
	// would otherwise look like an OOM or a crash.
	if c := podCondition(pod, corev1.DisruptionTarget); c != nil && c.Status == corev1.ConditionTrue {
		reason := disruptionReasons[c.Reason]
		if reason == "" {
			reason = "Disrupted"
		}
		return Verdict{Kind: KindDisruption, Reason: reason, Message: fmt.Sprintf("%s: %s", c.Reason, c.Message),
			Time: c.LastTransitionTime.Time}
	}
	if pod.Status.Phase == corev1.PodFailed {
		switch pod.Status.Reason {
		case "Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated", "NodeAffinity", "UnexpectedAdmissionError":
			reason := pod.Status.Reason
			if reason != "Evicted" && reason != "NodeLost" {
				reason = "Evicted"
			}
			return Verdict{Kind: KindDisruption, Reason: reason,
				Message: fmt.Sprintf("pod failed with reason %s: %s", pod.Status.Reason, pod.Status.Message)}
		}
	}

	// The runner: its exit decides the session.
	if st := findStatus(pod.Status.ContainerStatuses, ContainerRunner); st != nil {
		if t := st.State.Terminated; t != nil {
			return terminated(st.Name, t)
		}
	}

	// Init containers (install, hydrate) must exit 0. A native sidecar that
	// ended is restarted by the kubelet; a regular sync container that ended
	// leaves the runner unprotected, so it counts as a failure of the pod.
	for _, st := range pod.Status.InitContainerStatuses {
		if t := st.State.Terminated; t != nil && t.ExitCode != 0 && !isRestartable(pod, st.Name) {
			return terminated(st.Name, t)
		}
	}
	if st := findStatus(pod.Status.ContainerStatuses, ContainerSync); st != nil {
		if t := st.State.Terminated; t != nil {
			v := terminated(st.Name, t)
			if v.Kind == KindCompleted {
				v = Verdict{Kind: KindError, Reason: "SyncExited", Container: st.Name, ExitCode: v.ExitCode,
					Time: v.Time, Message: "the sync sidecar exited while the runner was running; snapshots stopped"}
			}
			return v
		}
	}

	if pod.DeletionTimestamp != nil {
		return Verdict{Kind: KindDisruption, Reason: "PodDeleted",
			Message: "the session's pod is being deleted", Time: pod.DeletionTimestamp.Time}
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		return Verdict{Kind: KindCompleted, Reason: "Completed", Container: ContainerRunner}
	case corev1.PodFailed:
		return Verdict{Kind: KindError, Reason: "PodFailed", Message: fmt.Sprintf("pod failed: %s %s", pod.Status.Reason, pod.Status.Message)}
	}

	if st := findStatus(pod.Status.ContainerStatuses, ContainerRunner); st != nil && st.State.Running != nil {
		return Verdict{Kind: KindRunning, Ready: st.Ready, Container: ContainerRunner, Time: st.State.Running.StartedAt.Time}
	}
	// Not started. A pod no node can take waits without an error of its
	// own: say why, or the session would look as if it were starting.
	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
		return Verdict{Kind: KindStarting, Reason: "Unschedulable", Message: c.Message, Time: c.LastTransitionTime.Time}
	}
	return Verdict{Kind: KindStarting}
}

func terminated(name string, t *corev1.ContainerStateTerminated) Verdict {
	v := Verdict{Container: name, ExitCode: &t.ExitCode, Time: t.FinishedAt.Time}
	switch {
	case t.Reason == "OOMKilled" || t.ExitCode == exitSIGKILL:
		// 137 without the OOMKilled reason happens on cgroup v1 when the
		// whole cgroup is killed; a memory raise is the safe reading.
		v.Kind, v.Reason = KindOOM, "OOMKilled"
		v.Message = fmt.Sprintf("container %s was killed (exit %d, reason %q)", name, t.ExitCode, t.Reason)
	case t.ExitCode == 0:
		v.Kind, v.Reason = KindCompleted, "Completed"
		v.Message = fmt.Sprintf("container %s exited 0", name)
	default:
		v.Kind, v.Reason = KindError, "Error"
		v.Message = fmt.Sprintf("container %s exited %d (reason %q): %s", name, t.ExitCode, t.Reason, containerMessage(t.Message))
	}
	return v
}

func allStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(pod.Status.InitContainerStatuses)+len(pod.Status.ContainerStatuses))
	out = append(out, pod.Status.InitContainerStatuses...)
	return append(out, pod.Status.ContainerStatuses...)
}

func findStatus(sts []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range sts {
		if sts[i].Name == name {
			return &sts[i]
		}
	}
	return nil
}

func isRestartable(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	return false
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// conditionTime returns t, or now when t is zero.
func conditionTime(t time.Time, now time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.NewTime(now)
	}
	return metav1.NewTime(t)
}
