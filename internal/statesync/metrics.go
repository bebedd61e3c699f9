package statesync

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/snapshot"
)

// Metrics are the sync loop's Prometheus metrics, on their own registry.
type Metrics struct {
	reg         *prometheus.Registry
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
	scanned     prometheus.Counter
	uploaded    prometheus.Counter
	objects     prometheus.Counter
	snapshots   prometheus.Counter
	errors      *prometheus.CounterVec
	leftFiles   prometheus.Gauge
	leftBytes   prometheus.Gauge
	reposFiles  prometheus.Gauge
	failuresBy  *prometheus.CounterVec

	lastOK   time.Time
	lastErr  string
	lastID   string
	syncer   *Syncer
	clockNow func() time.Time
}

func newMetrics(s *Syncer) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), syncer: s, clockNow: time.Now}
	m.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tether_sync_last_success_timestamp_seconds", Help: "Unix time of the last successful snapshot."})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tether_sync_snapshot_duration_seconds", Help: "Duration of snapshot saves.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})
	m.scanned = prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_sync_bytes_scanned_total", Help: "Bytes of workspace files covered by saves."})
	m.uploaded = prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_sync_bytes_uploaded_total", Help: "Bytes sent to the store."})
	m.objects = prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_sync_objects_uploaded_total", Help: "Objects written to the store."})
	m.snapshots = prometheus.NewCounter(prometheus.CounterOpts{Name: "tether_sync_snapshots_total", Help: "Snapshots written (saves that found no change write none)."})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_sync_errors_total", Help: "Errors by kind (save, prune)."}, []string{"kind"})
	m.leftFiles = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tether_sync_left_out_files", Help: "Entries left out of the newest snapshot, each with a reason in its manifest: over the size cap (--max-size), unreadable, vanished between walk and read, path too long, sockets and other special files."})
	m.reposFiles = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tether_sync_repos_saved_as_files", Help: "Repositories under repos/ the newest snapshot holds file by file (.git included) because git could not capture them."})
	m.leftBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tether_sync_left_out_bytes", Help: "Bytes the size cap (--max-size) kept out of the last snapshot."})
	unsaved := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_sync_oldest_unsaved_change_age_seconds", Help: "Age of the oldest change not yet in a snapshot (0 when everything is saved)."},
		func() float64 { return m.syncer.unsavedAge().Seconds() })
	m.failuresBy = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tether_sync_save_failures_total", Help: "Failed saves by kind of error (store-unavailable, permission-denied, disk-full, corrupt-data, other)."}, []string{"kind"})
	inRow := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_sync_consecutive_failures", Help: "Saves that failed in a row (0 after a success)."},
		func() float64 { return float64(m.syncer.failureState().count) })
	failing := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_sync_failing_seconds", Help: "How long saves have been failing (0 while the last save succeeded)."},
		func() float64 { return m.syncer.failingFor().Seconds() })
	m.reg.MustRegister(m.lastSuccess, m.duration, m.scanned, m.uploaded, m.objects, m.snapshots, m.errors, m.leftFiles, m.leftBytes, m.reposFiles, unsaved,
		m.failuresBy, inRow, failing)
	return m
}

func (m *Metrics) observe(st *snapshot.SaveStats, err error, d time.Duration) {
	m.duration.Observe(d.Seconds())
	if err != nil {
		m.errors.WithLabelValues("save").Inc()
		m.failuresBy.WithLabelValues(errorKind(err)).Inc()
		m.syncer.mu.Lock()
		m.lastErr = err.Error()
		m.syncer.mu.Unlock()
		return
	}
	m.lastSuccess.SetToCurrentTime()
	m.scanned.Add(float64(st.BytesScanned))
	m.uploaded.Add(float64(st.BytesUploaded))
	m.objects.Add(float64(st.ObjectsUploaded))
	m.leftFiles.Set(float64(len(st.LeftOut)))
	m.leftBytes.Set(float64(st.LeftOutBytes))
	m.reposFiles.Set(float64(len(st.ReposAsFiles)))
	if !st.Unchanged {
		m.snapshots.Inc()
	}
	m.syncer.mu.Lock()
	m.lastOK, m.lastErr, m.lastID = m.clockNow(), "", st.ID
	m.syncer.mu.Unlock()
}

// unsavedAge is how long the oldest pending change has waited.
func (s *Syncer) unsavedAge() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest := s.pending.since
	if !s.taking.since.IsZero() && (oldest.IsZero() || s.taking.since.Before(oldest)) && s.saving {
		oldest = s.taking.since
	}
	if oldest.IsZero() {
		return 0
	}
	return s.clock.Now().Sub(oldest)
}

// failureState is a copy of the current run of failed saves.
func (s *Syncer) failureState() failures {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fails
}

// failingFor is how long saves have been failing (0 when the last one succeeded).
func (s *Syncer) failingFor() time.Duration {
	f := s.failureState()
	if f.count == 0 {
		return 0
	}
	return s.clock.Now().Sub(f.since)
}

// health is the body of /healthz.
type health struct {
	State               string    `json:"state"`
	LastSnapshot        string    `json:"lastSnapshot"`
	LastSuccess         time.Time `json:"lastSuccess"`
	Error               string    `json:"error"`
	ErrorKind           string    `json:"errorKind,omitempty"`
	ConsecutiveFailures int       `json:"consecutiveFailures"`
	FailingSince        time.Time `json:"failingSince,omitzero"`
	FailingSeconds      float64   `json:"failingSeconds"`
	NextAttempt         time.Time `json:"nextAttempt,omitzero"`
	UnsavedSeconds      float64   `json:"oldestUnsavedChangeSeconds"`
}

// Handler serves /metrics and /healthz. /healthz is 200 while the last save
// succeeded, and 503 while saves fail, saying since when, how many in a row,
// the kind of error and when the next attempt is due. The error is redacted,
// since a status page is read by whoever can reach the port.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		unsaved := m.syncer.unsavedAge().Seconds()
		failingFor := m.syncer.failingFor().Seconds()
		m.syncer.mu.Lock()
		f := m.syncer.fails
		body := health{State: m.syncer.phase.String(), LastSnapshot: m.lastID, LastSuccess: m.lastOK, Error: redact.String(m.lastErr),
			ErrorKind: f.kind, ConsecutiveFailures: f.count, FailingSince: f.since, FailingSeconds: failingFor,
			NextAttempt: f.retryAt, UnsavedSeconds: unsaved}
		failing := m.lastErr != ""
		m.syncer.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(body)
	})
	return mux
}
