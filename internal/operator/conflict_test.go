package operator

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// A status write that conflicts (someone else updated the session meanwhile)
// is recomputed from a fresh read. The pod whose container states explain the
// transition is deleted only after the write succeeded, so the retry still
// sees the OOM kill, not a vanished pod, and the restart is counted once.
func TestStatusConflictRecomputes(t *testing.T) {
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	s.Status = tetherv1.AgenticSessionStatus{Phase: tetherv1.PhaseRunning, PodName: "s1-0", StartTime: ptrTime(time.Now())}
	lim := InitialMemoryLimit(s)
	s.Status.RunnerMemoryLimit = lim
	pod := BuildPod(s, DefaultPodConfig(), 0, lim)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: initDone(),
		ContainerStatuses: []corev1.ContainerStatus{exited(ContainerRunner, 137, "OOMKilled")}}

	var statusPatches, deletesBeforeWrite int
	written := false
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(s, pod).
		WithStatusSubresource(&tetherv1.AgenticSession{}, &corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				statusPatches++
				if statusPatches == 1 {
					return apierrors.NewConflict(schema.GroupResource{Group: "tether.dev", Resource: "agenticsessions"}, obj.GetName(), nil)
				}
				err := cl.SubResource(sub).Patch(ctx, obj, patch, opts...)
				written = err == nil
				return err
			},
			Delete: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if !written {
					deletesBeforeWrite++
				}
				return cl.Delete(ctx, obj, opts...)
			},
		}).Build()
	r := &Reconciler{Client: c, APIReader: c, Scheme: scheme, Config: DefaultPodConfig()}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= 0 {
		t.Errorf("no requeue for the backoff: %+v", res)
	}
	if statusPatches != 2 || deletesBeforeWrite != 0 {
		t.Fatalf("status patches %d (want a conflict then a success), deletes before the status write %d", statusPatches, deletesBeforeWrite)
	}
	var got tetherv1.AgenticSession
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(s), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != tetherv1.PhaseRecovering || got.Status.RestartCount != 1 || got.Status.OOMCount != 1 ||
		got.Status.LastTermination == nil || got.Status.LastTermination.Reason != "OOMKilled" ||
		got.Status.RunnerMemoryLimit.String() != "3Gi" {
		t.Fatalf("status after conflict: %+v", got.Status)
	}
	err = c.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("old pod not deleted after the status write: %v", err)
	}
}

// A pod on a lost node never confirms its deletion: past its deadline plus
// podGoneBound the next pod is started anyway (it has a new name, so the two
// never collide).
func TestWaitPodGoneIsBounded(t *testing.T) {
	r := &Reconciler{}
	now := time.Now()
	deleting := func(deadline time.Time) *corev1.Pod {
		dt := metav1.NewTime(deadline)
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", DeletionTimestamp: &dt}}
	}
	if d, err := r.waitPodGone(context.Background(), nil, now); d != 0 || err != nil {
		t.Fatalf("gone pod: wait %s %v", d, err)
	}
	if d, _ := r.waitPodGone(context.Background(), deleting(now.Add(30*time.Second)), now); d <= 0 {
		t.Fatal("did not wait for a pod inside its grace period")
	}
	if d, _ := r.waitPodGone(context.Background(), deleting(now.Add(-podGoneBound+time.Second)), now); d <= 0 {
		t.Fatal("gave up before the bound")
	}
	if d, _ := r.waitPodGone(context.Background(), deleting(now.Add(-podGoneBound-time.Second)), now); d != 0 {
		t.Fatalf("still waiting %s past the bound", d)
	}
}
