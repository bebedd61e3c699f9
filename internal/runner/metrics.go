package runner

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the runner's Prometheus metrics, on the registry Registry
// (served at /metrics).
type Metrics struct {
	Registry *prometheus.Registry

	turns       *prometheus.CounterVec
	resumes     *prometheus.CounterVec
	events      prometheus.Counter
	overhead    prometheus.Histogram
	initDurable prometheus.Histogram
	firstByte   prometheus.Histogram
	ready       prometheus.Gauge
	sseStreams  prometheus.Gauge
	sseRejected prometheus.Counter
	sseStalled  prometheus.Counter
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		turns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_runner_turns_total", Help: "Turns the agent CLI finished, by result (success or error).",
		}, []string{"result"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_runner_resume_total", Help: "Runner starts by resume outcome (none, resumed, failed).",
		}, []string{"outcome"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_runner_cli_events_total", Help: "Lines the agent CLI printed, all recorded in the event log.",
		}),
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tether_runner_event_overhead_seconds",
			Help:    "Time from reading a CLI line to having it parsed, persisted in the event log and visible to readers.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10),
		}),
		initDurable: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tether_runner_session_id_durable_seconds",
			Help:    "Time from reading the CLI's init line to its session id being fsynced in session-ids.json.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 3, 10),
		}),
		firstByte: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tether_runner_time_to_first_byte_seconds",
			Help:    "Time from writing a message to the CLI to its first assistant line.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_runner_ready", Help: "1 when the CLI is up and the resume outcome decided.",
		}),
		sseStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_runner_sse_streams", Help: "AG-UI event streams being served.",
		}),
		sseRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_runner_sse_rejected_total", Help: "AG-UI event streams refused (503) because all stream slots were taken.",
		}),
		sseStalled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_runner_sse_stalled_total", Help: "AG-UI clients disconnected for taking no bytes within the stall timeout.",
		}),
	}
	m.Registry.MustRegister(m.turns, m.resumes, m.events, m.overhead, m.initDurable, m.firstByte, m.ready, m.sseStreams, m.sseRejected, m.sseStalled)
	for _, o := range []string{ResumeNone, ResumeResumed, ResumeFailed} {
		m.resumes.WithLabelValues(o)
	}
	return m
}

func (m *Metrics) resume(outcome string) { m.resumes.WithLabelValues(outcome).Inc() }

func (m *Metrics) turn(isError bool) {
	r := "success"
	if isError {
		r = "error"
	}
	m.turns.WithLabelValues(r).Inc()
}

func (m *Metrics) event(d time.Duration) {
	m.events.Inc()
	m.overhead.Observe(d.Seconds())
}

func (m *Metrics) initDurableObs(d time.Duration) { m.initDurable.Observe(d.Seconds()) }
func (m *Metrics) firstByteObs(d time.Duration)   { m.firstByte.Observe(d.Seconds()) }
