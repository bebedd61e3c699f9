package operator

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tether-dev/tether/internal/runner"
)

func serve(t *testing.T, h http.HandlerFunc) int32 {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return int32(p)
}

func TestHTTPObserver(t *testing.T) {
	runnerPort := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		// The runner's own type, so a renamed JSON field breaks this test.
		json.NewEncoder(w).Encode(runner.Status{Thread: "main", State: runner.StateReady, SessionID: "6c1f-uuid",
			Resume: runner.ResumeStatus{Outcome: runner.ResumeResumed, PreviousID: "6c1f-uuid"}, Turns: 3, TurnOpen: true,
			UpdatedAt: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)})
	})
	syncPort := serve(t, func(w http.ResponseWriter, r *http.Request) {
		// Saves failing right now: 503, but the last good snapshot is still news.
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"lastSnapshot":"0007","lastSuccess":"2026-11-24T09:59:00Z","error":"store unreachable"}`))
	})
	pod := &corev1.Pod{Status: corev1.PodStatus{PodIP: "127.0.0.1"}}
	o := &HTTPObserver{RunnerPort: runnerPort, SyncPort: syncPort}
	obs, err := o.Observe(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	want := Observation{AgentSessionID: "6c1f-uuid", ResumeOutcome: "resumed", TurnOpen: true,
		LastActivity: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), SnapshotID: "0007",
		SnapshotTime: time.Date(2026, 11, 24, 9, 59, 0, 0, time.UTC)}
	if !obs.LastActivity.Equal(want.LastActivity) || !obs.SnapshotTime.Equal(want.SnapshotTime) {
		t.Fatalf("times %v %v", obs.LastActivity, obs.SnapshotTime)
	}
	obs.LastActivity, obs.SnapshotTime, want.LastActivity, want.SnapshotTime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if obs != want {
		t.Fatalf("got %+v\nwant %+v", obs, want)
	}

	// Nothing listening: an error naming the pod, no panic, zero values.
	dead := &HTTPObserver{RunnerPort: 1, SyncPort: 1}
	if _, err := dead.Observe(context.Background(), &corev1.Pod{Status: corev1.PodStatus{PodIP: "127.0.0.1"}}); err == nil {
		t.Fatal("no error from a pod that answers nothing")
	}
	if _, err := o.Observe(context.Background(), &corev1.Pod{}); err == nil {
		t.Fatal("no error for a pod without IP")
	}
}

// TestHTTPObserverToken: the observer sends the pod's runner token, so a
// runner that requires one still reports; a token that cannot be had is an
// error for the runner part only.
func TestHTTPObserverToken(t *testing.T) {
	const token = "per-session-token-0123456789"
	var gotPod string
	runnerPort := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(runner.Status{State: runner.StateReady, SessionID: "6c1f-uuid"})
	})
	syncPort := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the runner token went to the sync sidecar")
		}
		w.Write([]byte(`{"lastSnapshot":"0007"}`))
	})
	pod := &corev1.Pod{Status: corev1.PodStatus{PodIP: "127.0.0.1"}}
	pod.Namespace, pod.Name = "ns", "s1-pod"

	if obs, _ := (&HTTPObserver{RunnerPort: runnerPort, SyncPort: syncPort}).Observe(context.Background(), pod); obs.AgentSessionID != "" {
		t.Fatalf("a runner requiring a token reported to an observer without one: %+v", obs)
	}
	o := &HTTPObserver{RunnerPort: runnerPort, SyncPort: syncPort, RunnerToken: func(_ context.Context, p *corev1.Pod) (string, error) {
		gotPod = p.Namespace + "/" + p.Name
		return token, nil
	}}
	obs, err := o.Observe(context.Background(), pod)
	if err != nil || obs.AgentSessionID != "6c1f-uuid" || obs.SnapshotID != "0007" || gotPod != "ns/s1-pod" {
		t.Fatalf("with the token: %+v, %v (token asked for %q)", obs, err, gotPod)
	}
	o.RunnerToken = func(context.Context, *corev1.Pod) (string, error) {
		return "", errors.New("secret ns/s1-runner-token not found")
	}
	obs, err = o.Observe(context.Background(), pod)
	if err != nil || obs.AgentSessionID != "" || obs.SnapshotID != "0007" {
		t.Fatalf("token lookup failing: %+v, %v; want the sync part only", obs, err)
	}
}
