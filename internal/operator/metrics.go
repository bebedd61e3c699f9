package operator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tetherv1 "github.com/tether-dev/tether/api/v1alpha1"
)

// Metrics are the operator's Prometheus metrics. Reconcile duration is not
// here: controller-runtime already exports controller_runtime_reconcile_time_seconds
// {controller="agenticsession"}.
type Metrics struct {
	// Recoveries counts restarts by the reason the runner died.
	Recoveries *prometheus.CounterVec
	// Failures counts sessions marked Failed, by reason.
	Failures *prometheus.CounterVec
	// DetectionLatency is the time from a container's termination (as the
	// kubelet recorded it) to the reconciler acting on it.
	DetectionLatency prometheus.Histogram
	// RecoveryLatency is the time from the runner's termination to the new
	// runner running.
	RecoveryLatency prometheus.Histogram
}

// NewMetrics creates the metrics and registers them, plus a sessions-by-phase
// gauge computed from reader at scrape time (so it can never drift from the
// objects), with reg.
func NewMetrics(reg prometheus.Registerer, reader client.Reader) (*Metrics, error) {
	m := &Metrics{
		Recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_session_recoveries_total",
			Help: "Session restarts after the runner died, by reason (OOMKilled, Error, Evicted, Preempted, NodeLost, PodDeleted, ...).",
		}, []string{"reason"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_session_failures_total",
			Help: "Sessions marked Failed, by reason.",
		}, []string{"reason"}),
		DetectionLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tether_termination_detection_seconds",
			Help:    "Time from a container's termination to the operator acting on it.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
		RecoveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tether_recovery_seconds",
			Help:    "Time from the runner's termination to the new runner running.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}),
	}
	cs := []prometheus.Collector{m.Recoveries, m.Failures, m.DetectionLatency, m.RecoveryLatency}
	if reader != nil {
		cs = append(cs, &phaseCollector{reader: reader})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var phaseDesc = prometheus.NewDesc("tether_sessions", "AgenticSessions by phase.", []string{"phase"}, nil)

// phaseCollector counts sessions by phase from the informer cache at scrape time.
type phaseCollector struct{ reader client.Reader }

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- phaseDesc }

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list tetherv1.AgenticSessionList
	if err := c.reader.List(ctx, &list); err != nil {
		ch <- prometheus.NewInvalidMetric(phaseDesc, err)
		return
	}
	counts := map[tetherv1.SessionPhase]int{}
	for _, p := range []tetherv1.SessionPhase{tetherv1.PhasePending, tetherv1.PhaseCreating, tetherv1.PhaseRunning,
		tetherv1.PhaseRecovering, tetherv1.PhaseSuspending, tetherv1.PhaseSuspended, tetherv1.PhaseCompleted, tetherv1.PhaseFailed} {
		counts[p] = 0
	}
	for i := range list.Items {
		p := list.Items[i].Status.Phase
		if p == "" {
			p = tetherv1.PhasePending
		}
		counts[p]++
	}
	for p, n := range counts {
		ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, float64(n), string(p))
	}
}
