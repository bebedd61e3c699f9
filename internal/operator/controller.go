package operator

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// patch: inactivity sets spec.suspend, the same switch a user flips.
// +kubebuilder:rbac:groups=tether.dev,resources=agenticsessions,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=tether.dev,resources=agenticsessions/status,verbs=get;update;patch
// SetControllerReference sets blockOwnerDeletion, which clusters with the
// OwnerReferencesPermissionEnforcement admission plugin allow only with update on finalizers.
// +kubebuilder:rbac:groups=tether.dev,resources=agenticsessions/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// ManagedBySelector selects the pods and Services the operator creates; the
// manager's cache is restricted to it so memory does not grow with unrelated
// pods in the cluster.
const ManagedBySelector = labelManaged + "=tether-operator"

// podGoneBound is how long past a pod's deletion deadline the reconciler waits
// for it to disappear before creating the next pod anyway (a lost node never
// confirms the deletion).
const podGoneBound = 60 * time.Second

// Reconciler drives each AgenticSession through its phases:
//
//	Pending ──> Creating ──> Running ──(runner exit 0)──> Completed
//	              │  ▲          │
//	              │  │          └─(OOM, crash, eviction, node lost, pod deleted)─┐
//	              │  └──── Recovering <── restarts left, backoff, OOM: more memory ┘
//	              │            └─(no restarts left)──> Failed
//	              └─(image or config error)──> Failed
//	any non-terminal phase ─(spec.suspend)─> Suspending ─(pod gone)─> Suspended ─(!suspend)─> Creating
//
// Every reconcile first reads the current pod's container states, whatever the phase, so a
// runner that dies while the session is Running is noticed like one that dies
// while it starts.
type Reconciler struct {
	Client client.Client
	// APIReader reads around the cache, to confirm a pod is really gone before
	// acting on it and to retry on conflicts with fresh data.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Config    PodConfig
	Metrics   *Metrics
	// Observer asks running pods for the agent session id, resume outcome,
	// last activity and newest snapshot; nil: not asked (status keeps those
	// fields empty and the inactivity timeout never fires).
	Observer Observer
	// ObserveInterval is how often a Running session is observed (default 30s).
	ObserveInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the reconciler and its watches with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agenticsession").
		For(&tetherv1.AgenticSession{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Pod{}, builder.WithPredicates(podPredicate())).
		Owns(&corev1.Service{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		// A deleted or edited policy is put back on the next reconcile.
		Owns(&networkingv1.NetworkPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, concurrency)}).
		Complete(r)
}

// podPredicate passes the pod changes that can change a session's state: phase,
// any container (init, native sidecar or regular) newly running, terminated,
// restarted, waiting for a new reason or changing readiness, a DisruptionTarget
// condition, and the start of a deletion. Creates and deletes always pass.
func podPredicate() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Pod)
			n, ok2 := e.ObjectNew.(*corev1.Pod)
			return !ok1 || !ok2 || podSignature(o) != podSignature(n)
		},
	}
}

func podSignature(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%v|", p.Status.Phase, p.Status.Reason, p.DeletionTimestamp != nil)
	if c := podCondition(p, corev1.DisruptionTarget); c != nil {
		fmt.Fprintf(&b, "dt=%s|", c.Status)
	}
	for _, st := range allStatuses(p) {
		state := "none"
		switch {
		case st.State.Running != nil:
			state = "running"
		case st.State.Terminated != nil:
			state = fmt.Sprintf("terminated:%d:%s", st.State.Terminated.ExitCode, st.State.Terminated.Reason)
		case st.State.Waiting != nil:
			state = "waiting:" + st.State.Waiting.Reason
		}
		fmt.Fprintf(&b, "%s=%s:%d:%v;", st.Name, state, st.RestartCount, st.Ready)
	}
	return b.String()
}

// Reconcile implements reconcile.Reconciler. A status write that conflicts
// with a newer version is recomputed from a fresh read, so no transition is
// ever applied on top of stale state (a restart counted twice, say).
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var reader client.Reader = r.Client
	for attempt := 0; ; attempt++ {
		var s tetherv1.AgenticSession
		if err := reader.Get(ctx, req.NamespacedName, &s); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		res, err := r.step(ctx, &s)
		if apierrors.IsConflict(err) && attempt < 3 {
			reader = r.APIReader
			continue
		}
		return res, err
	}
}

// step computes one transition of s and writes its status.
func (r *Reconciler) step(ctx context.Context, s *tetherv1.AgenticSession) (ctrl.Result, error) {
	orig := s.DeepCopy()
	st := &s.Status
	now := r.now()

	pod, err := r.currentPod(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}

	if st.Phase == "" {
		st.Phase = tetherv1.PhasePending
		st.StartTime = ptrTime(now)
		st.RunnerMemoryLimit = InitialMemoryLimit(s)
	}
	st.ObservedGeneration = s.Generation

	var post []func(context.Context) error
	pctx := context.WithValue(ctx, postKey{}, &post)
	r.reportPod(pctx, s, pod)
	res, err := r.transition(pctx, s, pod, now)
	if err != nil {
		return res, err
	}
	if !equality.Semantic.DeepEqual(orig.Status, s.Status) {
		patch := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
		if err := r.Client.Status().Patch(ctx, s, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, f := range post {
		if err := f(ctx); err != nil {
			return ctrl.Result{}, err
		}
	}
	return res, nil
}

type postKey struct{}

// after runs f once the step's status write has succeeded. Actions whose
// effect would change what a retry of the step observes (deleting the pod
// whose container states explain the transition) or that must not repeat
// (counters) go here: if the write conflicts, the step is recomputed from a
// fresh read that still sees the pod as it was.
func after(ctx context.Context, f func(context.Context) error) {
	if p, ok := ctx.Value(postKey{}).(*[]func(context.Context) error); ok {
		*p = append(*p, f)
		return
	}
	_ = f(ctx)
}

// deleteAfterStatus gracefully deletes pod once the status recording why has
// been written.
func (r *Reconciler) deleteAfterStatus(ctx context.Context, pod *corev1.Pod) {
	after(ctx, func(ctx context.Context) error { return r.deletePod(ctx, pod) })
}

func (r *Reconciler) transition(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod, now time.Time) (ctrl.Result, error) {
	st := &s.Status
	switch st.Phase {
	case tetherv1.PhasePending:
		if s.Spec.Suspend {
			r.setPhase(s, tetherv1.PhaseSuspended, "Suspended", "spec.suspend is true; set it to false to start the session")
			return ctrl.Result{}, nil
		}
		return r.startPod(ctx, s, now)

	case tetherv1.PhaseCreating, tetherv1.PhaseRunning:
		if s.Spec.Suspend {
			return r.beginSuspend(ctx, s, pod)
		}
		// Never let the Service stand between a dead runner and its recovery.
		if err := r.ensureService(ctx, s); err != nil {
			log.FromContext(ctx).Error(err, "ensure service; will retry")
		}
		// Sessions whose pod predates the policy (operator upgrade) get it
		// here; an edited one is put back.
		if err := r.ensureNetworkPolicy(ctx, s); err != nil {
			log.FromContext(ctx).Error(err, "ensure network policy; will retry")
		}
		v := Classify(pod)
		switch v.Kind {
		case KindStarting:
			if v.Reason == "Unschedulable" {
				msg := fmt.Sprintf("pod %s cannot be scheduled: %s; it starts once a node fits it (lower spec.resources, or add nodes or let an autoscaler add them)", st.PodName, v.Message)
				if c := meta.FindStatusCondition(st.Conditions, tetherv1.ConditionReady); c == nil || c.Reason != "Unschedulable" {
					r.event(s, pod, corev1.EventTypeWarning, "Unschedulable", "Schedule", "%s", msg)
				}
				r.setPhase(s, tetherv1.PhaseCreating, "Unschedulable", msg)
				return ctrl.Result{}, nil
			}
			r.setPhase(s, tetherv1.PhaseCreating, "PodStarting", fmt.Sprintf("pod %s is starting (hydrate restores the workspace first)", st.PodName))
			return ctrl.Result{}, nil
		case KindRunning:
			if st.Phase != tetherv1.PhaseRunning {
				r.event(s, pod, corev1.EventTypeNormal, "RunnerStarted", "Start", "runner of pod %s is running", pod.Name)
				if c := meta.FindStatusCondition(st.Conditions, tetherv1.ConditionRecovering); c != nil && c.Status == metav1.ConditionTrue && st.LastTermination != nil {
					r.observe(func(m *Metrics) { m.RecoveryLatency.Observe(now.Sub(st.LastTermination.Time.Time).Seconds()) })
				}
			}
			st.Phase = tetherv1.PhaseRunning
			ready := metav1.ConditionFalse
			reason, msg := "RunnerNotReady", "the runner is running but not ready yet"
			if v.Ready {
				ready, reason, msg = metav1.ConditionTrue, "RunnerReady", "the runner is running and ready"
			}
			setCond(s, tetherv1.ConditionReady, ready, reason, msg)
			setCond(s, tetherv1.ConditionRecovering, metav1.ConditionFalse, "RunnerRunning", "the runner is running")
			return r.observeRunning(ctx, s, pod, now)
		case KindCompleted:
			r.recordTermination(s, pod, v, now)
			st.Phase = tetherv1.PhaseCompleted
			st.CompletionTime = ptrTime(now)
			setCond(s, tetherv1.ConditionReady, metav1.ConditionFalse, "Completed", "the runner exited 0; the session is done")
			r.event(s, pod, corev1.EventTypeNormal, "Completed", "Complete", "runner exited 0; session completed")
			// Deleting lets a regular sidecar take its final snapshot too.
			r.deleteAfterStatus(ctx, pod)
			return ctrl.Result{}, nil
		case KindUnrecoverable:
			r.recordTermination(s, pod, v, now)
			return ctrl.Result{}, r.fail(ctx, s, pod, v.Reason,
				fmt.Sprintf("%s; a restart cannot fix this: correct the image or the referenced Secrets/ConfigMaps, then delete and recreate the session (its workspace is kept in the store)", v.Message))
		default:
			return r.runnerDied(ctx, s, pod, v, now)
		}

	case tetherv1.PhaseRecovering:
		if s.Spec.Suspend {
			return r.beginSuspend(ctx, s, pod)
		}
		if wait, err := r.waitPodGone(ctx, pod, now); err != nil || wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, err
		}
		if st.NextRestartTime != nil && now.Before(st.NextRestartTime.Time) {
			return ctrl.Result{RequeueAfter: st.NextRestartTime.Sub(now)}, nil
		}
		st.NextRestartTime = nil
		return r.startPod(ctx, s, now)

	case tetherv1.PhaseSuspending:
		if wait, err := r.waitPodGone(ctx, pod, now); err != nil || wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, err
		}
		r.setPhase(s, tetherv1.PhaseSuspended, "Suspended", "the session is suspended; its workspace is in the store. Set spec.suspend to false to resume")
		r.event(s, nil, corev1.EventTypeNormal, "Suspended", "Suspend", "session suspended")
		if !s.Spec.Suspend {
			return ctrl.Result{RequeueAfter: 10 * time.Millisecond}, nil
		}
		return ctrl.Result{}, nil

	case tetherv1.PhaseSuspended:
		if s.Spec.Suspend {
			return ctrl.Result{}, nil
		}
		r.event(s, nil, corev1.EventTypeNormal, "Resuming", "Resume", "spec.suspend is false; starting a new pod")
		return r.startPod(ctx, s, now)

	case tetherv1.PhaseCompleted, tetherv1.PhaseFailed:
		// Terminal. The pod was deleted on the way in; finish that if a
		// previous attempt to delete failed.
		if pod != nil && pod.DeletionTimestamp == nil {
			return ctrl.Result{}, r.deletePod(ctx, pod)
		}
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, nil
}

// observeRunning copies what the pod reports into the status and suspends a
// session idle for longer than spec.inactivityTimeout.
func (r *Reconciler) observeRunning(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod, now time.Time) (ctrl.Result, error) {
	if r.Observer == nil {
		return ctrl.Result{}, nil
	}
	interval := r.ObserveInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	st := &s.Status
	obs, err := r.Observer.Observe(ctx, pod)
	if err != nil {
		log.FromContext(ctx).V(1).Info("observe failed; keeping the last known values", "error", err.Error())
	}
	if obs.AgentSessionID != "" {
		st.AgentSessionID = obs.AgentSessionID
	}
	if obs.ResumeOutcome != "" {
		st.LastResumeOutcome = obs.ResumeOutcome
	}
	if obs.SnapshotID != "" {
		st.LastSnapshot = &tetherv1.SnapshotRef{ID: obs.SnapshotID, Time: metav1.NewTime(obs.SnapshotTime.Truncate(time.Second)),
			LeftOut: obs.SnapshotLeftOut, ReposAsFiles: obs.SnapshotReposAsFiles}
	}
	timeout := time.Duration(0)
	if s.Spec.InactivityTimeout != nil {
		timeout = s.Spec.InactivityTimeout.Duration
	}
	activity := obs.LastActivity
	if obs.TurnOpen {
		activity = now
	}
	// Record activity coarsely: a status write per probe per busy session
	// would be most of the operator's API traffic at scale.
	grain := time.Minute
	if timeout > 0 && timeout/10 < grain {
		grain = timeout / 10
	}
	if last := st.LastActivityTime; last == nil || activity.Sub(last.Time) >= grain {
		if !activity.IsZero() {
			st.LastActivityTime = ptrTime(activity.Truncate(time.Second))
		}
	}
	if timeout > 0 && !obs.TurnOpen && st.LastActivityTime != nil && now.Sub(st.LastActivityTime.Time) > timeout {
		patch := client.MergeFrom(s.DeepCopy())
		s.Spec.Suspend = true
		if err := r.Client.Patch(ctx, s, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("session %s/%s: suspend after inactivity: %w", s.Namespace, s.Name, err)
		}
		r.event(s, pod, corev1.EventTypeNormal, "InactivitySuspend", "Suspend",
			"no runner activity since %s (spec.inactivityTimeout %s); set spec.suspend=true. Set it to false to resume",
			st.LastActivityTime.UTC().Format(time.RFC3339), timeout)
		return r.beginSuspend(ctx, s, pod)
	}
	next := interval
	if timeout > 0 && st.LastActivityTime != nil {
		if due := st.LastActivityTime.Add(timeout).Sub(now) + time.Second; due > 0 && due < next {
			next = due
		}
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// runnerDied handles a retryable death: Failed when attempts are exhausted,
// otherwise Recovering with backoff and, after an OOM of the runner, more memory.
func (r *Reconciler) runnerDied(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod, v Verdict, now time.Time) (ctrl.Result, error) {
	st := &s.Status
	r.recordTermination(s, pod, v, now)
	if !v.Time.IsZero() {
		after(ctx, func(context.Context) error {
			r.observe(func(m *Metrics) { m.DetectionLatency.Observe(now.Sub(v.Time).Seconds()) })
			return nil
		})
	}
	limit := MaxRestarts(s)
	if st.RestartCount >= limit {
		what := "raise spec.recovery.maxRestarts, or find out why it keeps dying (kubectl describe, the runner's logs)"
		if v.Kind == KindOOM {
			what = "raise spec.agent.resources.limits.memory or spec.recovery.memoryCeiling (the limit was " + quantityString(st.LastTermination.MemoryLimit) + ")"
		}
		return ctrl.Result{}, r.fail(ctx, s, pod, "RestartsExhausted", fmt.Sprintf(
			"%s (%s); the session was already restarted %d times, the limit set by spec.recovery.maxRestarts=%d. The workspace is in the last snapshot: %s, then delete and recreate the session to resume",
			v.Message, v.Reason, st.RestartCount, limit, what))
	}

	st.RestartCount++
	bumped := ""
	if v.Kind == KindOOM && v.Container == ContainerRunner {
		st.OOMCount++
		if cur := st.RunnerMemoryLimit; cur != nil {
			next := BumpMemory(*cur, oomFactor(s), MemoryCeiling(s))
			bumped = fmt.Sprintf("; memory limit %s -> %s", cur.String(), next.String())
			st.RunnerMemoryLimit = &next
		}
	}
	wait := Backoff(s, st.RestartCount)
	st.NextRestartTime = ptrTime(now.Add(wait))
	st.Phase = tetherv1.PhaseRecovering
	msg := fmt.Sprintf("%s; restart %d of %d in %s after the pod's final snapshot%s", v.Message, st.RestartCount, limit, wait, bumped)
	setCond(s, tetherv1.ConditionReady, metav1.ConditionFalse, v.Reason, msg)
	setCond(s, tetherv1.ConditionRecovering, metav1.ConditionTrue, v.Reason, msg)
	r.event(s, pod, corev1.EventTypeWarning, "RunnerDied", "Recover", "%s", msg)
	after(ctx, func(context.Context) error {
		r.observe(func(m *Metrics) { m.Recoveries.WithLabelValues(v.Reason).Inc() })
		return nil
	})
	// A graceful delete: the sync sidecar gets SIGTERM and the grace period
	// for its final snapshot (a native sidecar already got it when the runner
	// exited; deleting then changes nothing for it).
	r.deleteAfterStatus(ctx, pod)
	return ctrl.Result{RequeueAfter: wait}, nil
}

func (r *Reconciler) fail(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod, reason, msg string) error {
	s.Status.Phase = tetherv1.PhaseFailed
	s.Status.CompletionTime = ptrTime(r.now())
	s.Status.NextRestartTime = nil
	setCond(s, tetherv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCond(s, tetherv1.ConditionRecovering, metav1.ConditionFalse, reason, "no further restarts")
	setCond(s, tetherv1.ConditionFailed, metav1.ConditionTrue, reason, msg)
	r.event(s, pod, corev1.EventTypeWarning, "Failed", "Fail", "%s", msg)
	after(ctx, func(context.Context) error {
		r.observe(func(m *Metrics) { m.Failures.WithLabelValues(reason).Inc() })
		return nil
	})
	r.deleteAfterStatus(ctx, pod)
	return nil
}

func (r *Reconciler) beginSuspend(ctx context.Context, s *tetherv1.AgenticSession, pod *corev1.Pod) (ctrl.Result, error) {
	s.Status.NextRestartTime = nil
	r.setPhase(s, tetherv1.PhaseSuspending, "Suspending", "spec.suspend is true; the pod is stopping after a final snapshot")
	setCond(s, tetherv1.ConditionRecovering, metav1.ConditionFalse, "Suspending", "suspended sessions are not restarted")
	r.event(s, pod, corev1.EventTypeNormal, "Suspending", "Suspend", "spec.suspend is true; stopping the pod after its final snapshot")
	r.deleteAfterStatus(ctx, pod)
	return ctrl.Result{RequeueAfter: time.Second}, nil
}

// startPod creates the pod for the current attempt and moves to Creating. The
// name is deterministic, so a retry after a failed status write finds the pod
// it created instead of making a second one.
func (r *Reconciler) startPod(ctx context.Context, s *tetherv1.AgenticSession, now time.Time) (ctrl.Result, error) {
	// The Service only gives the runner a stable name; a failure to create it
	// must not keep the session from running. It is retried on every reconcile
	// while the session is Creating or Running.
	if err := r.ensureService(ctx, s); err != nil {
		r.event(s, nil, corev1.EventTypeWarning, "ServiceCreateFailed", "Create", "%v", err)
	}
	// The runner's fences go up before the runner: no pod ever starts
	// without its token or reachable by the whole cluster. Neither error
	// carries the token.
	if err := r.ensureRunnerToken(ctx, s); err != nil {
		r.event(s, nil, corev1.EventTypeWarning, "RunnerTokenFailed", "Create", "%v", err)
		return ctrl.Result{}, err
	}
	if err := r.ensureNetworkPolicy(ctx, s); err != nil {
		r.event(s, nil, corev1.EventTypeWarning, "NetworkPolicyFailed", "Create", "%v", err)
		return ctrl.Result{}, err
	}
	pod := BuildPod(s, r.Config, s.Status.RestartCount, s.Status.RunnerMemoryLimit)
	if err := controllerutil.SetControllerReference(s, pod, r.Scheme); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		r.event(s, nil, corev1.EventTypeWarning, "PodCreateFailed", "Create", "creating pod %s: %v", pod.Name, err)
		return ctrl.Result{}, fmt.Errorf("session %s/%s: create pod %s: %w", s.Namespace, s.Name, pod.Name, err)
	}
	s.Status.PodName = pod.Name
	// A (re)started session is active now: the inactivity clock starts over.
	s.Status.LastActivityTime = ptrTime(now.Truncate(time.Second))
	r.setPhase(s, tetherv1.PhaseCreating, "PodCreated", fmt.Sprintf("pod %s created; hydrate restores the workspace, then the runner starts", pod.Name))
	r.event(s, pod, corev1.EventTypeNormal, "PodCreated", "Create", "created pod %s (attempt %d, runner memory limit %s)",
		pod.Name, s.Status.RestartCount, quantityString(s.Status.RunnerMemoryLimit))
	return ctrl.Result{}, nil
}

// currentPod returns the session's current pod, or nil when it has none or the
// pod is gone. A NotFound from the cache is confirmed against the API server,
// because a just-created pod may not be in the cache yet and must not be taken
// for a deleted one.
func (r *Reconciler) currentPod(ctx context.Context, s *tetherv1.AgenticSession) (*corev1.Pod, error) {
	if s.Status.PodName == "" {
		return nil, nil
	}
	key := types.NamespacedName{Namespace: s.Namespace, Name: s.Status.PodName}
	var pod corev1.Pod
	err := r.Client.Get(ctx, key, &pod)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, &pod)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("session %s/%s: get pod %s: %w", s.Namespace, s.Name, key.Name, err)
	}
	return &pod, nil
}

// waitPodGone deletes pod if needed and says how long to wait before checking
// again; 0 means it is gone, finished, or past the bound for a pod whose node
// will never confirm the deletion.
func (r *Reconciler) waitPodGone(ctx context.Context, pod *corev1.Pod, now time.Time) (time.Duration, error) {
	if pod == nil {
		return 0, nil
	}
	if pod.DeletionTimestamp == nil {
		if err := r.deletePod(ctx, pod); err != nil {
			return 0, err
		}
		return 2 * time.Second, nil
	}
	// The deletion timestamp is the deadline the kubelet has to stop the pod
	// (now + grace at deletion time).
	if now.After(pod.DeletionTimestamp.Add(podGoneBound)) {
		return 0, nil
	}
	return 2 * time.Second, nil
}

func (r *Reconciler) deletePod(ctx context.Context, pod *corev1.Pod) error {
	if pod == nil || pod.DeletionTimestamp != nil {
		return nil
	}
	err := r.Client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func (r *Reconciler) ensureService(ctx context.Context, s *tetherv1.AgenticSession) error {
	var svc corev1.Service
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, &svc)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	want := BuildService(s, r.Config)
	if err := controllerutil.SetControllerReference(s, want, r.Scheme); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("session %s/%s: create service: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// recordTermination writes status.lastTermination from a verdict, with the
// memory limit the pod's runner actually had.
func (r *Reconciler) recordTermination(s *tetherv1.AgenticSession, pod *corev1.Pod, v Verdict, now time.Time) {
	t := &tetherv1.Termination{
		Pod:       s.Status.PodName,
		Container: v.Container,
		Reason:    v.Reason,
		Message:   v.Message,
		ExitCode:  v.ExitCode,
		Time:      conditionTime(v.Time, now),
	}
	if pod != nil {
		for _, c := range pod.Spec.Containers {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; c.Name == ContainerRunner && ok {
				t.MemoryLimit = &q
			}
		}
	} else if s.Status.RunnerMemoryLimit != nil {
		q := s.Status.RunnerMemoryLimit.DeepCopy()
		t.MemoryLimit = &q
	}
	s.Status.LastTermination = t
}

func (r *Reconciler) setPhase(s *tetherv1.AgenticSession, p tetherv1.SessionPhase, reason, msg string) {
	s.Status.Phase = p
	setCond(s, tetherv1.ConditionReady, metav1.ConditionFalse, reason, msg)
}

func (r *Reconciler) event(s *tetherv1.AgenticSession, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	if p, ok := related.(*corev1.Pod); ok && p == nil {
		related = nil
	}
	r.Recorder.Eventf(s, related, eventtype, reason, action, note, args...)
	log.Log.WithName("agenticsession").V(1).Info(fmt.Sprintf(note, args...), "session", s.Namespace+"/"+s.Name, "reason", reason)
}

func (r *Reconciler) observe(f func(*Metrics)) {
	if r.Metrics != nil {
		f(r.Metrics)
	}
}

func setCond(s *tetherv1.AgenticSession, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: s.Generation,
	})
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

func quantityString(q *resource.Quantity) string {
	if q == nil {
		return "none"
	}
	return q.String()
}
