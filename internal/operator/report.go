package operator

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/cliutil"
	"github.com/tether-dev/tether/internal/podreport"
)

// Bounds of what a pod's report may put into the status and its events.
const (
	maxStatusSkipped = 10
	maxSkipReason    = 256
	maxCondMessage   = 2048
	// maxEventNote: events.k8s.io refuses a note over 1 kB.
	maxEventNote = 1000
)

// reportPod copies into the status what the pod's hydrate and sync left in
// their termination messages (internal/podreport): the restore, once per pod,
// and a fenced sync. The messages come from the user's pod and are parsed as
// hostile input; one that is not a valid report is ignored with a log line.
// Events go out only once the status recording them is written (after), so
// a retried step does not repeat them.
func (r *Reconciler) reportPod(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod) {
	if pod == nil {
		return
	}
	if hs := findStatus(pod.Status.InitContainerStatuses, ContainerHydrate); hs != nil {
		if t := hs.State.Terminated; t != nil && t.ExitCode == 0 && (s.Status.LastRestore == nil || s.Status.LastRestore.Pod != pod.Name) {
			r.recordRestore(ctx, s, pod, t)
		}
	}
	if f := fenceRecord(ctx, pod); f != nil {
		r.recordFence(ctx, s, pod, f)
	}
}

func (r *Reconciler) recordRestore(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod, t *corev1.ContainerStateTerminated) {
	rep := &tetherv1.RestoreReport{Pod: pod.Name, Outcome: "unreported"}
	if !t.FinishedAt.IsZero() {
		rep.Time = t.FinishedAt.DeepCopy()
	}
	if h := parseHydrate(ctx, pod, t.Message); h != nil {
		rep.Outcome, rep.Snapshot, rep.Epoch = h.Outcome, h.Snapshot, int64(h.Epoch)
		for i, sk := range h.Skipped {
			if i == maxStatusSkipped {
				break
			}
			rep.Skipped = append(rep.Skipped, tetherv1.SkippedSnapshot{ID: sk.ID, Reason: podreport.Clean(sk.Reason, maxSkipReason)})
		}
		rep.SkippedCount = int32(min(len(h.Skipped)+h.Omitted, math.MaxInt32))
	}
	s.Status.LastRestore = rep

	// A new pod hydrated: it took the session's newest writer epoch, so an
	// earlier pod's fencing is history (its events keep it).
	if c := meta.FindStatusCondition(s.Status.Conditions, tetherv1.ConditionFenced); c != nil && c.Status == metav1.ConditionTrue {
		setCond(s, tetherv1.ConditionFenced, metav1.ConditionFalse, "NewWriter",
			fmt.Sprintf("pod %s hydrated the workspace and is the session's writer now", pod.Name))
	}

	switch rep.Outcome {
	case "restored-older":
		msg := restoredOlderMessage(rep)
		setCond(s, tetherv1.ConditionRestoredOlderSnapshot, metav1.ConditionTrue, "SkippedNewerSnapshots", msg)
		after(ctx, func(context.Context) error {
			r.event(s, pod, corev1.EventTypeWarning, "RestoredOlderSnapshot", "Hydrate", "%s", clipText(msg, maxEventNote))
			return nil
		})
	case "unreported":
		setCond(s, tetherv1.ConditionRestoredOlderSnapshot, metav1.ConditionUnknown, "NoReport",
			fmt.Sprintf("the hydrate of pod %s left no readable report, so whether it restored the newest snapshot is not known; its log says (kubectl logs %s -c %s)", pod.Name, pod.Name, ContainerHydrate))
	default:
		what := map[string]string{
			"restored": "restored the newest snapshot, " + rep.Snapshot,
			"fresh":    "started a fresh workspace: the session has no snapshot",
			"kept":     "kept the workspace already hydrated in this pod",
		}[rep.Outcome]
		setCond(s, tetherv1.ConditionRestoredOlderSnapshot, metav1.ConditionFalse, "RestoredNewest",
			fmt.Sprintf("the hydrate of pod %s %s", pod.Name, what))
	}
}

// restoredOlderMessage names the restored snapshot and every skipped one the
// status holds, with why, and what the user can do.
func restoredOlderMessage(rep *tetherv1.RestoreReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the hydrate of pod %s restored snapshot %s, not the newest: it skipped %d newer snapshot(s): ", rep.Pod, rep.Snapshot, rep.SkippedCount)
	for i, sk := range rep.Skipped {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s)", sk.ID, sk.Reason)
	}
	if more := int(rep.SkippedCount) - len(rep.Skipped); more > 0 {
		fmt.Fprintf(&b, "; and %d more", more)
	}
	fmt.Fprintf(&b, ". Work saved after %s is not in this workspace; `tether snapshot ls` shows each snapshot and its damage, `tether snapshot restore --snapshot ID --target DIR` gets what is readable of a skipped one", rep.Snapshot)
	return clipText(b.String(), maxCondMessage)
}

// parseHydrate returns the hydrate record in msg, or nil (logged) when msg
// is empty or not one.
func parseHydrate(ctx context.Context, pod *corev1.Pod, msg string) *podreport.Hydrate {
	rec, err := podreport.Parse(msg)
	h, ok := rec.(*podreport.Hydrate)
	if err == nil && rec != nil && !ok {
		err = fmt.Errorf("a %T record, not a hydrate record", rec)
	}
	if err != nil || (rec == nil && msg != "") {
		log.FromContext(ctx).Info("ignoring the termination message of a hydrate container: not a valid report",
			"pod", pod.Namespace+"/"+pod.Name, "bytes", len(msg), "error", err)
	}
	return h
}

// fenceRecord returns the fence record of the pod's sync container when it
// exited ExitFenced, now or in its previous run (a native sidecar is
// restarted by the kubelet), or nil.
func fenceRecord(ctx context.Context, pod *corev1.Pod) *podreport.Fence {
	st := findStatus(pod.Status.InitContainerStatuses, ContainerSync)
	if st == nil {
		st = findStatus(pod.Status.ContainerStatuses, ContainerSync)
	}
	if st == nil {
		return nil
	}
	for _, t := range []*corev1.ContainerStateTerminated{st.State.Terminated, st.LastTerminationState.Terminated} {
		if t == nil || t.ExitCode != cliutil.ExitFenced {
			continue
		}
		rec, err := podreport.Parse(t.Message)
		if f, ok := rec.(*podreport.Fence); ok && err == nil {
			return f
		}
		log.FromContext(ctx).Info("ignoring the termination message of a sync container that exited fenced: not a valid report",
			"pod", pod.Namespace+"/"+pod.Name, "bytes", len(t.Message), "error", err)
	}
	return nil
}

// recordFence sets the Fenced condition; the message, and so the event, is
// the same for every restart of one pod's sync fenced by one writer.
func (r *Reconciler) recordFence(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod, f *podreport.Fence) {
	by := fmt.Sprintf("writer epoch %d", f.ByEpoch)
	var about []string
	if f.ByHost != "" {
		about = append(about, "host "+f.ByHost)
	}
	if f.ByVia != "" {
		about = append(about, f.ByVia)
	}
	if len(about) > 0 {
		by += " (" + strings.Join(about, ", ") + ")"
	}
	when := "at a time it did not record"
	if !f.ByTime.IsZero() {
		when = "at " + f.ByTime.UTC().Format(time.RFC3339) + " by its clock"
	}
	msg := fmt.Sprintf("the sync of pod %s stopped saving: %s took the session over %s; this pod saved as writer epoch %d. "+
		"Nothing this pod changes from now on is saved; the session's work continues with the new writer. "+
		"If you did not start that writer, stop it and delete pod %s: the next pod hydrates the newest snapshot and becomes the writer",
		pod.Name, by, when, f.Epoch, pod.Name)
	msg = clipText(msg, maxCondMessage)
	if c := meta.FindStatusCondition(s.Status.Conditions, tetherv1.ConditionFenced); c != nil && c.Status == metav1.ConditionTrue && c.Message == msg {
		return
	}
	setCond(s, tetherv1.ConditionFenced, metav1.ConditionTrue, "TakenOver", msg)
	after(ctx, func(context.Context) error {
		r.event(s, pod, corev1.EventTypeWarning, "Fenced", "Sync", "%s", clipText(msg, maxEventNote))
		return nil
	})
}

// containerMessage is what of a container's termination message goes into
// the status: the human line of a tether report, else the text made safe.
func containerMessage(msg string) string {
	if rec, err := podreport.Parse(msg); err == nil {
		switch v := rec.(type) {
		case *podreport.Fence:
			return v.Message
		case *podreport.Hydrate:
			return "hydrate: " + v.Outcome
		}
	}
	return podreport.Clean(msg, 1024)
}

func clipText(s string, n int) string { return podreport.Clean(s, n) }
