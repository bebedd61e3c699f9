package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Observation is what a session pod's own processes report about the session:
// the runner (agent session id, resume outcome, activity) and the sync sidecar
// (newest snapshot). Zero fields mean "not reported".
type Observation struct {
	AgentSessionID string
	ResumeOutcome  string
	// LastActivity is the runner's last change of state (a turn started or
	// ended, a message arrived).
	LastActivity time.Time
	// TurnOpen is true while the agent works on a turn: never idle then.
	TurnOpen bool

	SnapshotID   string
	SnapshotTime time.Time
	// SnapshotLeftOut and SnapshotReposAsFiles are what the newest snapshot
	// lacks and holds file by file (the sidecar's counts, bounded).
	SnapshotLeftOut      int32
	SnapshotReposAsFiles int32
}

// Observer asks a running session pod for its Observation. Errors are not
// fatal: the reconciler keeps the last known values.
type Observer interface {
	Observe(ctx context.Context, pod *corev1.Pod) (Observation, error)
}

// HTTPObserver reads the runner's GET /status (its .tether/runner-status.json)
// on the runner port and the sync sidecar's GET /healthz on SyncMetricsPort,
// at the pod's IP. The operator must be able to reach pod IPs (the usual
// in-cluster case).
type HTTPObserver struct {
	Client     *http.Client
	RunnerPort int32
	// SyncPort is the sidecar's /healthz port (default SyncMetricsPort).
	SyncPort int32
	// RunnerToken returns the bearer token of the pod's runner, sent with
	// GET /status (nil, or "": none is sent). The runner requires it
	// whenever it listens beyond loopback, as it does in a pod.
	RunnerToken func(ctx context.Context, pod *corev1.Pod) (string, error)
}

// runnerStatus is the subset of the runner's status file the operator uses.
type runnerStatus struct {
	State     string    `json:"state"`
	SessionID string    `json:"session_id"`
	TurnOpen  bool      `json:"turn_open"`
	UpdatedAt time.Time `json:"updated_at"`
	Resume    struct {
		Outcome string `json:"outcome"`
	} `json:"resume"`
}

// syncHealth is the sync sidecar's /healthz body.
type syncHealth struct {
	LastSnapshot string    `json:"lastSnapshot"`
	LastSuccess  time.Time `json:"lastSuccess"`
	LeftOut      int64     `json:"leftOut"`
	ReposAsFiles int64     `json:"reposAsFiles"`
}

// count is a count from a pod, kept within a status's int32 (a negative
// one, which no sidecar sends, counts as 0).
func count(n int64) int32 { return int32(min(max(n, 0), math.MaxInt32)) }

// Observe implements Observer.
func (o *HTTPObserver) Observe(ctx context.Context, pod *corev1.Pod) (Observation, error) {
	var obs Observation
	if pod.Status.PodIP == "" {
		return obs, fmt.Errorf("pod %s/%s has no IP yet", pod.Namespace, pod.Name)
	}
	c := o.Client
	if c == nil {
		c = &http.Client{Timeout: 3 * time.Second}
	}
	var rs runnerStatus
	var token string
	var rerr error
	if o.RunnerToken != nil {
		if token, rerr = o.RunnerToken(ctx, pod); rerr != nil {
			rerr = fmt.Errorf("runner token: %w", rerr)
		}
	}
	if rerr == nil {
		rerr = getJSON(ctx, c, "http://"+net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(o.RunnerPort)))+"/status", token, &rs)
	}
	if rerr == nil {
		obs.AgentSessionID, obs.ResumeOutcome = rs.SessionID, rs.Resume.Outcome
		obs.LastActivity, obs.TurnOpen = rs.UpdatedAt, rs.TurnOpen
	}
	var sh syncHealth
	// /healthz answers 503 with the same body while saves fail; the last
	// good snapshot is still worth reporting.
	syncPort := o.SyncPort
	if syncPort == 0 {
		syncPort = SyncMetricsPort
	}
	serr := getJSON(ctx, c, "http://"+net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(syncPort)))+"/healthz", "", &sh)
	if serr == nil || sh.LastSnapshot != "" {
		obs.SnapshotID, obs.SnapshotTime = sh.LastSnapshot, sh.LastSuccess
		obs.SnapshotLeftOut, obs.SnapshotReposAsFiles = count(sh.LeftOut), count(sh.ReposAsFiles)
	}
	if rerr != nil && serr != nil {
		return obs, fmt.Errorf("pod %s/%s: runner: %v; sync: %v", pod.Namespace, pod.Name, rerr, serr)
	}
	return obs, nil
}

// getJSON GETs url into v, with token as the bearer token when not empty.
func getJSON(ctx context.Context, c *http.Client, url, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("GET %s: %s: the runner refused the operator's token (was its runner-token Secret replaced while the pod ran?)", url, resp.Status)
	}
	if jerr := json.Unmarshal(body, v); jerr != nil {
		return fmt.Errorf("GET %s: %s: %v", url, resp.Status, jerr)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
