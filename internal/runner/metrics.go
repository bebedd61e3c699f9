package runner

import (
	"sync"
	"time"
)

// Metrics counts what the runner did, for /metrics.
type Metrics struct {
	mu          sync.Mutex
	Turns       int64
	TurnErrors  int64
	Events      int64
	EventNanos  int64 // sum of per-event overhead (parse + persist + forward)
	Resumes     map[string]int64
	InitDurable []time.Duration // init line read -> session id on disk
	FirstByte   []time.Duration // message written -> first assistant line
}

func newMetrics() *Metrics { return &Metrics{Resumes: map[string]int64{}} }

func (m *Metrics) resume(outcome string) {
	m.mu.Lock()
	m.Resumes[outcome]++
	m.mu.Unlock()
}

func (m *Metrics) turn(isError bool) {
	m.mu.Lock()
	m.Turns++
	if isError {
		m.TurnErrors++
	}
	m.mu.Unlock()
}

func (m *Metrics) event(d time.Duration) {
	m.mu.Lock()
	m.Events++
	m.EventNanos += int64(d)
	m.mu.Unlock()
}

// keep bounds the duration samples kept for summaries.
const keep = 1024

func (m *Metrics) initDurable(d time.Duration) {
	m.mu.Lock()
	if len(m.InitDurable) < keep {
		m.InitDurable = append(m.InitDurable, d)
	}
	m.mu.Unlock()
}

func (m *Metrics) firstByte(d time.Duration) {
	m.mu.Lock()
	if len(m.FirstByte) < keep {
		m.FirstByte = append(m.FirstByte, d)
	}
	m.mu.Unlock()
}
