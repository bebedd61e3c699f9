package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/podreport"
)

func countEvents(t *testing.T, ns, session, reason string) int {
	t.Helper()
	var list corev1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.InvolvedObject.Name == session && e.Reason == reason {
			n++
		}
	}
	return n
}

// TestPodReportsReachStatus: the hydrate's termination message (two newer
// snapshots skipped) and the native sync sidecar's previous run (exit 3,
// fenced) become status.lastRestore, the RestoredOlderSnapshot and Fenced
// conditions and one Warning event each, however often the pod changes.
func TestPodReportsReachStatus(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "rep"))
	waitPod(t, ns, "rep-0")
	hyd := podreport.EncodeHydrate(podreport.Hydrate{Outcome: "restored-older", Snapshot: "0000000004", Epoch: 5, Skipped: []podreport.Skip{
		{ID: "0000000006", Reason: "object default/rep/snapshots/0000000006 is corrupt"},
		{ID: "0000000005", Reason: "stale writer (epoch 3, fenced by epoch 4)"},
	}})
	byTime := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	fence := podreport.EncodeFence(podreport.Fence{Epoch: 5, ByEpoch: 6, ByHost: "laptop", ByVia: "hydrate", ByTime: byTime, Time: byTime.Add(time.Minute),
		Message: "session " + ns + "/rep was taken over by writer epoch 6"})
	kubelet(t, ns, "rep-0", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		h := exited(ContainerHydrate, 0, "Completed")
		h.State.Terminated.Message = string(hyd)
		sync := running(ContainerSync, true)
		sync.RestartCount = 1
		sync.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error", Message: string(fence), FinishedAt: metav1.Now()}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{exited(ContainerInstall, 0, "Completed"), h, sync}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{running(ContainerRunner, true)}
	})
	eventually(t, 20*time.Second, "lastRestore and the conditions", func() string {
		s := getSession(t, ns, "rep")
		lr := s.Status.LastRestore
		older := meta.FindStatusCondition(s.Status.Conditions, tetherv1.ConditionRestoredOlderSnapshot)
		fenced := meta.FindStatusCondition(s.Status.Conditions, tetherv1.ConditionFenced)
		if lr == nil || lr.Pod != "rep-0" || lr.Outcome != "restored-older" || lr.Snapshot != "0000000004" || lr.Epoch != 5 ||
			lr.SkippedCount != 2 || len(lr.Skipped) != 2 || lr.Skipped[1].Reason != "stale writer (epoch 3, fenced by epoch 4)" {
			return fmt.Sprintf("lastRestore %+v", lr)
		}
		if older == nil || older.Status != metav1.ConditionTrue || !strings.Contains(older.Message, "0000000006 (object") || !strings.Contains(older.Message, "0000000005 (stale") {
			return fmt.Sprintf("RestoredOlderSnapshot %+v", older)
		}
		if fenced == nil || fenced.Status != metav1.ConditionTrue || !strings.Contains(fenced.Message, "writer epoch 6 (host laptop, hydrate) took the session over at 2026-12-03T14:00:00Z") {
			return fmt.Sprintf("Fenced %+v", fenced)
		}
		return ""
	})
	assertEvent(t, ns, "rep", "RestoredOlderSnapshot")
	assertEvent(t, ns, "rep", "Fenced")
	// More pod changes: more reconciles, no more events.
	for i := 0; i < 3; i++ {
		kubelet(t, ns, "rep-0", func(p *corev1.Pod) { p.Status.InitContainerStatuses[2].RestartCount++ })
		time.Sleep(300 * time.Millisecond)
	}
	if a, b := countEvents(t, ns, "rep", "RestoredOlderSnapshot"), countEvents(t, ns, "rep", "Fenced"); a != 1 || b != 1 {
		t.Fatalf("events: %d RestoredOlderSnapshot, %d Fenced; want one each per pod", a, b)
	}
}

// TestHostilePodReportIgnored: a hydrate message that is not a valid record
// (a token-shaped id) leaves lastRestore "unreported" and nothing of it in
// the status.
func TestHostilePodReportIgnored(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	create(t, newSession(ns, "hostile"))
	waitPod(t, ns, "hostile-0")
	const tok = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
	kubelet(t, ns, "hostile-0", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		h := exited(ContainerHydrate, 0, "Completed")
		h.State.Terminated.Message = `{"kind":"hydrate","outcome":"restored-older","snapshot":"0000000001","skipped":[{"id":"` + tok + `","reason":"x"}]}`
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{exited(ContainerInstall, 0, "Completed"), h, running(ContainerSync, true)}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{running(ContainerRunner, true)}
	})
	eventually(t, 20*time.Second, "lastRestore unreported", func() string {
		s := getSession(t, ns, "hostile")
		if lr := s.Status.LastRestore; lr == nil || lr.Outcome != "unreported" || len(lr.Skipped) != 0 {
			return fmt.Sprintf("lastRestore %+v", lr)
		}
		if fmt.Sprint(s.Status) != "" && strings.Contains(fmt.Sprintf("%+v", s.Status), tok) {
			return "the token is in the status"
		}
		return ""
	})
}
