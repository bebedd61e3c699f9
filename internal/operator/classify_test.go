package operator

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func running(name string, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Ready: ready,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}}}
}

func exited(name string, code int32, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, FinishedAt: metav1.NewTime(t0.Add(time.Minute))}}}
}

func waiting(name, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "boom"}}}
}

// sessionPod is a pod as BuildPod makes it, with the statuses a kubelet would write.
func sessionPod(native bool, phase corev1.PodPhase, init, main []corev1.ContainerStatus, conds ...corev1.PodCondition) *corev1.Pod {
	s := testSession()
	s.Spec.Sync.NativeSidecar = ptr.To(native)
	pod := BuildPod(s, DefaultPodConfig(), 0, nil)
	pod.Status = corev1.PodStatus{Phase: phase, InitContainerStatuses: init, ContainerStatuses: main, Conditions: conds}
	return pod
}

func initDone() []corev1.ContainerStatus {
	return []corev1.ContainerStatus{exited(ContainerInstall, 0, "Completed"), exited(ContainerHydrate, 0, "Completed"), running(ContainerSync, true)}
}

func TestClassify(t *testing.T) {
	disruption := func(reason string) corev1.PodCondition {
		return corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: reason, LastTransitionTime: metav1.NewTime(t0)}
	}
	deleting := sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{running(ContainerRunner, true)})
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(t0))

	cases := []struct {
		name      string
		pod       *corev1.Pod
		kind      Kind
		reason    string
		container string
		exit      int32
	}{
		{"pod gone", nil, KindDisruption, "PodDeleted", "", -1},
		{"pending, nothing started", sessionPod(true, corev1.PodPending, nil, nil), KindStarting, "", "", -1},
		{"hydrating", sessionPod(true, corev1.PodPending, []corev1.ContainerStatus{exited(ContainerInstall, 0, "Completed"), running(ContainerHydrate, false)}, nil), KindStarting, "", "", -1},
		{"running not ready", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{running(ContainerRunner, false)}), KindRunning, "", ContainerRunner, -1},
		// The case the reference platform missed: pod phase Running, sidecar
		// alive, runner dead of OOM.
		{"runner OOMKilled, native sidecar still running", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{exited(ContainerRunner, 137, "OOMKilled")}), KindOOM, "OOMKilled", ContainerRunner, 137},
		{"runner OOMKilled, regular sidecar still running", sessionPod(false, corev1.PodRunning, initDone()[:2], []corev1.ContainerStatus{exited(ContainerRunner, 137, "OOMKilled"), running(ContainerSync, true)}), KindOOM, "OOMKilled", ContainerRunner, 137},
		{"runner 137 without reason (cgroup v1)", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{exited(ContainerRunner, 137, "Error")}), KindOOM, "OOMKilled", ContainerRunner, 137},
		{"runner crashed", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{exited(ContainerRunner, 2, "Error")}), KindError, "Error", ContainerRunner, 2},
		{"runner clean exit", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{exited(ContainerRunner, 0, "Completed")}), KindCompleted, "Completed", ContainerRunner, 0},
		{"pod succeeded after clean exit", sessionPod(true, corev1.PodSucceeded, []corev1.ContainerStatus{exited(ContainerInstall, 0, ""), exited(ContainerHydrate, 0, ""), exited(ContainerSync, 0, "")}, []corev1.ContainerStatus{exited(ContainerRunner, 0, "Completed")}), KindCompleted, "Completed", ContainerRunner, 0},
		{"hydrate failed", sessionPod(true, corev1.PodFailed, []corev1.ContainerStatus{exited(ContainerInstall, 0, ""), exited(ContainerHydrate, 1, "Error")}, nil), KindError, "Error", ContainerHydrate, 1},
		{"hydrate OOMKilled", sessionPod(true, corev1.PodFailed, []corev1.ContainerStatus{exited(ContainerInstall, 0, ""), exited(ContainerHydrate, 137, "OOMKilled")}, nil), KindOOM, "OOMKilled", ContainerHydrate, 137},
		// A native sidecar that crashed is restarted by the kubelet; not a session failure.
		{"native sync crashed, runner fine", sessionPod(true, corev1.PodRunning, append(initDone()[:2], exited(ContainerSync, 1, "Error")), []corev1.ContainerStatus{running(ContainerRunner, true)}), KindRunning, "", ContainerRunner, -1},
		{"regular sync exited, runner fine", sessionPod(false, corev1.PodRunning, initDone()[:2], []corev1.ContainerStatus{running(ContainerRunner, true), exited(ContainerSync, 0, "Completed")}), KindError, "SyncExited", ContainerSync, 0},
		{"agent image pull error", sessionPod(true, corev1.PodPending, initDone(), []corev1.ContainerStatus{waiting(ContainerRunner, "ImagePullBackOff")}), KindUnrecoverable, "ImagePullFailed", ContainerRunner, -1},
		{"tether image invalid", sessionPod(true, corev1.PodPending, []corev1.ContainerStatus{waiting(ContainerInstall, "InvalidImageName")}, nil), KindUnrecoverable, "ImagePullFailed", ContainerInstall, -1},
		{"missing secret", sessionPod(true, corev1.PodPending, initDone(), []corev1.ContainerStatus{waiting(ContainerRunner, "CreateContainerConfigError")}), KindUnrecoverable, "ConfigError", ContainerRunner, -1},
		{"crash loop back-off is not a config error", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{waiting(ContainerRunner, "ContainerCreating")}), KindStarting, "", "", -1},
		// Disruptions: exit codes of a killed pod must not read as OOM.
		{"evicted via API, runner SIGKILLed", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{exited(ContainerRunner, 137, "Error")}, disruption("EvictionByEvictionAPI")), KindDisruption, "Evicted", "", -1},
		{"preempted", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{running(ContainerRunner, true)}, disruption("PreemptionByScheduler")), KindDisruption, "Preempted", "", -1},
		{"node lost (taint manager)", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{running(ContainerRunner, true)}, disruption("DeletionByTaintManager")), KindDisruption, "NodeLost", "", -1},
		{"kubelet eviction (pod phase)", func() *corev1.Pod {
			p := sessionPod(true, corev1.PodFailed, initDone(), []corev1.ContainerStatus{exited(ContainerRunner, 137, "Error")})
			p.Status.Reason = "Evicted"
			return p
		}(), KindDisruption, "Evicted", "", -1},
		{"disruption condition false is ignored", sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{running(ContainerRunner, true)},
			corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionFalse}), KindRunning, "", ContainerRunner, -1},
		{"pod being deleted by someone", deleting, KindDisruption, "PodDeleted", "", -1},
		{"no node fits the pod", sessionPod(true, corev1.PodPending, nil, nil,
			corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient memory."}), KindStarting, "Unschedulable", "", -1},
		{"scheduled, still starting", sessionPod(true, corev1.PodPending, nil, nil,
			corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}), KindStarting, "", "", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Classify(tc.pod)
			if v.Kind != tc.kind || v.Reason != tc.reason || v.Container != tc.container {
				t.Fatalf("got %s/%q container %q (%s), want %s/%q container %q", v.Kind, v.Reason, v.Container, v.Message, tc.kind, tc.reason, tc.container)
			}
			if tc.exit >= 0 && (v.ExitCode == nil || *v.ExitCode != tc.exit) {
				t.Fatalf("exit code %v, want %d", v.ExitCode, tc.exit)
			}
			if v.Kind.Ended() && v.Kind != KindCompleted && v.Message == "" {
				t.Fatalf("no message for %s", v.Kind)
			}
		})
	}
}

func TestKindRetryable(t *testing.T) {
	for k, want := range map[Kind]bool{KindOOM: true, KindError: true, KindDisruption: true,
		KindUnrecoverable: false, KindCompleted: false, KindRunning: false, KindStarting: false} {
		if k.Retryable() != want {
			t.Errorf("%s retryable = %v", k, !want)
		}
	}
}

func TestBackoff(t *testing.T) {
	s := testSession()
	s.Spec.Recovery.InitialBackoff = &metav1.Duration{Duration: 10 * time.Second}
	s.Spec.Recovery.MaxBackoff = &metav1.Duration{Duration: time.Minute}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := Backoff(s, int32(i+1)); got != w {
			t.Errorf("restart %d: %s, want %s", i+1, got, w)
		}
	}
	if got := Backoff(s, 1000); got != time.Minute {
		t.Errorf("restart 1000: %s (overflow?)", got)
	}
	s.Spec.Recovery = tetherv1.RecoverySpec{}
	if got := Backoff(s, 1); got != DefaultInitialBackoff {
		t.Errorf("default %s", got)
	}
}

func TestBumpMemory(t *testing.T) {
	q := resource.MustParse
	cases := []struct {
		cur     string
		factor  float64
		ceiling string
		want    string
	}{
		{"2Gi", 1.5, "", "3Gi"},
		{"2Gi", 1.5, "2500Mi", "2500Mi"},
		{"3Gi", 1.5, "3Gi", "3Gi"},   // at the ceiling: stays
		{"1000M", 1.2, "", "1145Mi"}, // rounded up to a whole MiB
		{"4Gi", 1.5, "2Gi", "4Gi"},   // never lowered
	}
	for _, tc := range cases {
		var ceil *resource.Quantity
		if tc.ceiling != "" {
			c := q(tc.ceiling)
			ceil = &c
		}
		got := BumpMemory(q(tc.cur), tc.factor, ceil)
		if want := q(tc.want); got.Cmp(want) != 0 {
			t.Errorf("bump %s x%v ceil %q = %s, want %s", tc.cur, tc.factor, tc.ceiling, got.String(), tc.want)
		}
	}
	s := testSession()
	if c := MemoryCeiling(s); c == nil || c.Cmp(q("8Gi")) != 0 {
		t.Errorf("default ceiling %v, want 4x the initial 2Gi", c)
	}
}

func TestPodPredicate(t *testing.T) {
	base := sessionPod(true, corev1.PodRunning, initDone(), []corev1.ContainerStatus{running(ContainerRunner, true)})
	p := podPredicate()
	changed := func(mutate func(*corev1.Pod)) bool {
		n := base.DeepCopy()
		mutate(n)
		return p.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: n})
	}
	triggers := map[string]func(*corev1.Pod){
		"runner terminated, phase unchanged": func(n *corev1.Pod) {
			n.Status.ContainerStatuses[0] = exited(ContainerRunner, 137, "OOMKilled")
		},
		"native sidecar restarted": func(n *corev1.Pod) { n.Status.InitContainerStatuses[2].RestartCount = 1 },
		"init container terminated": func(n *corev1.Pod) {
			n.Status.InitContainerStatuses[1] = exited(ContainerHydrate, 1, "Error")
		},
		"readiness changed": func(n *corev1.Pod) { n.Status.ContainerStatuses[0].Ready = false },
		"phase changed":     func(n *corev1.Pod) { n.Status.Phase = corev1.PodFailed },
		"disruption target": func(n *corev1.Pod) {
			n.Status.Conditions = append(n.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue})
		},
		"deletion started": func(n *corev1.Pod) { n.DeletionTimestamp = ptr.To(metav1.Now()) },
		"image pull waiting": func(n *corev1.Pod) {
			n.Status.ContainerStatuses[0] = waiting(ContainerRunner, "ImagePullBackOff")
		},
	}
	for name, m := range triggers {
		if !changed(m) {
			t.Errorf("%s: no reconcile", name)
		}
	}
	quiet := map[string]func(*corev1.Pod){
		"annotation": func(n *corev1.Pod) { n.Annotations = map[string]string{"x": "y"} },
		"pod IP":     func(n *corev1.Pod) { n.Status.PodIP = "10.0.0.9" },
		"other condition": func(n *corev1.Pod) {
			n.Status.Conditions = append(n.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
		},
	}
	for name, m := range quiet {
		if changed(m) {
			t.Errorf("%s: reconciles for nothing", name)
		}
	}
	if !p.Delete(event.DeleteEvent{Object: base}) || !p.Create(event.CreateEvent{Object: base}) {
		t.Error("create/delete filtered")
	}
}
